"""TimeFlow: how far one loss's gradient reaches back through the T steps of the window.

The headline is the gradient *reach* (monitor.Reach): the window's last loss alone, followed back
lag by lag, ‖∂E_T/∂h_{T−d}‖ / ‖∂E_T/∂h_T‖ as log bars on a fixed axis (█ = 1, ▁ = 1e-4), with the
geometric-mean factor per step back and the lag at which it falls below 1 %. Below it, clearly
labelled, the all-losses ‖∂E/∂hₜ‖, which every step's own loss refills and so never shows vanishing.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from textual.markup import escape

from ...monitor import Reach, causes, health
from ...trainer import Snapshot
from .layers import LayerPanel, layer_figures
from .text import BLOCKS, fit_parts, num, sparkline

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


def short_factor(reach: Reach) -> str:
    """The factor per step back in two digits (``0.79``), or as :func:`num` gives it when outside 0.01 … 100."""
    x = reach.factor
    return f"{x:.2g}" if math.isfinite(x) and 0.01 <= abs(x) < 100 else num(x, 5).strip()


def reach_summary(reach: Reach, width: int = 80) -> str:
    """``reach 12 of 25 · ×0.68/step back`` (or ``reach beyond T``), shortened to fit ``width``."""
    f = num(reach.factor, 5).strip()
    long, short = (("beyond T", "beyond T") if reach.lag is None else (f"{reach.lag} of {reach.T}",
                                                                     f"{reach.lag}/{reach.T}"))
    f2 = short_factor(reach)
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


def reach_pair(h: Reach, c: Reach, width: int) -> str:
    """The reach of h and of the lstm's cell state c on one line, shortened to fit ``width``."""
    def lag(r: Reach, long: bool) -> str:
        if r.lag is None:
            return "beyond T" if long else ">T"
        return f"{r.lag} of {r.T}" if long else f"{r.lag}/{r.T}"

    f = short_factor
    for text in (f"reach h {lag(h, True)} ×{f(h)} · c {lag(c, True)} ×{f(c)}",
                 f"reach h {lag(h, False)} ×{f(h)} · c {lag(c, False)} ×{f(c)}",
                 f"h {lag(h, False)} ×{f(h)} c {lag(c, False)} ×{f(c)}"):
        if len(text) <= width:
            return text
    return f"h {lag(h, False)} c {lag(c, False)}"


class TimeFlow(LayerPanel):
    """Gradient reach of one loss, per-step factor, σmax, saturation, status; all-losses ‖∂E/∂hₜ‖ below.

    For the layer shown (``layer``, the top one by default): the reach of its h and, for the lstm, of its cell
    state c; the largest σmax of its recurrent blocks (σmax(w) for the rnn); the status words by the monitor's
    rules on these figures.
    """

    BORDER_TITLE = "gradient reach"

    def show(self, snap: Snapshot) -> None:
        g = snap.grad_stats
        figs = layer_figures(snap, self.shown_layer)
        reach = figs.reach
        if g is None or reach is None:
            self.update("[dim]waiting for the first step…[/]", layout=False)
            return
        width = max(4, self.content_size.width)
        c_reach = figs.c_reach
        self.set_class(c_reach is not None, "-cstate")
        at = "" if reach.step == snap.step else f" @{reach.step}"
        parts = {"name": (f"reach of one loss{at}", f"reach{at}")}
        if figs.label:
            parts["layer"] = figs.label_forms
        title = fit_parts(parts, max(0, self.outer_size.width - 6), ("name", "layer"), sep=" · ")
        self.border_title = " · ".join(title.values())
        self.border_subtitle = f"log: █ 1 ▁ {REACH_FLOOR:.0e} {BELOW} less".replace("e-0", "e-")
        if c_reach is not None:
            bars = [f"h {reach_bars(reach.ratios, width - 2)}", f"c {reach_bars(c_reach.ratios, width - 2)}"]
            axis = "  " + lag_axis(reach.T, width - 2)
            summary = reach_pair(reach, c_reach, width)
        else:
            bars = [reach_bars(reach.ratios, width)]
            axis = lag_axis(reach.T, len(bars[0]))
            summary = reach_summary(reach, width)
        stats = self.layer_stats(g, figs)
        words = health(stats, reach, c_reach)  # (the lstm: VANISHING only when c's reach is short too)
        why = causes(stats, reach) if figs.cell == "rnn" else ""
        shown = sum(len(w) + 3 for w in words) if words else 3  # " WORD " labels and the spaces between
        why = why if why and "SATURATED" not in words and shown + len(why) + 3 <= width else ""
        label = "status " if 7 + shown + (len(why) + 3 if why else 0) <= width else ""
        status = label + status_markup(words) + (f" [dim]← {why}[/]" if why else "")
        all_w = max(0, width - 10)
        lines = [
            *(f"[$accent]{b}[/]" for b in bars),
            f"[dim]{axis}[/]",
            summary,
            self.sigma_line(g, figs, stats, width),
            status,
            f"[dim]all-loss[/] {sparkline(g.dh_norms, all_w)}" if all_w >= 4 and figs.top else "",
        ]
        self.update("\n".join(lines), layout=False)  # fixed height: no relayout

    @staticmethod
    def layer_stats(g, figs):
        """The figures the status words read, of the layer shown: the top layer's are the step's own; a lower rnn
        layer's saturation and σmax are its own; a lower gated layer has neither (no SATURATED, no cause)."""
        if figs.top:
            return g
        tanh = next((s for s in figs.gates if s.name == "h"), None)
        if figs.cell != "rnn" or tanh is None or figs.largest_sigma is None:
            return None
        return dataclasses.replace(g, saturation=tanh.saturated, sigma_max=figs.largest_sigma[1])

    @staticmethod
    def sigma_line(g, figs, stats, width: int) -> str:
        """``σmax(w) 0.97 · sat 40%`` (rnn), ``σmax w_hh[f] 1.02 · sat 40%`` (the largest block of a gated cell)."""
        largest = figs.largest_sigma
        if figs.layers == 1 and figs.cell == "rnn" or largest is None:
            sigma = f"σmax(w) {num(g.sigma_max, 5).strip()}" if figs.cell == "rnn" else \
                f"σmax {num(g.sigma_max, 5).strip()}"
        else:
            name, value = largest
            sigma = (f"σmax(w) {num(value, 5).strip()}" if figs.cell == "rnn"
                     else f"σmax {escape(name)} {num(value, 5).strip()}")
        if stats is None:
            return sigma
        text = f"{sigma} · sat {100 * stats.saturation:.0f}%"
        return text if len(text) <= width else text.replace(" · ", " ")
