"""CharRNN: a character-level recurrent network — a stack of cells under a softmax output layer — its forward pass
and backpropagation through time, for any cell of :mod:`rnntui.cells` (rnn, lstm, gru) and 1 to 4 layers.

    state_t = cell(x_t, state_{t−1})            per layer; layer 1 reads the characters, layer k > 1 reads
                                                layer k−1's h_t (times a dropout mask while training)
    ŷ_t = softmax(v·h_t + b_y)                  h_t the top layer's
    E   = −Σ_t log ŷ_t[target_t]                summed over T steps, averaged over B sequences

The default is the lecture's model: one layer of the vanilla cell, h_t = tanh(u·x_t + w·h_{t−1} + b_h), x_t
one-hot, with the lecture's names and shapes ``u`` (H, V), ``w`` (H, H), ``bh`` (H, 1), ``v`` (V, H),
``by`` (V, 1) (rnntui/lecture.py is its readable reference; the cells' reference loops are the others').

Parameter names: a cell tensor of layer k is named as in its cell (rnn ``u, w, bh``; lstm and gru ``w_ih,
w_hh, b_ih, b_hh`` in PyTorch's layout) with one layer, ``f"{name}_l{k}"`` (k = 0 at the bottom) with more;
the output layer's are ``v`` and ``by``. A gate block of a tensor is ``f"{tensor}[{gate}]"`` (``w_hh_l1[f]``).
Shapes are the cells' own, except that the vanilla cell's bias is the lecture's column (H, 1).

How a pass is laid out (for speed; README "Performance"). Every tensor is a contiguous segment of one
flat vector (:class:`Packed`, in the order of its :class:`Layout`: layer 0's tensors, …, then v, b_y), so
clipping, the update rules and the monitor work on one vector, and gradients, optimizer state and updates
share the layout. Inside a pass the per-step matrices are rows, time-major (row t·B + b is step t of
sequence b), as the cells take them (:mod:`rnntui.cells.base`): only the recurrence loops over t, in the
cells; the output layer, softmax, ∂E/∂v, ∂E/∂b_y and vᵀ·(ŷ − y) run once for all T steps. The arrays of a
pass are kept for the next pass of the same shape, and a large batch is split into parts that run on the
CPU cores at once (:mod:`rnntui.parallel`).

Dropout (``dropout`` > 0, two layers or more) multiplies the inputs of layers 2 … N by masks the caller
draws (:meth:`CharRNN.draw_masks`, from its own generator: the trainer's is part of its state) and hands to
:meth:`CharRNN.loss_and_grads`; without masks nothing is dropped (validation, sampling, checks).
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, field
from functools import cached_property, lru_cache, partial

import numpy as np

from . import parallel
from .cells import Saturation, Stack, make_cell

#: The lecture's model's parameters (the vanilla cell, one layer), in the order the lecture lists them.
PARAM_NAMES = ("u", "w", "v", "bh", "by")
#: The output layer's parameters (no layer suffix).
OUTPUT_NAMES = ("v", "by")
#: |h| above this counts as a saturated tanh unit (its gradient 1 − h² < 0.02).
SATURATION_LEVEL = 0.99
#: Work buffers are kept for this many batch shapes (training and validation need two).
KEEP_SHAPES = 4
INITS = ("scaled", "lecture")

_SUFFIX = re.compile(r"_l(\d+)$")


def tensor_name(name: str, layer: int, layers: int) -> str:
    """A cell tensor's name in the model: ``name`` with one layer, ``f"{name}_l{layer}"`` (0 = bottom) with more."""
    return name if layers == 1 else f"{name}_l{layer}"


def layer_of(name: str) -> int | None:
    """The layer (0 = bottom) of a parameter, gate block or σmax name (``w_hh_l1[f]`` → 1, ``u`` → 0); None for the
    output layer's ``v`` and ``by``."""
    base = name.partition("[")[0]
    if base in OUTPUT_NAMES:
        return None
    m = _SUFFIX.search(base)
    return int(m.group(1)) if m else 0


# -- the flat parameter vector ---------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Layout:
    """Where each tensor of a model sits in its flat vector (:func:`layout_of`).

    ``names``/``shapes``: the tensors in flat order, each a C-contiguous segment (``bounds``: name, start, end).
    ``layer_tensors[k]``: layer k's tensors as (cell's name, model's name, cell's shape). ``gate_blocks``: the
    gate blocks of the tensors that have them, (label, tensor, start, end), each contiguous too.
    ``recurrent[k]``: layer k's recurrent matrix and the σmax name of each of its gate blocks (rnn: the matrix).
    """

    key: tuple[str, int, int, int]  # (cell, V, H, layers)
    names: tuple[str, ...]
    shapes: dict
    bounds: tuple[tuple[str, int, int], ...]
    size: int
    starts: np.ndarray
    layer_tensors: tuple
    gate_blocks: tuple[tuple[str, str, int, int], ...]
    recurrent: tuple[tuple[str, tuple[str, ...]], ...]

    cell = property(lambda self: self.key[0])
    V = property(lambda self: self.key[1])
    H = property(lambda self: self.key[2])
    layers = property(lambda self: self.key[3])

    def __reduce__(self):  # pickled as what it is of, rebuilt (and shared) on the other side
        return layout_of, self.key

    @property
    def sigma_names(self) -> tuple[str, ...]:
        """Every recurrent block's σmax name, bottom layer first."""
        return tuple(n for _, names in self.recurrent for n in names)


@lru_cache(maxsize=32)
def layout_of(cell: str, vocab_size: int, hidden_size: int, layers: int = 1) -> Layout:
    """The flat layout of a model of ``layers`` layers of ``cell`` over ``vocab_size`` characters, ``hidden_size``
    units each: layer 0's tensors in the cell's spec order, …, then v (V, H) and b_y (V, 1)."""
    V, H, L = int(vocab_size), int(hidden_size), int(layers)
    stack = Stack(make_cell(cell), V, H, L)
    names, shapes, layer_tensors, recurrent, blocked = [], {}, [], [], []
    for k, specs in enumerate(stack.specs()):
        pairs = []
        for s in specs:
            name = tensor_name(s.name, k, L)
            # the vanilla cell's bias as the lecture's column
            shapes[name] = s.shape + (1,) if cell == "rnn" and len(s.shape) == 1 else s.shape
            names.append(name)
            pairs.append((s.name, name, s.shape))
            if len(s.blocks) > 1:
                blocked.append((name, s.blocks))
        layer_tensors.append(tuple(pairs))
        w_hh = tensor_name(stack.cell.w_hh, k, L)
        gates = stack.cell.gates
        recurrent.append((w_hh, (w_hh,) if len(gates) == 1 else tuple(f"{w_hh}[{g}]" for g in gates)))
    names += list(OUTPUT_NAMES)
    shapes.update(v=(V, H), by=(V, 1))
    sizes = [math.prod(shapes[n]) for n in names]
    starts = np.cumsum([0] + sizes[:-1])
    bounds = tuple((n, int(a), int(a) + s) for n, a, s in zip(names, starts, sizes, strict=True))
    where = {n: a for n, a, _ in bounds}
    gate_blocks = []
    for name, gates in blocked:
        step = math.prod(shapes[name]) // len(gates)
        gate_blocks += [(f"{name}[{g}]", name, where[name] + j * step, where[name] + (j + 1) * step)
                        for j, g in enumerate(gates)]
    starts.flags.writeable = False
    return Layout((cell, V, H, L), tuple(names), shapes, bounds, int(sum(sizes)), starts, tuple(layer_tensors),
                  tuple(gate_blocks), tuple(recurrent))


class Packed(dict):
    """A model's tensors, by name, as views of one flat vector (``flat``) in a :class:`Layout`.

    Parameters, gradients, optimizer state and updates share this layout, so whole-vector work (clipping, an
    update rule, norms) is one NumPy call on ``flat``. The entries cannot be replaced: assigning one
    (``p["w"] = a``) copies ``a`` into it, so the flat vector always holds every tensor. ``layers[k]`` holds
    layer k's tensors as the cells take them (their own names and shapes, views of the same vector).
    """

    def __init__(self, flat: np.ndarray, layout: Layout):
        if flat.shape != (layout.size,):
            raise ValueError(f"a packed vector of this layout has {layout.size} entries, got {flat.shape}")
        super().__init__((n, flat[a:b].reshape(layout.shapes[n])) for n, a, b in layout.bounds)
        self.flat = flat
        self.layout = layout
        #: start of each tensor's segment in ``flat``, in layout order (for np.ufunc.reduceat)
        self.starts = layout.starts

    @cached_property
    def flat_segments(self) -> dict[str, np.ndarray]:
        """Each tensor's segment of ``flat`` (1-D, contiguous), by name."""
        return self.segments(self.flat)

    @cached_property
    def layers(self) -> list[dict[str, np.ndarray]]:
        """Layer k's tensors as the cells take them: their own names and shapes (views)."""
        get = super().__getitem__
        return [{cname: get(name).reshape(shape) for cname, name, shape in tensors}
                for tensors in self.layout.layer_tensors]

    @classmethod
    def empty(cls, layout: Layout, dtype) -> Packed:
        return cls(np.empty(layout.size, dtype), layout)

    @classmethod
    def zeros(cls, layout: Layout, dtype) -> Packed:
        return cls(np.zeros(layout.size, dtype), layout)

    def like(self, fill: float | None = None, dtype=None) -> Packed:
        """A Packed of this layout, filled with ``fill`` (or left empty)."""
        new = Packed.empty(self.layout, dtype or self.flat.dtype)
        if fill is not None:
            new.flat[...] = fill
        return new

    def clone(self, dtype=None) -> Packed:
        """A copy (in ``dtype``, default this one's)."""
        return Packed(self.flat.astype(dtype or self.flat.dtype, copy=True), self.layout)

    def segments(self, flat: np.ndarray) -> dict[str, np.ndarray]:
        """``flat`` (a vector in this layout) cut into its tensors' segments, by name."""
        return {k: flat[a:b] for k, a, b in self.layout.bounds}

    def __setitem__(self, name, value) -> None:
        a = self[name]
        if np.shape(value) != a.shape:
            raise ValueError(f"{name} is {a.shape}, got an array of shape {np.shape(value)}")
        np.copyto(a, value)

    def _refuse(self, *args, **kwargs):
        raise TypeError("a Packed holds a fixed set of tensors, views of its flat vector; assign into them instead")

    __delitem__ = pop = popitem = setdefault = clear = update = __ior__ = _refuse

    def __reduce__(self):  # a copy or a pickle: the flat vector (copied) in the same layout
        return Packed, (self.flat, self.layout)


def packed_pair(*dicts) -> list[np.ndarray] | None:
    """The flat vectors of ``dicts`` if all are :class:`Packed` of one layout, else None."""
    first = dicts[0]
    if not isinstance(first, Packed):
        return None
    if not all(isinstance(d, Packed) and d.layout.key == first.layout.key for d in dicts):
        return None
    return [d.flat for d in dicts]


# -- what a pass leaves ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PassFigures:
    """The last loss followed back through a pass, and the pass's gate figures.

    ``logs[k]``: layer k's log ‖∂E_T/∂h_{T−d}‖ (and ``"c"`` for the lstm) for d = 0 … T (see
    :func:`rnntui.cells.reach_back`; Frobenius norms over the whole batch, float64). ``gates[k]``: layer k's
    :class:`~rnntui.cells.Saturation` figures; ``saturation``: the share of the top layer's |h| > SATURATION_LEVEL.
    """

    logs: list
    gates: tuple
    saturation: float


@dataclass(frozen=True)
class StepDiagnostics:
    """Per-step figures from one forward/backward pass.

    ``dh_norms[t]``  ‖∂E/∂h_t‖ of the top layer (Frobenius over the batch) for t = 0 … T−1.
    ``dh0``: ∂E/∂(the initial state) in the form the state was given (the lecture's (H, B) columns, or per
    layer a tuple of (B, H) rows); ``dstate0`` always the latter.
    ``saturation``: the share of the top layer's |h| > SATURATION_LEVEL, counted in the pass.
    ``hs`` the top layer's h, one row per (step, sequence): (T·B, H); ``ps`` the softmax outputs, (T·B, V). When
    the batch was split into P parts, one block per part: (P, T·B/P, H) and (P, T·B/P, V). ``ps`` and
    :meth:`figures` read the model's work buffers: valid until its next pass of this shape.
    """

    dh_norms: np.ndarray
    dh0: object
    saturation: float = 0.0
    dstate0: list = field(default_factory=list, repr=False)
    buffers: object = field(default=None, repr=False, compare=False)
    targets: np.ndarray | None = field(default=None, repr=False, compare=False)
    stack: object = field(default=None, repr=False, compare=False)

    @property
    def hs(self) -> np.ndarray:
        return self.buffers.hs()

    @property
    def ps(self) -> np.ndarray:
        return self.buffers.ps()

    def by_step(self, T: int) -> tuple[np.ndarray, np.ndarray]:
        """``hs`` and ``ps`` as (T, B, H) and (T, B, V), sequences in batch order (a copy when the batch was split)."""
        def steps(a: np.ndarray) -> np.ndarray:
            if a.ndim == 2:
                return a.reshape(T, -1, a.shape[-1])
            P = a.shape[0]
            return a.reshape(P, T, -1, a.shape[-1]).transpose(1, 0, 2, 3).reshape(T, -1, a.shape[-1])
        return steps(self.hs), steps(self.ps)

    def figures(self, v: np.ndarray) -> PassFigures:
        """The last loss's reach back through this pass and its gate figures (``v``: the weights it ran on)."""
        return _figures(self.stack, self.buffers, self.targets, v, self.saturation)


def softmax_rows(q: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Numerically stable softmax over the last axis (subtract the row max first)."""
    out = np.subtract(q, q.max(axis=-1, keepdims=True), out=out)
    np.exp(out, out=out)
    out /= out.sum(axis=-1, keepdims=True)
    return out


def softmax_jacobian(s: np.ndarray) -> np.ndarray:
    """eq-1: ∂s_i/∂a_j = s_i(δ_ij − s_j) for a softmax output vector ``s``."""
    return np.diag(s) - np.outer(s, s)


class _Part:
    """The arrays of passes over ``b`` sequences × ``T`` steps (one part of a batch), reused pass after pass.

    ``cache``  the layers' work arrays (:class:`rnntui.cells.StackCache`)
    ``q``      (V, T·b)  logits, then ŷ; column t·b + j is step t of sequence j
    ``dy``     (V, T·b)  ∂E/∂q
    ``dh``     (T·b, H)  ∂E/∂h of the top layer from the output layer, then (the cells' backward) its total
    ``grad``   a gradient of part k > 0 (the first part writes into the returned one)
    ``hs``     the top layer's h_1 … h_T of the last pass (T·b, H), a view of the cache
    """

    def __init__(self, stack: Stack, layout: Layout, q: np.ndarray, b: int, T: int, dtype):
        N, H, V = T * b, layout.H, layout.V
        self.b, self.T, self.N = b, T, N
        self.cache = stack.new_cache()
        self.q = q
        self.dy = np.empty((V, N), dtype)
        self.dh = np.empty((N, H), dtype)
        self.grad = Packed.empty(layout, dtype)
        self.rows = np.arange(N)
        self.hs: np.ndarray | None = None

    def target_index(self, targets: np.ndarray) -> np.ndarray:
        """Where each step's target y_t is in ``q.ravel()`` (and ``dy.ravel()``), from (b, T) targets."""
        return targets.T.reshape(-1).astype(np.intp) * self.N + self.rows


class _Buffers:
    """A (B, T) batch as ``P`` parts of B/P sequences; their q are blocks of one array."""

    def __init__(self, stack: Stack, layout: Layout, B: int, T: int, parts: int, dtype):
        b = B // parts
        self.dtype = np.dtype(dtype)
        self.q = np.empty((parts, layout.V, T * b), dtype)
        self.parts = [_Part(stack, layout, self.q[k], b, T, dtype) for k in range(parts)]
        self.bounds = [(k * b, (k + 1) * b) for k in range(parts)]
        self.pacer = parallel.Pacer(parts)

    def hs(self) -> np.ndarray:
        """The top layer's h_t of every step and sequence: (T·B, H), or (P, T·B/P, H) over P parts (a copy)."""
        return self.parts[0].hs if len(self.parts) == 1 else np.stack([p.hs for p in self.parts])

    def ps(self) -> np.ndarray:
        """ŷ of every step and sequence: (T·B, V), or (P, T·B/P, V) over P parts."""
        ps = self.q.transpose(0, 2, 1)
        return ps[0] if len(self.parts) == 1 else ps


def _gather(state: list, part: list[tuple], b0: int, b1: int) -> None:
    """A part's state (rows b0 … b1 of the batch, per layer a tuple) into the batch's ``state``: the part's own
    arrays when ``state`` is empty (one part), else copied into its rows."""
    if not state:
        state.extend(part)
        return
    for dst, src in zip(state, part, strict=True):
        for a, s in zip(dst, src, strict=True):
            a[b0:b1] = s


def _block_sq(a: np.ndarray, T: int) -> np.ndarray:
    """Σ of squares of each of the T row blocks of ``a``, in float64."""
    rows = a.reshape(T, 1, -1)
    return np.matmul(rows, rows.transpose(0, 2, 1)).reshape(T).astype(np.float64)


def _combine_logs(per_part: list[list[dict]]) -> list[dict]:
    """Log norms over the whole batch from those of its parts: log ‖g‖ = ½ log Σ_parts ‖g_part‖²."""
    if len(per_part) == 1:
        return per_part[0]
    out = []
    for layer in zip(*per_part, strict=True):
        with np.errstate(invalid="ignore"):
            out.append({name: 0.5 * np.logaddexp.reduce(2 * np.stack([p[name] for p in layer]), axis=0)
                        for name in layer[0]})
    return out


def _mean_figures(per_part: list[tuple]) -> tuple:
    """One layer's Saturation figures over equal parts of a batch: the means of theirs."""
    if len(per_part) == 1:
        return tuple(per_part[0])
    return tuple(Saturation(s[0].name, s[0].kind, *(float(np.mean([getattr(x, f) for x in s]))
                                                     for f in ("mean", "low", "high")))
                 for s in zip(*per_part, strict=True))


def _figures(stack: Stack, buf: _Buffers, targets: np.ndarray, v: np.ndarray, saturation: float) -> PassFigures:
    """The last loss's reach through the pass in ``buf`` (each part's, combined) and its gate figures."""
    targets = np.asarray(targets)
    logs, gates = [], []
    for part, (b0, b1) in zip(buf.parts, buf.bounds, strict=True):
        T, b = part.T, part.b
        dy = part.q[:, (T - 1) * b:].T.astype(np.float64)  # ŷ_T of each sequence (b, V)
        dy[np.arange(b), targets[b0:b1, T - 1]] -= 1  # eq-3: ŷ_T − y_T
        dh_T = np.dot(dy.astype(buf.dtype), v)  # eq-6: ∂E_T/∂h_T = vᵀ·(ŷ_T − y_T), one row per sequence
        logs.append(stack.last_loss_back(None, part.cache, dh_T))
        gates.append(stack.saturation(part.cache))
    return PassFigures(_combine_logs(logs), tuple(_mean_figures(list(g)) for g in zip(*gates, strict=True)),
                       saturation)


# -- the model ----------------------------------------------------------------------------------------------------


class CharRNN:
    """A character-level recurrent network: ``layers`` layers of ``cell`` (rnn, lstm, gru) under a softmax output.

    ``init="scaled"`` draws the weights uniformly from ±1/√H (PyTorch's; the gated cells' biases too, the lstm's
    forget gate bias then set to ``forget_bias``); ``init="lecture"`` draws them from N(0, 0.01²) as the lecture
    does, biases 0. The vanilla model starts from the weights it always started from: u, w, then v, from
    ``seed``. ``dropout`` applies between layers when the caller hands masks to a pass (see the module
    docstring). ``chars`` (optional) is the vocabulary, used to turn text into indices and back. ``threads`` is
    how a pass uses the CPU cores: ``"auto"``, a number of parts, or ``"blas"`` (see :mod:`rnntui.parallel`;
    default: the ``RNNTUI_THREADS`` environment variable, else auto).

    A state (``h0``, what a pass returns as its last state) is a list with one tuple per layer of (B, H) rows, as
    the cells' state names say (("h",), or ("h", "c") for the lstm); the lecture's model also takes and gives
    back the lecture's (H, B) columns. A model runs one pass at a time (its work buffers are reused); use a copy
    (``astype``) to compute on the same weights from another thread.
    """

    def __init__(self, vocab_size: int, hidden_size: int, *, seed: int = 0, dtype=np.float32,
                 init: str = "scaled", chars: str | None = None, threads: str | int | None = None,
                 cell: str = "rnn", layers: int = 1, dropout: float = 0.0, forget_bias: float | None = 1.0):
        if chars is not None and len(chars) != vocab_size:
            raise ValueError(f"chars has {len(chars)} characters but vocab_size is {vocab_size}")
        if init not in INITS:
            raise ValueError(f"unknown init {init!r}: use one of {', '.join(INITS)}")
        self.V, self.H = int(vocab_size), int(hidden_size)
        self.dtype = np.dtype(dtype)
        self.chars = chars
        self.threads = parallel.parse_policy(threads)
        self.stack = Stack(make_cell(cell, **({"forget_bias": forget_bias} if cell == "lstm" else {})),
                           self.V, self.H, layers, dropout)
        self.layout = layout_of(cell, self.V, self.H, self.stack.layers)
        self._buffers: dict[tuple[int, int], _Buffers] = {}
        self.params: Packed = Packed.zeros(self.layout, self.dtype)
        rng = np.random.default_rng(seed)
        self.stack.init(rng, self.params.layers, init)  # the vanilla cell: u, then w
        k = 1.0 / math.sqrt(self.H)
        shape = (self.V, self.H)
        self.params["v"][...] = rng.uniform(-k, k, shape) if init == "scaled" else rng.standard_normal(shape) * 0.01

    def __getstate__(self) -> dict:
        # The work buffers are views of each other (the cells' per-step views alias their arrays); a pickle
        # would copy them apart and the next pass would compute on stale copies. They are not state.
        state = self.__dict__.copy()
        state["_buffers"] = {}
        return state

    def __repr__(self) -> str:
        return (f"CharRNN(V={self.V}, H={self.H}, cell={self.cell!r}, layers={self.layers}, dropout={self.dropout}, "
                f"dtype={self.dtype})")

    # -- what it is ----------------------------------------------------------------------------------------------
    cell = property(lambda self: self.stack.cell.name, doc="the cell's name: rnn, lstm, gru")
    layers = property(lambda self: self.stack.layers)
    dropout = property(lambda self: self.stack.dropout)
    u = property(lambda self: self.params["u"])
    w = property(lambda self: self.params["w"])
    v = property(lambda self: self.params["v"])
    bh = property(lambda self: self.params["bh"])
    by = property(lambda self: self.params["by"])

    @property
    def lecture(self) -> bool:
        """Whether this is the lecture's model: one layer of the vanilla cell."""
        return self.cell == "rnn" and self.layers == 1

    @property
    def state_names(self) -> tuple[str, ...]:
        return self.stack.cell.state_names

    def layer_params(self) -> list[dict]:
        """Each layer's parameters as the cells take them (their names and shapes; views of ``params``)."""
        return self.params.layers

    def zero_state(self, batch_size: int = 1) -> list[tuple]:
        return self.stack.zero_state(batch_size, self.dtype)

    def state_of(self, state: list[tuple], b: int) -> list[tuple]:
        """Sequence ``b`` of a batch's state, as :meth:`sample` and the stack's ``step`` take it ((H,) vectors)."""
        return [tuple(np.array(a[b]) for a in layer) for layer in state]

    def astype(self, dtype) -> CharRNN:
        """A copy of this model with parameters in ``dtype`` (e.g. float64 for a gradient check)."""
        other = CharRNN.__new__(CharRNN)
        other.__dict__.update(self.__dict__)
        other.dtype = np.dtype(dtype)
        other._buffers = {}
        other.params = self.params.clone(other.dtype)
        return other

    def num_params(self) -> int:
        return self.layout.size

    def draw_masks(self, rng: np.random.Generator, batch_size: int, seq_length: int) -> list[np.ndarray] | None:
        """Dropout masks for one (B, T) batch (Stack.draw_masks: rows t·B + b, 0 or 1/(1 − p)); None without dropout."""
        if self.dropout <= 0 or self.layers < 2:
            return None
        return self.stack.draw_masks(rng, batch_size * seq_length, self.dtype)

    # -- the pass ------------------------------------------------------------------------------------------------
    def _check(self, inputs, targets, h0):
        """(inputs, B, T, the state as rows, whether it was given as the lecture's (H, B) columns)."""
        inputs = np.asarray(inputs)
        if inputs.ndim != 2:
            raise ValueError(f"inputs must be (B, T), got shape {inputs.shape}")
        B, T = inputs.shape
        if targets is not None and np.shape(targets) != (B, T):
            raise ValueError(f"targets must have the shape of inputs {(B, T)}, got {np.shape(targets)}")
        if h0 is None:
            return inputs, B, T, self.zero_state(B), False
        if isinstance(h0, np.ndarray):
            if not self.lecture:
                raise ValueError(f"h0 of a {self.layers}-layer {self.cell} model is a list of states, one tuple of "
                                 f"(B, H) rows {self.state_names} per layer, not one array")
            if h0.shape != (self.H, B):
                raise ValueError(f"h0 must be (H, B) = {(self.H, B)}, got {h0.shape}")
            return inputs, B, T, [(h0.T,)], True
        states = list(h0)
        S = len(self.state_names)
        if len(states) != self.layers or any(len(s) != S or any(np.shape(a) != (B, self.H) for a in s)
                                             for s in states):
            raise ValueError(f"h0 must hold {self.layers} tuple(s) of {S} (B, H) = {(B, self.H)} arrays, "
                             f"one per layer")
        return inputs, B, T, states, False

    def _check_masks(self, masks, B: int, T: int):
        if masks is None:
            return None
        masks = list(masks)
        if len(masks) != self.layers - 1 or any(np.shape(m) != (T * B, self.H) for m in masks):
            raise ValueError(f"masks must be {self.layers - 1} arrays of shape (T·B, H) = {(T * B, self.H)}")
        return masks

    def _as_given(self, state: list[tuple], columns: bool):
        """A state (rows per layer) in the form the initial state was given: the lecture's (H, B) columns (a view of
        the rows) or the rows."""
        return state[0][0].T if columns else state

    def _new_state(self, B: int, parts: int) -> list:
        """Where the parts of a pass put a state: filled in by :func:`_gather` (empty: a batch in one part)."""
        if parts == 1:
            return []
        return [tuple(np.empty((B, self.H), self.dtype) for _ in self.state_names) for _ in range(self.layers)]

    def _buffers_for(self, B: int, T: int) -> _Buffers:
        buf = self._buffers.get((B, T))
        if buf is None or buf.dtype != self.dtype:
            parts = parallel.num_parts(self.threads, B, self.H)
            while B % parts:  # equal parts only
                parts -= 1
            if len(self._buffers) >= KEEP_SHAPES:
                self._buffers.clear()
            buf = self._buffers[(B, T)] = _Buffers(self.stack, self.layout, B, T, parts, self.dtype)
        return buf

    def _run_parts(self, buf: _Buffers, task) -> list:
        """``task(k, part, b0, b1)`` for every part k (sequences b0 … b1), on as many threads as the
        buffers' pacer chooses (BLAS on one thread)."""
        pairs = enumerate(zip(buf.parts, buf.bounds, strict=True))
        tasks = [partial(task, k, part, b0, b1) for k, (part, (b0, b1)) in pairs]
        if self.threads != "blas":
            parallel.single_threaded_blas()
        if len(tasks) == 1:
            return [tasks[0]()]
        threads = buf.pacer.choose()
        t0 = time.perf_counter()
        results = parallel.run(tasks, threads)
        buf.pacer.record(threads, time.perf_counter() - t0)
        return results

    def _part_forward(self, inputs, state0, masks, last, part: _Part, b0: int, b1: int) -> np.ndarray:
        """Every layer over sequences b0 … b1: their last states into ``last`` (a list: the states themselves for a
        batch in one part, else into its arrays); the top layer's h rows (a view)."""
        T = inputs.shape[1]
        x = inputs[b0:b1].T.reshape(-1)  # (T·b,) time-major: row t·b + j is sequence j at step t
        s0 = [tuple(a[b0:b1] for a in layer) for layer in state0]
        if masks is not None and len(inputs) != part.b:  # this part's rows of the batch's masks
            masks = [m.reshape(T, len(inputs), -1)[:, b0:b1].reshape(part.N, -1) for m in masks]
        hs, lasts = self.stack.forward(self.params.layers, x, s0, part.cache, train=False, masks=masks)
        _gather(last, lasts, b0, b1)
        part.hs = hs
        return hs

    def _output(self, part: _Part, hs: np.ndarray, y_at: np.ndarray) -> float:
        """ŷ for every step at once into ``part.q`` (V, T·b), softmax(v·h + b_y); returns Σ −log ŷ[y] over them.

        ``y_at`` is where each step's target is in ``part.q.ravel()``: y·T·b + column.

        The loss is taken from the logits (log-sum-exp), not from ŷ: a target whose probability
        underflows to 0 still has a finite loss, so a poor but finite model is not taken for a diverged one.
        """
        p = self.params
        q = np.matmul(p["v"], hs.T, out=part.q)  # q_t = v·h_t
        np.add(q, p["by"], out=q)  # + b_y
        np.subtract(q, q.max(axis=0), out=q)
        q_y = q.reshape(-1)[y_at]  # the target's logit of every step
        np.exp(q, out=q)
        z = q.sum(axis=0)
        np.divide(q, z, out=q)
        return float(np.log(z).sum() - q_y.sum())

    def _part_loss(self, inputs, targets, state0, masks, last, k: int, part: _Part, b0: int, b1: int) -> float:
        hs = self._part_forward(inputs, state0, masks, last, part, b0, b1)
        return self._output(part, hs, part.target_index(targets[b0:b1]))

    def loss(self, inputs, targets, h0=None, masks=None) -> tuple[float, object]:
        """Forward only: ``(loss, last state)``; loss summed over T, averaged over B. No dropout unless ``masks``."""
        inputs, B, T, state0, columns = self._check(inputs, targets, h0)
        masks = self._check_masks(masks, B, T)
        targets = np.asarray(targets)
        buf = self._buffers_for(B, T)
        last = self._new_state(B, len(buf.parts))
        nll = self._run_parts(buf, partial(self._part_loss, inputs, targets, state0, masks, last))
        return float(sum(nll) / B), self._as_given(last, columns)

    # -- forward + backward --------------------------------------------------------------------------------------
    def _part_grads(self, inputs, targets, state0, masks, grads: Packed, last, k: int, part: _Part, b0: int,
                    b1: int) -> tuple:
        """Forward and BPTT over sequences b0 … b1 of a batch; the gradient of part 0 goes into ``grads``,
        that of part k > 0 into ``part.grad``.

        Returns (Σ −log ŷ[y], Σ ‖∂E/∂h_t‖² per step, number of saturated top-layer h, ∂E/∂state0) of these sequences.
        """
        B = len(inputs)
        grad = grads if k == 0 else part.grad
        hs = self._part_forward(inputs, state0, masks, last, part, b0, b1)
        y_at = part.target_index(targets[b0:b1])  # where ŷ_t[y_t] is in part.q.ravel()
        nll = self._output(part, hs, y_at)  # part.q is now ŷ, (V, T·b)
        saturated = np.count_nonzero(np.abs(hs, out=part.dh) > SATURATION_LEVEL)  # for the monitor, while hot

        # eq-3: ∂E/∂q_t = ŷ_t − y_t (divided by B: the loss is averaged over sequences).
        f = self.dtype.type(1.0 / B)
        np.multiply(part.q, f, out=part.dy)
        part.dy.reshape(-1)[y_at] -= f  # − y_t: at each step's target
        np.matmul(part.dy, hs, out=grad["v"])  # eq-5: Σ_t (ŷ_t − y_t)·h_tᵀ
        np.sum(part.dy, axis=1, out=grad["by"][:, 0])
        np.matmul(part.dy.T, self.params["v"], out=part.dh)  # eq-6: vᵀ·(ŷ_t − y_t), for every t at once
        dstate0 = self.stack.backward(self.params.layers, part.cache, part.dh, grad.layers)  # the cells' BPTT
        return nll, _block_sq(part.dh, part.T), saturated, dstate0

    def loss_and_grads(self, inputs, targets, h0=None, masks=None):
        """One forward pass and backpropagation through time over a (B, T) batch.

        Returns ``(loss, grads, h_last, diagnostics)``: the cross-entropy summed over the T steps and averaged
        over the B sequences; the exact, unclipped gradient of that loss (a :class:`Packed` like ``params``); the
        last state to carry into the next batch (without gradient: truncated BPTT), in the form ``h0`` was
        given; and a :class:`StepDiagnostics`. ``masks``: the dropout masks of this pass (:meth:`draw_masks`).
        """
        inputs, B, T, state0, columns = self._check(inputs, targets, h0)
        masks = self._check_masks(masks, B, T)
        targets = np.asarray(targets)
        buf = self._buffers_for(B, T)
        last = self._new_state(B, len(buf.parts))
        grads = Packed.empty(self.layout, self.dtype)
        results = self._run_parts(buf, partial(self._part_grads, inputs, targets, state0, masks, grads, last))
        for part in buf.parts[1:]:
            np.add(grads.flat, part.grad.flat, out=grads.flat)
        nll, dh_sq, saturated = (sum(r[i] for r in results) for i in range(3))
        dstate0 = self._new_state(B, len(buf.parts))
        for r, (b0, b1) in zip(results, buf.bounds, strict=True):
            _gather(dstate0, r[3], b0, b1)
        diag = StepDiagnostics(dh_norms=np.sqrt(dh_sq), dh0=self._as_given(dstate0, columns),
                               saturation=int(saturated) / (T * B * self.H), dstate0=dstate0, buffers=buf,
                               targets=targets, stack=self.stack)
        return float(nll / B), grads, self._as_given(last, columns), diag

    # -- figures by a fresh forward pass ------------------------------------------------------------------------
    def measure(self, inputs, targets, h0=None, masks=None) -> PassFigures:
        """One forward pass over a (B, T) batch on these weights (with these dropout masks), and the last loss's
        reach back through it with its gate figures (:class:`PassFigures`)."""
        inputs, B, T, _, _ = self._check(inputs, targets, h0)
        self.loss(inputs, targets, h0, masks)
        buf = self._buffers_for(B, T)
        sat = sum(int(np.count_nonzero(np.abs(p.hs) > SATURATION_LEVEL)) for p in buf.parts) / (T * B * self.H)
        return _figures(self.stack, buf, targets, self.params["v"], sat)

    def last_loss_back(self, inputs, targets, h0=None, masks=None) -> np.ndarray:
        """The last step's loss alone, followed back through the top layer's h: log ‖∂E_T/∂h_{T−d}‖, d = 0 … T
        (d = T: the initial state), by a fresh forward pass (:meth:`measure` has every layer's)."""
        return self.measure(inputs, targets, h0, masks).logs[-1]["h"]

    def _part_hidden(self, inputs, state0, masks, last, k: int, part: _Part, b0: int, b1: int) -> np.ndarray:
        return self._part_forward(inputs, state0, masks, last, part, b0, b1)

    def hidden(self, inputs, h0=None, masks=None) -> tuple[np.ndarray, object]:
        """Every layer's recurrence over a (B, T) batch, without the output layer: the top layer's h_1 … h_T,
        (T, B, H) (a copy), and the last state, in the form ``h0`` was given. No dropout unless ``masks``."""
        inputs, B, T, state0, columns = self._check(inputs, None, h0)
        masks = self._check_masks(masks, B, T)
        buf = self._buffers_for(B, T)
        last = self._new_state(B, len(buf.parts))
        hs = self._run_parts(buf, partial(self._part_hidden, inputs, state0, masks, last))
        out = np.concatenate([h.reshape(T, p.b, self.H) for h, p in zip(hs, buf.parts, strict=True)], axis=1)
        return out, self._as_given(last, columns)

    def states(self, inputs, h0=None, masks=None) -> np.ndarray:
        """The top layer's h_0 … h_T of a (B, T) batch: (T+1, B, H) (a copy)."""
        inputs, B, T, state0, _ = self._check(inputs, None, h0)
        hs, _ = self.hidden(inputs, h0, masks)
        return np.concatenate([np.asarray(state0[-1][0], self.dtype)[None], hs])

    # -- sampling ------------------------------------------------------------------------------------------------
    def encode(self, text: str) -> list[int]:
        if self.chars is None:
            raise ValueError("this model has no vocabulary (chars); pass indices instead of text")
        index = {c: i for i, c in enumerate(self.chars)}
        missing = sorted(set(text) - set(index))
        if missing:
            raise ValueError(f"prime text has characters outside the vocabulary: {''.join(missing)!r}")
        return [index[c] for c in text]

    def _one_state(self, h) -> list[tuple]:
        """One sequence's state as the stack's ``step`` takes it, from None (zeros), the lecture's h ((H,) or
        (H, 1)) or per layer a tuple of vectors (H,) (rows (1, H) too)."""
        if h is None:
            return [tuple(np.zeros(self.H, self.dtype) for _ in self.state_names) for _ in range(self.layers)]
        if isinstance(h, np.ndarray):
            if not self.lecture:
                raise ValueError(f"the state of a {self.layers}-layer {self.cell} model is a list of tuples, "
                                 "one per layer")
            return [(np.asarray(h, self.dtype).reshape(self.H).copy(),)]
        return [tuple(np.asarray(a, self.dtype).reshape(self.H).copy() for a in layer) for layer in h]

    def sample(self, h=None, prime: int | str | list[int] = 0, n: int = 200, temperature: float = 1.0,
               rng: np.random.Generator | None = None):
        """Generate ``n`` characters after ``prime`` (an index, indices, or text).

        ``h`` is the starting state of one sequence (zeros when None): per layer a tuple of (H,) vectors
        (:meth:`state_of`), or for the lecture's model its (H,) or (H, 1) h. The prime is fed through the
        network first; each next character is drawn from softmax(q / temperature), or is the argmax when
        ``temperature`` is 0. No dropout. Returns text when the model has ``chars``, else a list of indices.
        The caller's ``h`` is not changed.
        """
        if temperature < 0:
            raise ValueError("temperature must be >= 0")
        rng = rng if rng is not None else np.random.default_rng()
        layers, v, by = self.params.layers, self.params["v"], self.params["by"][:, 0]
        state = self._one_state(h)
        ids = self.encode(prime) if isinstance(prime, str) else [int(i) for i in np.atleast_1d(prime)]
        if not ids:
            ids = [0]
        for i in ids[:-1]:
            state = self.stack.step(layers, i, state)
        ix = ids[-1]
        out = []
        for _ in range(int(n)):
            state = self.stack.step(layers, ix, state)
            q = (v @ state[-1][0] + by).astype(np.float64)
            if temperature == 0:
                ix = int(np.argmax(q))
            else:
                prob = softmax_rows((q - q.max()) / temperature)  # ≤ 0 before dividing: no inf − inf at tiny T
                ix = int(rng.choice(self.V, p=prob))
            out.append(ix)
        if self.chars is None:
            return out
        return "".join(self.chars[i] for i in out)
