"""One layer of a run on the main screen: which layer the panels show, and that layer's figures in a snapshot.

The reach, gate and gradient panels are :class:`LayerPanel` s: each shows the layer in its ``shown_layer``
(None: the top one, whose reach is the snapshot's headline ``reach``), and one key moves them all to
the next (:func:`next_layer`). :func:`layer_figures` gathers what a snapshot holds of one layer: its
tensors' names, the reach of its h (and the lstm's c), its gates, the σmax of its recurrent blocks.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from textual.widgets import Static

from ...model import layer_of, tensor_name

#: A tensor of layer k of a stack of more than one is named ``name_l{k}``.
LAYER_SUFFIX = re.compile(r"_l(\d+)$")


def short_name(name: str) -> str:
    """A tensor's name without its layer suffix (``w_hh_l1`` → ``w_hh``): the panel's title says the layer."""
    return LAYER_SUFFIX.sub("", name)


@dataclass(frozen=True)
class LayerFigures:
    """What a snapshot holds of one layer ``layer`` (0 = bottom) of ``layers`` layers of cell ``cell``.

    ``tensors``: the layer's parameter tensors and the output layer's v and by (the model's names, in its order).
    ``reach``, ``c_reach``: the reach of the layer's h and (lstm) c; ``gates``: its gate figures
    (cells.Saturation), () before they are measured; ``sigmas``: σmax of its recurrent blocks by name.
    """

    cell: str
    layers: int
    layer: int
    tensors: tuple[str, ...]
    reach: object
    c_reach: object
    gates: tuple
    sigmas: dict

    @property
    def top(self) -> bool:
        return self.layer == self.layers - 1

    @property
    def label(self) -> str:
        """``layer k of N`` (1-based), or "" for a model of one layer."""
        return f"layer {self.layer + 1} of {self.layers}" if self.layers > 1 else ""

    @property
    def label_forms(self) -> tuple[str, str]:
        """The label's forms for a title that must fit (``text.fit_parts``): ``layer k of N``, ``Lk/N``."""
        return self.label, f"L{self.layer + 1}/{self.layers}"

    @property
    def largest_sigma(self) -> tuple[str, float] | None:
        """The layer's recurrent block with the largest σmax, by its short name (``w_hh[f]``, ``w``), and that σmax."""
        if not self.sigmas:
            return None
        name = max(self.sigmas, key=lambda k: self.sigmas[k])
        return short_name(name.split("[")[0]) + name[len(name.split("[")[0]):], self.sigmas[name]


def cell_of(snap) -> tuple[str, int]:
    """(the cell's name, the number of layers) of a snapshot's run."""
    return snap.config.cell, snap.config.layers


def layer_figures(snap, layer: int | None = None) -> LayerFigures:
    """Layer ``layer`` of the run (None, or beyond the top: the top layer)."""
    cell, layers = cell_of(snap)
    k = layers - 1 if layer is None or not 0 <= layer < layers else layer
    g = snap.grad_stats
    names = tuple(p.name for p in g.params) if g is not None else ()
    tensors = tuple(n for n in names if layer_of(n) in (k, None))  # in the monitor's order
    per_layer = next((r for r in snap.reaches if r.layer == k), None)
    if per_layer is not None:
        reach, c_reach = per_layer.h, per_layer.c
    else:
        reach, c_reach = (snap.reach if k == layers - 1 else None), None
    gates = snap.gates
    w_hh = "w" if cell == "rnn" else "w_hh"
    sigmas = {n: s for n, s in snap.sigmas.items() if n.split("[")[0] == tensor_name(w_hh, k, layers)}
    return LayerFigures(cell, layers, k, tensors, reach, c_reach, tuple(gates[k]) if k < len(gates) else (), sigmas)


class LayerPanel(Static):
    """A panel that shows one layer of the run: ``shown_layer`` (None: the top one); ``show(snap)`` draws it."""

    shown_layer: int | None = None


def next_layer(screen, snap) -> str:
    """Move every :class:`LayerPanel` of ``screen`` to the next layer (the top wraps to the bottom) and redraw
    them from ``snap``; returns what the message line says."""
    if snap is None:
        return "no figures yet: the layer key shows the next layer once training has started"
    cell, layers = cell_of(snap)
    if layers < 2:
        return f"this {cell} has one layer (--layers 2 to 4 stack more, shown one at a time)"
    panels = list(screen.query(LayerPanel))
    current = next((p.shown_layer for p in panels if p.shown_layer is not None), layers - 1)
    new = (current + 1) % layers
    for panel in panels:
        panel.shown_layer = new
        panel.show(snap)
    top = " (the top one)" if new == layers - 1 else ""
    return f"the reach, gate and gradient panels show layer {new + 1} of {layers}{top}"


def selected_layer(app) -> int | None:
    """The layer the main screen's panels show (None: the top one, or no such panel)."""
    panels = app.screen_stack[0].query(LayerPanel) if app.screen_stack else []
    return next((p.shown_layer for p in panels if p.shown_layer is not None), None)
