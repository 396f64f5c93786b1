"""Recurrent cells with hand-written BPTT: the lecture's tanh RNN, PyTorch's LSTM and GRU, and stacks of them.

One file per cell, each with the same interface (:class:`Cell`, conventions in :mod:`.base`): parameter
specs and initialisation, a fast forward over a (B, T) part into a cache and backward from it, one step
for sampling, the recurrent matrices for σmax, the gate saturation figures, the gradient's reach, and the
cell's derivation (its equations as data, next to a readable reference loop). :class:`Stack` runs N layers
of a cell with dropout between them.

    from rnntui.cells import Stack, make_cell
    stack = Stack(make_cell("lstm"), input_size=V, hidden_size=128, layers=2, dropout=0.2)
    params = stack.zeros(np.float32); stack.init(np.random.default_rng(0), params)
"""

from __future__ import annotations

from .. import config
from .base import (
    GATE_HIGH,
    GATE_LOW,
    TANH_LEVEL,
    Backward,
    Cache,
    Cell,
    Equation,
    ParamSpec,
    RefBackward,
    RefForward,
    Saturation,
    reach_back,
    source_lines,
)
from .gru import GRU
from .lstm import LSTM
from .rnn import RNN
from .stack import Stack, StackCache

#: The cells by their command-line names.
CELLS: dict[str, type[Cell]] = {"rnn": RNN, "lstm": LSTM, "gru": GRU}
assert tuple(CELLS) == config.CELLS  # the settings' names are these


def make_cell(name: str, **options) -> Cell:
    """The cell called ``name`` (rnn, lstm, gru); ``options`` go to its constructor (lstm: forget_bias)."""
    try:
        cls = CELLS[name]
    except KeyError:
        raise ValueError(f"unknown cell {name!r}: use one of {', '.join(CELLS)}") from None
    return cls(**options)


__all__ = [
    "CELLS", "GATE_HIGH", "GATE_LOW", "GRU", "LSTM", "RNN", "TANH_LEVEL", "Backward", "Cache", "Cell", "Equation",
    "ParamSpec", "RefBackward", "RefForward", "Saturation", "Stack", "StackCache", "make_cell", "reach_back",
    "source_lines",
]
