"""GatePanel: how the gates of one layer were used in the last measured pass (lstm, gru).

Per gate of the layer shown: the mean activation over every unit, step and sequence of the pass, and the
shares of left- and right-saturated values (below GATE_LOW and above GATE_HIGH; for a tanh, beyond
∓TANH_LEVEL), as Karpathy, Johnson & Fei-Fei (2015) read LSTM gates. The gate that decides what the state
keeps comes first, in bold: the lstm's forget gate f (∂E/∂c_{t−1} = ∂E/∂c_t ⊙ f_t: its values are the
cell state's path back), and the gru's update gate z, which plays that part (h_t keeps z_t ⊙ h_{t−1}).
Wide panels add each gate's role, the σmax of its recurrent block and a bar of the three shares.
The rnn has no gates: the panel is hidden (its tanh saturation is the reach panel's "sat").
"""

from __future__ import annotations

from textual.markup import escape

from ...cells import GATE_HIGH, GATE_LOW
from .layers import LayerPanel, layer_figures
from .text import fit_parts

#: Each gate's part in its cell (wide rows and the help).
ROLES = {
    "lstm": {"i": "input", "f": "forget", "g": "candidate", "o": "output", "tanh(c)": "cell out"},
    "gru": {"r": "reset", "z": "update", "n": "candidate"},
}
#: The gate that decides what the state keeps: shown first, in bold. The gru's z plays the forget gate's part.
FORGET = {"lstm": "f", "gru": "z"}
#: What the forget gate does, for the panel's subtitle (narrow) and the help.
FORGET_NOTE = {"lstm": "f: forget gate", "gru": "z: as a forget gate"}
#: The glyphs of the shares bar: left-saturated, between, right-saturated.
BAR = ("░", "▒", "█")
LABEL_W, MEAN_W, SHARE_W = 7, 7, 6
BAR_MIN = 6


def share_bar(low: float, high: float, width: int) -> str:
    """The left, middle and right shares as ``width`` cells of ░, ▒ and █ (a share above 0 gets at least one)."""
    if width <= 0:
        return ""
    n_low = max(round(low * width), 1 if low > 0 else 0)
    n_high = max(round(high * width), 1 if high > 0 else 0)
    n_low = min(n_low, width)
    n_high = min(n_high, width - n_low)
    return BAR[0] * n_low + BAR[1] * (width - n_low - n_high) + BAR[2] * n_high


def ordered(cell: str, gates: tuple) -> list:
    """The gate figures with the forget gate (lstm f, gru z) first, the others in the cell's order."""
    first = FORGET.get(cell)
    return sorted(gates, key=lambda s: s.name != first)


class GatePanel(LayerPanel):
    """Mean, left and right saturation of every gate of the layer shown; the forget gate first."""

    BORDER_TITLE = "gates"

    _lines = 0
    _snap = None

    def on_resize(self) -> None:
        if self._snap is not None:
            self.show(self._snap)  # the columns follow the width, also while paused

    def show(self, snap) -> None:
        self._snap = snap
        figs = layer_figures(snap, self.shown_layer)
        self.display = figs.cell in ROLES
        if not self.display:
            return
        at = f" @{figs.reach.step}" if figs.reach is not None and figs.reach.step != snap.step else ""
        parts = {"name": (f"gates{at}",)}  # measured with the reach, every few steps
        if figs.label:
            parts["layer"] = figs.label_forms
        title = fit_parts(parts, max(0, self.outer_size.width - 6), ("layer",), sep=" · ")
        self.border_title = " · ".join(title.values())
        width = max(0, self.content_size.width)
        if not figs.gates:
            lines = ["[dim]measured with the reach (every few steps): waiting for the first[/]"]
        else:
            lines = self.rows(figs, width, snap)
        if len(lines) != self._lines:
            self._lines = len(lines)
            self.update("\n".join(lines))  # its height follows the rows
        else:
            self.update("\n".join(lines), layout=False)

    def rows(self, figs, width: int, snap) -> list[str]:
        roles = ROLES[figs.cell]
        base = LABEL_W + MEAN_W + 2 * SHARE_W
        role_w = 1 + max(len(r) for r in roles.values())
        sigma_w = 9  # " σmax 1.02"
        room = width - base
        show_role = room >= role_w
        room -= role_w if show_role else 0
        show_sigma = bool(figs.sigmas) and room >= sigma_w
        room -= sigma_w if show_sigma else 0
        bar_w = room - 1 if room - 1 >= BAR_MIN else 0
        self.border_subtitle = (f"{BAR[0]} left {BAR[1]} between {BAR[2]} right" if bar_w
                                else FORGET_NOTE[figs.cell])
        head = "".ljust(LABEL_W) + "mean".rjust(MEAN_W) + "left".rjust(SHARE_W) + "right".rjust(SHARE_W)
        head += "".ljust(role_w) if show_role else ""
        head += "σmax".rjust(sigma_w) if show_sigma else ""
        head += " " + f"<{GATE_LOW:g} · >{GATE_HIGH:g}".center(bar_w) if bar_w else ""
        lines = [f"[b]{escape(head.rstrip())}[/]"]
        w_hh = {n.split("[")[0] for n in figs.sigmas}
        for s in ordered(figs.cell, figs.gates):
            mean = f"{s.mean:+.3f}" if s.kind == "tanh" else f"{s.mean:.3f}"
            row = (s.name.ljust(LABEL_W) + mean.rjust(MEAN_W) + f"{100 * s.low:.0f}%".rjust(SHARE_W)
                   + f"{100 * s.high:.0f}%".rjust(SHARE_W))
            if show_role:
                row += " " + roles.get(s.name, "").ljust(role_w - 1)
            if show_sigma:
                sigma = next((figs.sigmas[f"{t}[{s.name}]"] for t in w_hh if f"{t}[{s.name}]" in figs.sigmas), None)
                row += (f"{sigma:.3g}" if sigma is not None else "").rjust(sigma_w)
            if bar_w:
                row += " " + share_bar(s.low, s.high, bar_w)
            row = escape(row)
            lines.append(f"[b $text-accent]{row}[/]" if s.name == FORGET[figs.cell] else row)
        if figs.layers > 1 and self.screen.has_class("-tall"):
            lines.append(self.by_layer(snap, figs))
        return lines

    @staticmethod
    def by_layer(snap, figs) -> str:
        """The forget gate's mean in every layer, bottom first (tall panels)."""
        gate = FORGET[figs.cell]
        means = []
        for k in range(figs.layers):
            s = next((s for s in layer_figures(snap, k).gates if s.name == gate), None)
            means.append(f"{k + 1}: {s.mean:.2f}" if s is not None else f"{k + 1}: -")
        return f"[dim]{gate} by layer[/] " + " · ".join(means)
