"""GradientPanel: per-parameter gradient figures before and after clipping, with history."""

from __future__ import annotations

from textual.widgets import Static

from ...model import PARAM_NAMES
from ...trainer import Snapshot
from .text import num, sparkline


class GradientPanel(Static):
    """One row per parameter and one for the total: ‖g‖ pre and post clip, max|g|, % clipped, ‖Δp‖/‖p‖."""

    BORDER_TITLE = "gradients"

    def show(self, snap: Snapshot) -> None:
        g = snap.grad
        hp = snap.hyper
        mode = {"none": "clipping off", "global": f"global ‖g‖≤{hp.clip:g}",
                "element": f"element ±{hp.clip:g}"}[hp.clip_mode]
        self.border_title = f"gradients · ‖g‖ pre→post clip · {mode} ([ ])"
        inner = max(0, self.content_size.width)
        spark_w = max(0, inner - 39)
        head = f"[b]{'':4}{'‖g‖pre':>7}{'post':>7}{'max|g|':>7}{'clip%':>6}{'Δp/p':>7}[/]"
        if spark_w >= 4:
            head += f" [dim]{'‖g‖ pre over the run, log'[:spark_w]}[/]"
        lines = [head]
        for name in PARAM_NAMES + ("total",):
            label = "all" if name == "total" else name
            if g is None:
                lines.append(f"{label:4}{'-':>7}{'-':>7}{'-':>7}{'-':>6}{'-':>7}")
                continue
            p = g.total if name == "total" else g.param(name)
            clipped = p.norm_post < p.norm_pre * 0.999999
            post = num(p.norm_post, 6)
            post = f"[$warning]{post}[/]" if clipped else post
            ratio = num(p.update_ratio, 6)
            if p.update_ratio > 1e-1:
                ratio = f"[$error]{ratio}[/]"
            row = f"{label:4}{num(p.norm_pre, 6)} {post} {num(p.max_abs, 6)}{100 * p.clip_frac:5.0f}% {ratio}"
            if name == "total":
                row = f"[b]{row}[/b]"
            if spark_w >= 4:
                _, hist = snap.history.get(f"pre:{name}", (None, []))
                row += " [$accent]" + sparkline(hist, spark_w) + "[/]"
            lines.append(row)
        self.update("\n".join(lines), layout=False)  # fixed height: no relayout
