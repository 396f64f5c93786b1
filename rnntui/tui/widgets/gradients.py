"""GradientPanel: per-parameter gradient figures before and after clipping, with history.

One row per tensor of the layer shown (``layer``; all of them for a model of one layer), then the output
layer's v and by, and the total over every tensor of every layer ("all"); the title says which layer
of how many. The table fits its width without wrapping: columns are kept most useful first (‖g‖ pre,
post, Δp/p, clip%, max|g|); on wide panels the gated cells' weights get their pre-clip norm per gate
block (i f g o, r z n); the room left goes to sparklines over the run (‖g‖ pre, then Δp/p), and rows
to spare (tall terminals) hold the legend of the marks. A meaning never rests on colour alone: a
clipped ``post`` is marked ↓, a Δp/p above ``RATIO_ALARM`` is marked !.
"""

from __future__ import annotations

from textual import events
from textual.markup import escape

from ...trainer import Snapshot
from .layers import LayerPanel, layer_figures, short_name
from .text import fit_parts, num, sparkline

RATIO_ALARM = 0.1  # ‖Δp‖/‖p‖ above this is a step too large
LABEL_W = 3  # "all", "bh", …
#: (key, header, cells including the leading space and, for post and Δp/p, the mark) in display order
COLUMNS = (("pre", "‖g‖pre", 7), ("post", "post", 8), ("max", "max|g|", 7), ("clip", "clip%", 6),
           ("ratio", "Δp/p", 8))
COLUMN_W = {key: w for key, _, w in COLUMNS}
KEEP = ("pre", "post", "ratio", "clip", "max")  # which columns stay when the panel is narrow, first to last
SPARK_MIN = 4
SPARKS = (("pre", ("‖g‖ pre over the run, log", "‖g‖ pre, log", "‖g‖ pre", "‖g‖")),
          ("ratio", ("Δp/p over the run, log", "Δp/p, log", "Δp/p")))
LEGEND = (f"↓ post < pre: the clip changed it · ! Δp/p > {RATIO_ALARM:g}: step too large",
          f"↓ changed by the clip · ! Δp/p > {RATIO_ALARM:g}", f"↓ clipped · ! Δp/p > {RATIO_ALARM:g}")
#: the title's parts give way in this order; "gradients" stays until the rate and the mode are short
TITLE_STEPS = ("what", "keys", "rate", "mode", "layer", "rate", "name", "rate", "mode")
#: Cells of one gate block's norm (a space and the number); the block columns are shown where the table is whole
BLOCK_W = 7
#: ... and leave this many cells for the ‖g‖ pre sparkline.
BLOCKS_LEAVE = 16
#: A model with more rows than this (a gated cell's four tensors, v, by, all) takes a taller panel (app.tcss).
ROWS_SHORT = 6


def columns_for(width: int, label_w: int = LABEL_W) -> list[tuple[str, str, int]]:
    """The columns that fit in ``width`` cells after the label, most useful kept, in display order."""
    room, keep = width - label_w, set()
    for key in KEEP:
        if COLUMN_W[key] > room:
            break
        keep.add(key)
        room -= COLUMN_W[key]
    return [c for c in COLUMNS if c[0] in keep]


def spark_widths(room: int) -> list[int]:
    """Cells for each sparkline in ``room`` cells left beside the table (one space before each)."""
    if room >= 2 * (SPARK_MIN + 1) + 20:  # wide: ‖g‖ pre and Δp/p side by side
        return [(room - 2) // 2, (room - 2) - (room - 2) // 2]
    return [room - 1] if room - 1 >= SPARK_MIN else []


def cell(p, key: str) -> str:
    """One figure of a parameter's row, padded to its column (marks and colours included)."""
    if key == "pre":
        return " " + num(p.norm_pre, 6)
    if key == "max":
        return " " + num(p.max_abs, 6)
    if key == "clip":
        return f"{100 * p.clip_frac:.0f}%".rjust(6)
    if key == "post":
        text = num(p.norm_post, 6)
        clipped = p.norm_post < p.norm_pre * 0.999999
        return f" [$text-warning]{text}↓[/]" if clipped else f" {text} "
    text = num(p.update_ratio, 6)
    return f" [$error b]{text}![/]" if p.update_ratio > RATIO_ALARM else f" {text} "


def gates_of(blocks: dict, tensors) -> list[str]:
    """The gate names of the blocks of ``tensors`` (``w_hh[f]`` → ``f``), in the order they first appear."""
    gates: list[str] = []
    for key in blocks:
        tensor, _, gate = key.partition("[")
        if tensor in tensors and gate.rstrip("]") not in gates:
            gates.append(gate.rstrip("]"))
    return gates


def title_parts(snap: Snapshot, layer: tuple[str, ...] = ()) -> dict[str, tuple[str, ...]]:
    """The panel title's parts with their forms, longest first ("" = may be dropped)."""
    hp, g = snap.hyper, snap.grad_stats
    mode = {"none": ("clipping off", "no clip", ""),
            "global": (f"global ‖g‖≤{hp.clip:g}", f"‖g‖≤{hp.clip:g}", ""),
            "element": (f"element ±{hp.clip:g}", f"±{hp.clip:g}", "")}[hp.clip_mode]
    parts = {"name": ("gradients", "grads"), "what": ("‖g‖ pre→post clip", ""), "mode": mode, "keys": ("([ ])", "")}
    if layer:  # which layer the rows are of (a model of more than one)
        parts["layer"] = layer
    rate = getattr(g, "clip_rate", None) if g is not None else None
    if rate is not None and hp.clip_mode != "none":
        window = getattr(g, "clip_window", None)
        if window != 0:  # 0: no step counted yet
            pct = f"{100 * rate:.0f}%"
            span = (f"of last {window} steps", f"of {window} steps") if window else ("of recent steps",) * 2
            parts["rate"] = (f"clipped {pct} {span[0]}", f"clipped {pct} {span[1]}", f"{pct} of steps clipped", "")
    if snap.discarded and g is not None:  # after a divergence: these gradients are of an update that was undone
        parts["name"] = (f"gradients of the discarded update {g.step}", "gradients of the discarded update",
                         "discarded update", "discarded")
        parts.pop("rate", None)
    return parts


class GradientPanel(LayerPanel):
    """One row per tensor of the layer shown, v, by and the total: ‖g‖ pre and post clip, max|g|, % clipped,
    ‖Δp‖/‖p‖; per gate block norms where they fit."""

    BORDER_TITLE = "gradients"

    _snap: Snapshot | None = None

    def on_resize(self, event: events.Resize) -> None:
        if self._snap is not None:
            self.show(self._snap)  # the columns and sparklines follow the width, also while paused

    def show(self, snap: Snapshot) -> None:
        self._snap = snap
        g = snap.grad_stats
        figs = layer_figures(snap, self.shown_layer)
        names = figs.tensors + ("total",)
        labels = {n: "all" if n == "total" else short_name(n) for n in names}
        label_w = max(LABEL_W, *(len(v) for v in labels.values()))
        self.set_class(len(names) > ROWS_SHORT, "-many")
        parts = title_parts(snap, figs.label_forms if figs.label else ())
        title = fit_parts(parts, max(0, self.outer_size.width - 6), TITLE_STEPS, sep=" · ")
        self.border_title = escape(" · ".join(title.values()))
        inner = max(0, self.content_size.width)
        cols = columns_for(inner, label_w)
        room = inner - label_w - sum(w for _, _, w in cols)
        blocks = g.blocks if g is not None else {}
        gates = gates_of(blocks, figs.tensors)
        if not (gates and len(cols) == len(COLUMNS) and room - len(gates) * BLOCK_W >= BLOCKS_LEAVE):
            gates = []  # per gate block norms only where the whole table and a sparkline still fit beside them
        room -= len(gates) * BLOCK_W
        widths = spark_widths(room)
        sparks = SPARKS[:len(widths)]
        head = "".ljust(label_w) + "".join(h.rjust(w - (key in ("post", "ratio"))).ljust(w) for key, h, w in cols)
        head += "".join(f"‖g‖{gate}".rjust(BLOCK_W) for gate in gates)
        for (_, spark_names), w in zip(sparks, widths, strict=True):
            name = next((n for n in spark_names if len(n) <= w), "")
            head += " " + name.ljust(w)
        lines = [f"[b]{escape(head.rstrip())}[/]"]
        for name in names:
            label = labels[name].ljust(label_w)
            if g is None:
                lines.append(label + "".join("-".rjust(w) for _, _, w in cols))
                continue
            p = g.total if name == "total" else g.param(name)
            row = label + "".join(cell(p, key) for key, _, _ in cols)
            row += "".join((" " + num(blocks[f"{name}[{gate}]"], BLOCK_W - 1)) if f"{name}[{gate}]" in blocks
                           else " " * BLOCK_W for gate in gates)
            if name == "total":
                row = f"[b]{row}[/b]"
            for (key, _), w in zip(sparks, widths, strict=True):
                _, hist = snap.history.get(f"{key}:{name}", (None, []))
                row += " [$text-primary]" + sparkline(hist, w) + "[/]"
            lines.append(row)
        notes = [next((f for f in LEGEND if len(f) <= inner), "")]  # rows to spare (tall terminals)
        if widths and g is not None:
            steps, _ = snap.history.get("pre:total", ((), ()))
            if len(steps):
                notes.append(f"sparklines: steps {steps[0]:.0f}…{steps[-1]:.0f}, each row on its own log scale")
        if figs.layers > 1:
            notes.append("all: every tensor of every layer")
        room = self.content_size.height - len(lines)
        lines += [f"[dim]{escape(n)}[/]" for n in notes[:max(0, room)] if n and len(n) <= inner]
        self.update("\n".join(lines), layout=False)  # fixed height: no relayout
