"""TimeFlow: how far one loss's gradient reaches back through the T steps of the window.

The headline is the gradient *reach* (monitor.Reach): the window's last loss alone, followed back
lag by lag, ‖∂E_T/∂h_{T−d}‖ / ‖∂E_T/∂h_T‖ as log bars on a fixed axis (█ = 1, ▁ = 1e-4), with the
geometric-mean factor per step back and the lag at which it falls below 1 %. Below it, clearly
labelled, the all-losses ‖∂E/∂hₜ‖, which every step's own loss refills and so never shows vanishing.
"""

from __future__ import annotations

import math

import numpy as np
from textual.widgets import Static

from ...monitor import Reach, causes, health
from ...trainer import Snapshot
from .text import BLOCKS, num, sparkline

#: The bottom of the reach bars' log axis: ▁ is this share of the start, a ratio below it is "·".
REACH_FLOOR = 1e-4
#: The glyph of a lag whose gradient is larger than at the start (it grows going back).
ABOVE = "▲"
BELOW = "·"


def reach_bars(ratios: np.ndarray, width: int) -> str:
    """The reach ratios as log bars on the fixed axis REACH_FLOOR … 1, lag 0 on the left.

    Each lag gets ``width // T`` cells (at least one; lags are picked evenly when T > width). A ratio
    above 1 is ▲, one below REACH_FLOOR (or 0, or NaN) is ·.
    """
    r = np.asarray(ratios, dtype=float)
    if width <= 0 or r.size == 0:
        return ""
    if len(r) > width:
        r = r[np.linspace(0, len(r) - 1, width).round().astype(int)]
    cells = max(1, width // len(r))
    top = len(BLOCKS) - 1
    out = []
    for x in r.tolist():
        if not x >= REACH_FLOOR:
            g = BELOW
        elif x > 1.0 + 1e-9:
            g = ABOVE
        else:
            g = BLOCKS[min(top, max(0, int(math.log10(x) / -math.log10(REACH_FLOOR) * top + top + 0.5)))]
        out.append(g * cells)
    return "".join(out)


def lag_axis(T: int, width: int) -> str:
    """``d=0 … steps back … d=T−1`` under bars of ``width`` cells (empty when it does not fit)."""
    right = f"d={T - 1}"
    if width < 8:
        return ""
    mid = " steps back → "
    gap = width - 3 - len(right)
    if gap >= len(mid) + 2:
        return "d=0" + mid.center(gap) + right
    return "d=0" + " " * max(1, gap) + right


def reach_summary(reach: Reach, width: int = 80) -> str:
    """``reach 12 of 25 · ×0.68/step back`` (or ``reach beyond T``), shortened to fit ``width``."""
    f = num(reach.factor, 5).strip()
    long, short = (("beyond T", "beyond T") if reach.lag is None else (f"{reach.lag} of {reach.T}",
                                                                     f"{reach.lag}/{reach.T}"))
    f2 = f"{reach.factor:.2g}" if math.isfinite(reach.factor) and 0.01 <= abs(reach.factor) < 100 else f
    for text in (f"reach {long} · ×{f}/step back", f"reach {long} · ×{f}/step", f"reach {long} · ×{f2}/step",
                 f"reach {long} ×{f2}/step",
                 f"reach {short} · ×{f}/step", f"reach {short} ×{f}"):
        if len(text) <= width:
            return text
    return text


def status_markup(words: list[str]) -> str:
    """The status words as reverse-video labels (the word itself carries the meaning), or OK."""
    return " ".join(f"[$error reverse] {w} [/]" if w != "SATURATED" else f"[$warning reverse] {w} [/]"
                    for w in words) or "[$success]OK[/]"


class TimeFlow(Static):
    """Gradient reach of one loss, per-step factor, σmax(w), saturation, status; all-losses ‖∂E/∂hₜ‖ below."""

    BORDER_TITLE = "gradient reach"

    def show(self, snap: Snapshot) -> None:
        g, reach = snap.grad_stats, snap.reach
        if g is None or reach is None:
            self.update("[dim]waiting for the first step…[/]", layout=False)
            return
        width = max(4, self.content_size.width)
        line = reach_bars(reach.ratios, width)
        at = "" if reach.step == snap.step else f" @{reach.step}"
        self.border_title = f"reach of one loss{at}"
        self.border_subtitle = f"log: █ 1 ▁ {REACH_FLOOR:.0e} {BELOW} less".replace("e-0", "e-")
        words = health(g, reach)
        why = causes(g, reach)
        shown = sum(len(w) + 3 for w in words) if words else 3  # " WORD " labels and the spaces between
        why = why if why and "SATURATED" not in words and shown + len(why) + 3 <= width else ""
        label = "status " if 7 + shown + (len(why) + 3 if why else 0) <= width else ""
        status = label + status_markup(words) + (f" [dim]← {why}[/]" if why else "")
        all_w = max(0, width - 10)
        lines = [
            f"[$accent]{line}[/]",
            f"[dim]{lag_axis(reach.T, len(line))}[/]",
            reach_summary(reach, width),
            f"σmax(w) {num(g.sigma_max, 5).strip()} · sat {100 * g.saturation:.0f}%",
            status,
            f"[dim]all-loss[/] {sparkline(g.dh_norms, all_w)}" if all_w >= 4 else "",
        ]
        self.update("\n".join(lines), layout=False)  # fixed height: no relayout
