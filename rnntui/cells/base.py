"""The recurrent cell interface: what a cell gives the model, the monitor and the derivation screen.

A cell (rnn, lstm, gru: one file each, as char-rnn's ``model/RNN.lua``, ``LSTM.lua``, ``GRU.lua``)
is stateless apart from its settings: weights, gradients and work arrays are passed in.

Conventions of the fast path (``forward``, ``backward``, ``last_loss_back``, ``saturation``)
-----------------------------------------------------------------------------------------
- **Rows, time-major**, as in ``rnntui.model``: the rows of a (B, T) part are ordered t·B + b (step t of
  sequence b), so every step is one contiguous (B, ·) block of rows.
- **A layer's input** ``x``: for the first layer the characters' indices, (T·B,) integers below I = V
  (a one-hot input: W·x_t is column x_t of W, gathered, never multiplied); above it, rows (T·B, I)
  (the layer below's h, after dropout). Rows must stay unchanged from forward until backward.
- **A state** is a tuple of (B, H) rows named by ``state_names``: ("h",) for rnn and gru, ("h", "c") for
  the lstm. h comes first and is the layer's output.
- **Parameters**: a dict name → array of its :class:`ParamSpec`'s shape. The gated cells keep PyTorch's
  layout, so weights compare with ``nn.LSTM``/``nn.GRU`` weight for weight: ``w_ih`` (G·H, I),
  ``w_hh`` (G·H, H), ``b_ih``, ``b_hh`` (G·H,), the G gate blocks stacked along axis 0 in PyTorch's
  order. The vanilla cell keeps the lecture's names ``u`` (H, I), ``w`` (H, H), ``bh`` (H,).
  All arrays of a pass share one dtype, float32 or float64.
- **Gradients**: a dict with the same names and shapes; ``backward`` overwrites every entry.
- **The cache**: a :class:`Cache` per layer and part, owned by the caller. ``forward`` fills it;
  ``backward``, ``saturation`` and ``last_loss_back`` read it. Its arrays are reused by the next pass
  of the same shape and dtype, and what ``forward`` returns (the hidden states) is a view of them,
  valid until that next pass. One pass at a time per cache; parts of a batch split over threads each
  need a cache of their own (the parameters are only read).

How the fast path is laid out (for speed): the Python loop runs only over the recurrence. Before it,
the input projections of all T steps are one product (for one-hot inputs one gather of rows of a
(V, G·H) table that already holds the biases). Inside the step, one (B, H)·(H, G·H) product gives
every gate's recurrent part, and the gates' nonlinearities run in place on preallocated blocks. The
gate blocks are reordered inside a pass (``order``) so that the sigmoid gates are adjacent, and each
block's pre-activation comes out multiplied by a factor (``scales``, folded into the pass's copy of
the weights): −1 for a sigmoid gate and −2 for a tanh computed with them, so that one exp over the
adjacent blocks, one add and one reciprocal give σ(a) = 1/(1 + e^(−a)) for the gates and σ(2a) for
the tanh, which is then tanh(a) = 2σ(2a) − 1 (NumPy's float32 exp is twice as fast as its tanh). After
the backward loop each weight gradient is one product over all T steps. Per-step views of the
cache's arrays are made once per allocation, not in the loop.

The reference (``reference_step``, ``reference_bptt``) follows the lecture's convention, batch in
columns: x_t is (I, B) (one-hot columns for the first layer), a state is a tuple of (H, B) columns,
biases are added as columns. Plain per-step code in the cell's standard names, line by line the
equations (``equations``: each with the marker of the line that computes it), for real or complex
arrays (the complex-step gradient check differentiates it).
"""

from __future__ import annotations

import inspect
import math
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import ClassVar, NamedTuple

import numpy as np

#: A sigmoid gate counts as left-saturated below this value and right-saturated above GATE_HIGH
#: (Karpathy, Johnson & Fei-Fei 2015, "Visualizing and understanding recurrent networks").
GATE_LOW, GATE_HIGH = 0.1, 0.9
#: |tanh| above this counts as saturated (its derivative 1 − x² < 0.02), as model.SATURATION_LEVEL.
TANH_LEVEL = 0.99
#: ParamSpec.init kinds: "weight" is U(±1/√H) ("scaled", PyTorch's) or N(0, 0.01²) ("lecture");
#: "bias" is U(±1/√H) ("scaled") or 0 ("lecture"); "zeros" is always 0.
INIT_KINDS = ("weight", "bias", "zeros")
SCHEMES = ("scaled", "lecture")


class ParamSpec(NamedTuple):
    """One parameter tensor of a cell: its name, shape, how it is initialised, its gate blocks and PyTorch name.

    ``blocks`` names the row blocks (gates) along axis 0 in PyTorch's order, () when it has none.
    ``torch`` is the PyTorch attribute it corresponds to without the layer suffix (``weight_ih``…).
    """

    name: str
    shape: tuple[int, ...]
    init: str
    blocks: tuple[str, ...] = ()
    torch: str = ""


class Equation(NamedTuple):
    """One equation of a cell's derivation: an id, the maths in readable terminal notation, and the marker
    in the comment of the line of the cell's reference code that computes it (default: the id)."""

    id: str
    maths: str
    marker: str = ""

    @property
    def tag(self) -> str:
        """What marks the equation's line: ``marker``, or the id."""
        return self.marker or self.id


@dataclass(frozen=True)
class Saturation:
    """How one gate (or tanh activation) of a layer was used in the last forward pass, over all T·B·H values.

    ``kind`` "sigmoid": ``low``/``high`` are the shares below GATE_LOW and above GATE_HIGH (left and right
    saturation). ``kind`` "tanh": the shares below −TANH_LEVEL and above TANH_LEVEL. ``saturated`` is their sum.
    """

    name: str
    kind: str
    mean: float
    low: float
    high: float

    @property
    def saturated(self) -> float:
        return self.low + self.high


def figures(name: str, kind: str, a: np.ndarray) -> Saturation:
    """The :class:`Saturation` of the activations ``a`` (any shape, any strides)."""
    n = a.size
    if not n:
        return Saturation(name, kind, math.nan, 0.0, 0.0)
    lo, hi = (GATE_LOW, GATE_HIGH) if kind == "sigmoid" else (-TANH_LEVEL, TANH_LEVEL)
    return Saturation(name, kind, float(a.mean(dtype=np.float64)), np.count_nonzero(a < lo) / n,
                      np.count_nonzero(a > hi) / n)


@dataclass
class Backward:
    """What :meth:`Cell.backward` returns besides the gradients: ∂E/∂state0 (a tuple of (B, H) copies, as the
    state), and ∂E/∂x (T·B, I) when the input was rows (None for indices; an array of the cache)."""

    dstate0: tuple
    dx: np.ndarray | None


@dataclass
class Cache:
    """One layer's work arrays for passes over a (B, T) part, reused by the next pass of the same shape and dtype.

    ``array(name, shape)`` gives the array of that name, allocated anew only when the shape or the
    pass's dtype changed. ``views`` holds per-step views of those arrays (the cell builds them once per
    allocation). Set by ``forward``: T, B, I, H, ``onehot`` (the input was indices), ``x`` (the input),
    and the weights prepared for the pass.
    """

    T: int = 0
    B: int = 0
    I: int = 0  # noqa: E741
    H: int = 0
    dtype: np.dtype | None = None
    onehot: bool = True
    x: np.ndarray | None = None
    factors: bool = False  # the backward's per-step factors are those of the current forward
    arrays: dict = field(default_factory=dict)
    views: dict = field(default_factory=dict)
    x1_ones: np.ndarray | None = None  # where the ones of the one-hot matrix are now (x1.ravel() indices)

    def setup(self, T: int, B: int, I: int, H: int, onehot: bool, dtype) -> None:  # noqa: E741
        dtype = np.dtype(dtype)
        if (T, B, I, H, onehot, dtype) != (self.T, self.B, self.I, self.H, self.onehot, self.dtype):
            self.arrays.clear()
            self.views.clear()
            self.x1_ones = None
        self.T, self.B, self.I, self.H, self.onehot, self.dtype = T, B, I, H, onehot, dtype
        self.factors = False

    def array(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        a = self.arrays.get(name)
        if a is None or a.shape != shape:
            a = self.arrays[name] = np.empty(shape, self.dtype)
            self.views.clear()
        return a

    @property
    def N(self) -> int:
        return self.T * self.B


@dataclass
class RefForward:
    """The reference forward loop's record: ``states[t]`` the state before step t (``states[0]`` = state0,
    ``states[T]`` the last), ``steps[t]`` the terms of step t (x, the gates, …) by their names."""

    states: list
    steps: list


@dataclass
class RefBackward:
    """The reference BPTT's result: gradients by parameter name, ∂E/∂state0 (tuple of (H, B)), ∂E/∂x_t per
    step ((I, B) each) and every step's terms (``steps[t]``: dh, dc, the gates' gradients … by name)."""

    grads: dict
    dstate0: tuple
    dxs: list
    steps: list


def sigmoid(a):
    """σ(a) = 1 / (1 + e^(−a)), for real or complex a (the reference's)."""
    return 1 / (1 + np.exp(-a))


def blocks(a: np.ndarray, n: int) -> list[np.ndarray]:
    """The n equal row blocks of ``a`` (a weight's or a bias's gates), as views."""
    return np.split(a, n)


def col(b: np.ndarray) -> np.ndarray:
    """A bias vector (K,) as a column (K, 1), to add to (K, B) columns."""
    return b.reshape(-1, 1)


def onehot_columns(indices, size: int, dtype=np.float64) -> np.ndarray:
    """(size, B): column b is the one-hot of ``indices[b]``."""
    indices = np.asarray(indices).reshape(-1)
    x = np.zeros((size, len(indices)), dtype)
    x[indices, np.arange(len(indices))] = 1
    return x


def _block_rows(order: tuple[int, ...], H: int) -> np.ndarray:
    """Row indices that gather PyTorch's blocks into the internal ``order`` (block k inside = block order[k])."""
    return np.concatenate([np.arange(k * H, (k + 1) * H) for k in order])


#: A transpose of more entries than this is done in blocks of TRANSPOSE_ROWS rows (cache-friendly: 2–4× faster).
TRANSPOSE_BLOCKED, TRANSPOSE_ROWS = 1 << 18, 16


def _reorder(src: np.ndarray, order: tuple[int, ...], out: np.ndarray) -> np.ndarray:
    """out's row block k = ``src``'s row block order[k] (equal blocks; block copies, not a gather of rows)."""
    H = len(src) // len(order)
    for k, j in enumerate(order):
        np.copyto(out[k * H:(k + 1) * H], src[j * H:(j + 1) * H])
    return out


def _transpose_blocks(src: np.ndarray, order: tuple[int, ...], scales: tuple[float, ...],
                      out: np.ndarray) -> np.ndarray:
    """out = the transpose of ``src`` with its row blocks reordered (block k = block order[k]) and each times its
    factor in ``scales``: out[:, kH:(k+1)H] = scales[k]·src[order[k]·H:(order[k]+1)·H]ᵀ."""
    H = len(src) // len(order)
    for k, (j, f) in enumerate(zip(order, scales, strict=True)):
        block = src[j * H:(j + 1) * H]
        _transpose_scaled(block, None if f == 1 else np.full(H, f, src.dtype), out[:, k * H:(k + 1) * H])
    return out


def _transpose_scaled(src: np.ndarray, scale: np.ndarray | None, out: np.ndarray) -> np.ndarray:
    """out = (src · scale[:, None])ᵀ, for a (K, M) ``src`` and (M, K) ``out`` (scale None: 1, a plain transpose)."""
    if src.size <= TRANSPOSE_BLOCKED:
        return np.copyto(out, src.T) or out if scale is None else np.multiply(src.T, scale, out=out)
    for k in range(0, src.shape[0], TRANSPOSE_ROWS):
        block = src[k:k + TRANSPOSE_ROWS].T
        if scale is None:
            np.copyto(out[:, k:k + TRANSPOSE_ROWS], block)
        else:
            np.multiply(block, scale[k:k + TRANSPOSE_ROWS], out=out[:, k:k + TRANSPOSE_ROWS])
    return out


def _sq(a: np.ndarray) -> float:
    flat = a.reshape(-1)
    return float(np.dot(flat, flat))


class Cell(ABC):
    """A recurrent cell: parameters, fast forward/backward over a (B, T) part, one step, figures and derivation.

    Subclasses set the class attributes and implement :meth:`specs`, the fast loop (``_make_views``,
    ``_recur``, ``_factors``, ``_back_loop`` with its ``_back_step``, ``_bias_grads``, ``_reach_work`` and
    ``_reach_step``, which takes the same ``_back_step``), the reference (``reference_step``,
    ``reference_bptt``) and :meth:`saturation`.
    """

    #: "rnn", "lstm", "gru"
    name: ClassVar[str]
    #: the gate blocks of the weights' rows, in PyTorch's order (("",) for the vanilla cell)
    gates: ClassVar[tuple[str, ...]]
    state_names: ClassVar[tuple[str, ...]]
    equations: ClassVar[tuple[Equation, ...]]
    #: names of the input and recurrent weight matrices
    w_ih: ClassVar[str] = "w_ih"
    w_hh: ClassVar[str] = "w_hh"
    #: the fast path's block order: internal block k is PyTorch's block order[k]
    order: ClassVar[tuple[int, ...]] = (0,)
    #: the block order of the input-side pre-activation gradients in the fast backward (default: ``order``)
    back_in_order: ClassVar[tuple[int, ...] | None] = None
    #: the factor each internal block's pre-activation is computed times (−1: a sigmoid gate, −2: a tanh by σ)
    scales: ClassVar[tuple[float, ...]] = (1.0,)

    # -- parameters ----------------------------------------------------------------------------------------
    @abstractmethod
    def specs(self, input_size: int, hidden_size: int) -> tuple[ParamSpec, ...]:
        """The parameter tensors of one layer with ``input_size`` inputs and ``hidden_size`` units."""

    @property
    def G(self) -> int:
        return len(self.gates)

    def sizes(self, params: dict) -> tuple[int, int]:
        """(I, H) of a layer's parameters."""
        I, H = params[self.w_ih].shape[1], params[self.w_hh].shape[1]  # noqa: E741
        return I, H

    def zeros(self, input_size: int, hidden_size: int, dtype=np.float32) -> dict[str, np.ndarray]:
        """Parameters (or gradients) of one layer, all 0."""
        return {s.name: np.zeros(s.shape, dtype) for s in self.specs(input_size, hidden_size)}

    def init(self, rng: np.random.Generator, params: dict, scheme: str = "scaled") -> None:
        """Fill ``params`` in place, tensor by tensor in spec order (see INIT_KINDS; k = 1/√H)."""
        if scheme not in SCHEMES:
            raise ValueError(f"unknown init scheme {scheme!r}: use one of {', '.join(SCHEMES)}")
        I, H = self.sizes(params)  # noqa: E741
        k = 1.0 / math.sqrt(H)
        for spec in self.specs(I, H):
            if spec.init not in INIT_KINDS:
                raise ValueError(f"{spec.name}: unknown init kind {spec.init!r}")
            a = params[spec.name]
            if spec.init == "zeros" or (spec.init == "bias" and scheme == "lecture"):
                a[...] = 0
            elif scheme == "scaled":
                a[...] = rng.uniform(-k, k, spec.shape)
            else:
                a[...] = rng.standard_normal(spec.shape) * 0.01

    def zero_state(self, batch: int, hidden_size: int, dtype=np.float32) -> tuple:
        return tuple(np.zeros((batch, hidden_size), dtype) for _ in self.state_names)

    def split_blocks(self, tensors: dict) -> dict[str, np.ndarray]:
        """Every tensor with gate blocks cut into them (views), named ``tensor.gate``; others as they are."""
        I, H = self.sizes(tensors)  # noqa: E741
        out = {}
        for spec in self.specs(I, H):
            a = tensors[spec.name]
            if len(spec.blocks) > 1:
                out.update({f"{spec.name}.{g}": b for g, b in zip(spec.blocks, blocks(a, len(spec.blocks)),
                                                                  strict=True)})
            else:
                out[spec.name] = a
        return out

    def recurrent_matrices(self, params: dict) -> dict[str, np.ndarray]:
        """The recurrent weight matrix, per gate block for gated cells (views), for σmax."""
        w = params[self.w_hh]
        if self.G == 1:
            return {self.w_hh: w}
        return {f"{self.w_hh}.{g}": b for g, b in zip(self.gates, blocks(w, self.G), strict=True)}

    def torch_tensors(self, params: dict) -> dict[str, np.ndarray]:
        """The layer's tensors under PyTorch's names (weight_ih, weight_hh, bias_ih, bias_hh), same layout."""
        I, H = self.sizes(params)  # noqa: E741
        return {s.torch: np.asarray(params[s.name]) for s in self.specs(I, H)}

    def from_torch(self, tensors: dict) -> dict[str, np.ndarray]:
        """Parameters from PyTorch's tensors of one layer (NumPy arrays under weight_ih, …, no layer suffix)."""
        I, H = np.shape(tensors["weight_ih"])[1], np.shape(tensors["weight_hh"])[1]  # noqa: E741
        return {s.name: np.array(tensors[s.torch]) for s in self.specs(I, H)}

    # -- the fast pass -----------------------------------------------------------------------------------------
    def forward(self, params: dict, x: np.ndarray, state0: tuple, cache: Cache) -> tuple[np.ndarray, tuple]:
        """The layer over a (B, T) part: ``x`` indices (T·B,) or rows (T·B, I), ``state0`` a tuple of (B, H).

        Fills ``cache``; returns the hidden states h_1 … h_T as rows (T·B, H) (a view of the cache) and the
        last state (a tuple of (B, H) copies).
        """
        I, H = self.sizes(params)  # noqa: E741
        x = np.asarray(x)
        dtype = params[self.w_hh].dtype
        state0 = tuple(state0)
        if len(state0) != len(self.state_names):
            raise ValueError(f"a {self.name} state is {self.state_names}, got {len(state0)} arrays")
        B = np.shape(state0[0])[0]
        onehot = x.ndim == 1
        N = x.shape[0]
        if B < 1 or N % B or not N:
            raise ValueError(f"the input has {N} rows, not a multiple T·B of the state's B = {B}")
        for s in state0:
            if np.shape(s) != (B, H):
                raise ValueError(f"every state array must be (B, H) = {(B, H)}, got {np.shape(s)}")
        if onehot:
            if not np.issubdtype(x.dtype, np.integer):
                raise ValueError("first-layer inputs must be integer indices (T·B,)")
            if x.min() < 0 or x.max() >= I:
                raise ValueError(f"input indices must lie in 0 … {I - 1}")
        elif x.shape != (N, I):
            raise ValueError(f"input rows must be (T·B, I) = {(N, I)}, got {x.shape}")
        c = cache
        c.setup(N // B, B, I, H, onehot, dtype)
        c.x = x
        self._prepare(params, c)
        self._project(c, x)
        self._load_state(c, state0)
        with np.errstate(over="ignore"):  # e^(−a) = inf for a very negative a: σ(a) = 1/(1 + inf) = 0, exactly
            self._recur(c)
        return self._outputs(c), self._last_state(c)

    def backward(self, params: dict, cache: Cache, dh_top: np.ndarray, grads: dict) -> Backward:
        """BPTT through the pass in ``cache`` (run by :meth:`forward` on these ``params``).

        ``dh_top`` (T·B, H) is ∂E/∂h_t from above (the output layer or the layer above) for every step;
        it is the loop's work space: on return it holds the total ∂E/∂h_t (through the recurrence too).
        The gradient of every parameter is written into ``grads`` (overwritten). The last state gets no
        gradient (truncated BPTT).
        """
        c = cache
        if c.x is None:
            raise ValueError("backward needs a forward pass in this cache first")
        if np.shape(dh_top) != (c.N, c.H):
            raise ValueError(f"dh_top must be (T·B, H) = {(c.N, c.H)}, got {np.shape(dh_top)}")
        if not c.factors:
            self._factors(c)
            c.factors = True
        dstate0, da_in, da_rec = self._back_loop(c, dh_top)
        dx = self._weight_grads(c, da_in, da_rec, grads)
        return Backward(dstate0, dx)

    def last_loss_back(self, params: dict, cache: Cache, dh_T: np.ndarray) -> dict[str, np.ndarray]:
        """The last step's loss alone, followed back: log ‖∂E_T/∂h_{T−d}‖ (and, for the lstm,
        log ‖∂E_T/∂c_{T−d}‖) for d = 0 … T, from ``dh_T`` (B, H) = ∂E_T/∂h_T. See :func:`reach_back`."""
        return reach_back([(self, cache, None)], dh_T)[0]

    def step(self, params: dict, x, state: tuple) -> tuple:
        """One time step of one sequence, for sampling: ``x`` an index (first layer) or a vector (I,),
        ``state`` a tuple of (H,) vectors. Returns the next state (its h first). The reference's equations."""
        I, _ = self.sizes(params)  # noqa: E741
        if np.ndim(x) == 0:
            xc = onehot_columns([int(x)], I, params[self.w_ih].dtype)
        else:
            xc = np.asarray(x).reshape(-1, 1)
        new, _ = self.reference_step(params, xc, tuple(np.asarray(s).reshape(-1, 1) for s in state))
        return tuple(a[:, 0] for a in new)

    @abstractmethod
    def saturation(self, cache: Cache) -> tuple[Saturation, ...]:
        """The gate figures of the last forward pass in ``cache``."""

    # -- fast-path pieces shared by the cells ----------------------------------------------------------------
    @abstractmethod
    def _internal_bias(self, params: dict, c: Cache) -> np.ndarray:
        """The bias added to the input projection (G·H,), internal order, times ``scales``."""

    def _prepare(self, params: dict, c: Cache) -> None:
        """The pass's weights: the recurrent matrix in the internal order, transposed and times ``scales`` for the
        forward (``Wf`` (H, G·H)) and as it is for the backward (``Wb`` (G·H, H)); the input table (one-hot,
        ``table`` (V, G·H), biases included) or matrix (``Wi`` (I, G·H) and bias ``bi``), and ``Wi_b``
        (G·H, I) in the backward's input order for ∂E/∂x."""
        I, H, G = c.I, c.H, self.G  # noqa: E741
        GH = G * H
        if "perm" not in c.arrays:  # (for the biases: _internal_bias)
            c.arrays["perm"] = _block_rows(self.order, H)
            c.arrays["scale"] = np.repeat(np.asarray(self.scales, c.dtype), H)
        w_hh, w_ih = params[self.w_hh], params[self.w_ih]
        _reorder(w_hh, self.order, c.array("Wb", (GH, H)))
        _transpose_blocks(w_hh, self.order, self.scales, c.array("Wf", (H, GH)))
        bias = self._internal_bias(params, c)
        if c.onehot:
            table = _transpose_blocks(w_ih, self.order, self.scales, c.array("table", (I, GH)))
            np.add(table, bias, out=table)
        else:
            _transpose_blocks(w_ih, self.order, self.scales, c.array("Wi", (I, GH)))
            np.copyto(c.array("bi", (GH,)), bias)
            _reorder(w_ih, self._in_order, c.array("Wi_b", (GH, I)))

    def _gates_buffer(self, c: Cache) -> np.ndarray:
        """Where the input projections go: the (T·B, G·H) pre-activations (then activations)."""
        return c.array("G", (c.N, self.G * c.H))

    def _project(self, c: Cache, x: np.ndarray) -> None:
        """The input projections W_ih·x_t + biases of all T steps at once, into the gates buffer."""
        G = self._gates_buffer(c)
        if c.onehot:
            np.take(c.arrays["table"], x, axis=0, out=G, mode="clip")  # one-hot: rows of the table
        else:
            np.matmul(x, c.arrays["Wi"], out=G)
            np.add(G, c.arrays["bi"], out=G)

    def _load_state(self, c: Cache, state0: tuple) -> None:
        h = c.array("h", ((c.T + 1) * c.B, c.H))
        h[:c.B] = state0[0]

    def _outputs(self, c: Cache) -> np.ndarray:
        return c.arrays["h"][c.B:]

    def _last_state(self, c: Cache) -> tuple:
        return (c.arrays["h"][c.T * c.B:].copy(),)

    def _onehot_matrix(self, c: Cache) -> np.ndarray:
        """[1 | x_tᵀ] of every step (T·B, 1 + V): a column of ones (for the biases) and the one-hot inputs."""
        x1 = c.arrays.get("x1")
        if x1 is None or x1.shape != (c.N, 1 + c.I):
            x1 = c.arrays["x1"] = np.zeros((c.N, 1 + c.I), c.dtype)
            x1[:, 0] = 1
            c.x1_ones = None
        flat = x1.reshape(-1)
        if c.x1_ones is not None:
            flat[c.x1_ones] = 0
        c.x1_ones = np.arange(c.N) * (1 + c.I) + 1 + c.x.astype(np.intp)
        flat[c.x1_ones] = 1
        return x1

    @property
    def _in_order(self) -> tuple[int, ...]:
        """The block order of the input-side pre-activation gradients in the backward."""
        return self.back_in_order or self.order

    def _unpermute(self, src: np.ndarray, order: tuple[int, ...], dst: np.ndarray) -> None:
        """Rows of ``src`` (its blocks in ``order``: block k is PyTorch's block order[k]) into ``dst`` in PyTorch's
        order."""
        if len(self.gates) == 1:
            np.copyto(dst, src)
        else:
            H = len(src) // len(order)
            for k, j in enumerate(order):
                np.copyto(dst[j * H:(j + 1) * H], src[k * H:(k + 1) * H])

    def _weight_grads(self, c: Cache, da_in: np.ndarray, da_rec: np.ndarray, grads: dict) -> np.ndarray | None:
        """Each weight gradient as one product over all T steps; ∂E/∂x for rows input (returned)."""
        GH, H, N = self.G * c.H, c.H, c.N
        hprev = c.arrays["h"][:N]  # h_0 … h_{T−1}
        if self.G == 1 and grads[self.w_hh].flags.c_contiguous:  # no blocks to reorder: straight into place
            np.matmul(da_rec.T, hprev, out=grads[self.w_hh])  # Σ_t δa_t·h_{t−1}ᵀ
        else:
            gw = np.matmul(da_rec.T, hprev, out=c.array("gw_hh", (GH, H)))  # Σ_t δa_t·h_{t−1}ᵀ
            self._unpermute(gw, self.order, grads[self.w_hh])
        in_order = self._in_order
        dx = None
        if c.onehot:
            # Σ_t δa_t·[1 | x_tᵀ]: the bias gradient (column 0) and the one-hot inputs' columns in one product
            gi = np.matmul(da_in.T, self._onehot_matrix(c), out=c.array("gw_ih", (GH, 1 + c.I)))
            self._unpermute(gi[:, 1:], in_order, grads[self.w_ih])
            db_in = gi[:, 0]
        else:
            gi = np.matmul(da_in.T, c.x, out=c.array("gw_ih", (GH, c.I)))
            self._unpermute(gi, in_order, grads[self.w_ih])
            db_in = da_in.sum(axis=0)
            dx = np.matmul(da_in, c.arrays["Wi_b"], out=c.array("dx", (N, c.I)))  # ∂E/∂x_t = W_ihᵀ·δa_t
        self._bias_grads(c, db_in, da_rec, grads)
        return dx

    def _views(self, c: Cache) -> dict:
        """Per-step views of the cache's arrays (:meth:`_make_views`), made once per allocation, not in the loops."""
        v = c.views.get(self.name)
        if v is None:
            v = c.views[self.name] = self._make_views(c.arrays, c.T, c.B, c.H)
        return v

    @abstractmethod
    def _make_views(self, a: dict, T: int, B: int, H: int) -> dict:
        """``fwd[s]``: the views the forward step s works on; ``factors[s]`` and ``grads[s]``: the backward
        step's, once their arrays exist in ``a`` (the cache's arrays)."""

    @abstractmethod
    def _recur(self, c: Cache) -> None:
        """The forward loop over the T steps (inputs projected and state0 loaded)."""

    @abstractmethod
    def _factors(self, c: Cache) -> None:
        """The backward's per-step factors that do not depend on the incoming gradient, for all steps at once."""

    @abstractmethod
    def _back_loop(self, c: Cache, dh_top: np.ndarray) -> tuple[tuple, np.ndarray, np.ndarray]:
        """The backward loop: (∂E/∂state0, input-side δa (T·B, G·H), recurrent-side δa (T·B, G·H))."""

    @abstractmethod
    def _bias_grads(self, c: Cache, db_in: np.ndarray, da_rec: np.ndarray, grads: dict) -> None:
        """The bias gradients from Σ_t of the input-side δa (internal order) and the recurrent δa."""

    @abstractmethod
    def _reach_work(self, c: Cache) -> dict:
        """Arrays for :func:`reach_back`: ``carried`` (a list, ∂E_T/∂state carried to the step before, zeros),
        and whatever scratch the step needs, each (B, ·)."""

    @abstractmethod
    def _reach_step(self, c: Cache, s: int, inject: np.ndarray | None, work: dict) -> tuple[tuple, np.ndarray]:
        """One step back for :func:`reach_back` at step s: ∂E_T/∂h_s = inject (from above) + carried.
        Returns the squared norms of the state's totals at step s (as ``state_names``) and the input-side δa
        (B, G·H), in the order of ``Wi_b``."""

    # -- the reference ---------------------------------------------------------------------------------------
    @abstractmethod
    def reference_step(self, params: dict, x: np.ndarray, state: tuple) -> tuple[tuple, dict]:
        """One step, batch in columns: x (I, B), state a tuple of (H, B). Returns (next state, the step's terms)."""

    @abstractmethod
    def reference_bptt(self, params: dict, fwd: RefForward, dhs: list) -> RefBackward:
        """BPTT through :meth:`reference_forward`'s record from ``dhs[t]`` = ∂E/∂h_t from above ((H, B) each)."""

    def reference_forward(self, params: dict, xs: list, state0: tuple) -> RefForward:
        """The forward loop, batch in columns: ``xs[t]`` (I, B), ``state0`` a tuple of (H, B)."""
        states, steps = [tuple(state0)], []
        for x in xs:
            state, terms = self.reference_step(params, x, states[-1])
            states.append(state)
            steps.append(terms)
        return RefForward(states, steps)


#: reach_back rescales the carried gradients when their squared norm leaves (RESCALE_BELOW, RESCALE_ABOVE).
RESCALE_BELOW, RESCALE_ABOVE = 1e-20, 1e20


def reach_back(layers: list, dh_T: np.ndarray) -> list[dict[str, np.ndarray]]:
    """The window's last loss E_T alone, followed back through time and down the layers.

    ``layers``: (cell, cache, mask) from the bottom layer up, each cache holding the forward pass
    of that layer; ``mask`` the dropout factors (T·B, I) applied to that layer's input (None: none).
    ``dh_T`` (B, H) is ∂E_T/∂h_T of the top layer. For each layer, log ‖∂E_T/∂h_{T−d}‖ and (lstm)
    log ‖∂E_T/∂c_{T−d}‖ for d = 0 … T (d = T: the initial state), Frobenius norms over the batch;
    ∂E_T/∂c is the total (through h_t too). The same steps as the backward loop, with only that loss's
    gradient. Whenever their size leaves 1e±10, all carried gradients are rescaled together to norm 1
    and the log of the factor is added to the log norms, so a gradient that vanishes (or explodes) by
    1e-40 over the window stays measurable in float32. Float64 log norms; −inf from where a gradient
    is exactly 0; +inf or NaN from where it stopped being finite.
    """
    cells = [cell for cell, _, _ in layers]
    caches = [c for _, c, _ in layers]
    T, B = caches[-1].T, caches[-1].B
    for cell, c in zip(cells, caches, strict=True):
        if c.x is None or (c.T, c.B) != (T, B):
            raise ValueError("every layer's cache must hold a forward pass over the same (B, T) part")
        if not c.factors:
            cell._factors(c)
            c.factors = True
    if np.shape(dh_T) != (B, caches[-1].H):
        raise ValueError(f"dh_T must be (B, H) = {(B, caches[-1].H)}, got {np.shape(dh_T)}")
    works = [cell._reach_work(c) for cell, c in zip(cells, caches, strict=True)]
    logs = [{name: np.full(T + 1, -np.inf) for name in cell.state_names} for cell in cells]
    top = np.array(dh_T, caches[-1].dtype)
    acc = 0.0

    def record(layer: int, d: int, squares) -> float:
        for name, sq in zip(cells[layer].state_names, squares, strict=True):
            if sq > 0 or not math.isfinite(sq):
                logs[layer][name][d] = acc + 0.5 * math.log(sq) if math.isfinite(sq) else sq
        return sum(squares)

    for d in range(T + 1):
        if d == T:
            for k, w in enumerate(works):
                record(k, d, [_sq(a) for a in w["carried"]])
            break
        s = T - 1 - d
        inject = top if d == 0 else None
        level = 0.0  # Σ of the squared norms just recorded: the carried gradients' size, near enough
        for k in range(len(layers) - 1, -1, -1):
            squares, da_in = cells[k]._reach_step(caches[k], s, inject, works[k])
            level += record(k, d, squares)
            if k:
                c, mask = caches[k], layers[k][2]
                inject = np.matmul(da_in, c.arrays["Wi_b"], out=works[k]["dx"])  # W_ihᵀ·δa: to the layer below
                if mask is not None:
                    np.multiply(inject, mask[s * B:(s + 1) * B], out=inject)
        if RESCALE_BELOW < level < RESCALE_ABOVE:
            continue
        n2 = sum(_sq(a) for w in works for a in w["carried"])
        if not math.isfinite(n2):
            for layer_logs in logs:
                for a in layer_logs.values():
                    a[d + 1:] = math.inf if n2 == math.inf else math.nan
            break
        if n2 == 0:
            break
        n = math.sqrt(n2)
        acc += math.log(n)
        for w in works:
            for a in w["carried"]:
                a *= a.dtype.type(1.0 / n)
    return logs


def source_lines(cell: Cell) -> dict[str, tuple[int, str]]:
    """For each of ``cell``'s equations: (line number in its module, that line's code without its comment),
    found by the equation's marker in the comments of ``reference_step`` and ``reference_bptt``."""
    found = {}
    code = []
    for method in (type(cell).reference_step, type(cell).reference_bptt):
        lines, start = inspect.getsourcelines(method)
        code += [(start + k, line) for k, line in enumerate(lines)]
    for eq in cell.equations:
        marker = re.compile(r"(?<![0-9A-Za-z_])" + re.escape(eq.tag) + r"(?![0-9])")  # eq-1 is not eq-11
        hits = [(n, line) for n, line in code if "  # " in line and marker.search(line.split("  # ", 1)[1])]
        if not hits:
            raise LookupError(f"no line of {type(cell).__name__}'s reference is marked {eq.tag!r}")
        n, line = hits[0]
        found[eq.id] = (n, line.split("  # ")[0].strip())
    return found
