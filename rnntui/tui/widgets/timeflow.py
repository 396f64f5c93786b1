"""TimeFlow: how the gradient flows back through the T steps of the latest batch."""

from __future__ import annotations

import numpy as np
from textual.widgets import Static

from ...monitor import health
from ...trainer import Snapshot
from .text import BLOCKS, num


def bars(values: np.ndarray, width: int) -> tuple[str, float, float]:
    """One block per time step (log scale), newest step on the right."""
    v = np.asarray(values, dtype=float)
    if len(v) > width:
        idx = np.linspace(0, len(v) - 1, width).round().astype(int)
        v = v[idx]
    with np.errstate(divide="ignore", invalid="ignore"):
        lv = np.log10(np.where(v > 0, v, np.nan))
    finite = lv[np.isfinite(lv)]
    if finite.size == 0:
        return "·" * len(v), 0.0, 0.0
    lo, hi = float(finite.min()), float(finite.max())
    span = max(hi - lo, 1e-12)
    s = "".join("·" if not np.isfinite(x) else BLOCKS[int((x - lo) / span * (len(BLOCKS) - 1) + 0.5)] for x in lv)
    return s, 10**lo, 10**hi


class TimeFlow(Static):
    """‖∂E/∂h_t‖ for t = 1…T, the per-step transmission ratio, σmax(w) and tanh saturation."""

    BORDER_TITLE = "through time"

    def show(self, snap: Snapshot) -> None:
        g = snap.grad
        if g is None:
            self.update("[dim]waiting for the first step…[/]", layout=False)
            return
        width = max(4, self.content_size.width)
        T = len(g.dh_norms)
        line, lo, hi = bars(g.dh_norms, width)
        words = health(g)
        status = " ".join(f"[$error reverse] {w} [/]" if w != "SATURATED" else f"[$warning reverse] {w} [/]"
                          for w in words) or "[$success]OK[/]"
        decay = g.dh_norms[0] / g.dh_norms[-1] if g.dh_norms[-1] > 0 else float("nan")
        self.border_title = f"‖∂E/∂hₜ‖ t=1…{T}, log"
        gap = max(1, len(line) - 6)
        self.update("\n".join([
            f"[$accent]{line}[/]",
            f"[dim]t=1{'t=T':>{gap + 3}}[/]" if len(line) >= 8 else "",
            f"h₁/h_T {num(decay, 5).strip()} · ×{num(g.transmission_gmean, 5).strip()}/step",
            f"σmax(w) {num(g.sigma_max, 5).strip()} · sat {100 * g.saturation:.1f}%",
            f"status {status}",
            f"[dim]‖∂E/∂hₜ‖ {num(lo, 6).strip()}…{num(hi, 6).strip()}[/]",
        ]), layout=False)  # fixed height: no relayout
