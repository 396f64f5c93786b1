"""CharRNN: the lecture's vanilla RNN, its forward pass and backpropagation through time.

    h_t = tanh(u·x_t + w·h_{t−1} + b_h)        x_t one-hot, so u·x_t is a column of u
    ŷ_t = softmax(v·h_t + b_y)
    E   = −Σ_t log ŷ_t[target_t]               summed over T steps, averaged over B sequences

Shapes in the lecture's convention, batch in columns: ``u`` (H, V), ``w`` (H, H),
``v`` (V, H), ``bh`` (H, 1), ``by`` (V, 1), a hidden state ``h`` is (H, B).

How a pass is laid out (for speed; README "Performance"). The five parameters are views of one
flat vector (:class:`Packed`), stacked as the weights of the network's two affine maps::

    z_t = [h_{t−1}ᵀ 1 x_tᵀ]·Wz      Wz = [wᵀ; b_hᵀ; uᵀ]   (H+1+V, H)
    q_t = [h_tᵀ 1]·Wq               Wq = [vᵀ; b_yᵀ]       (H+1, V)

so clipping, the update rules and the monitor work on one vector, and each gradient is written
straight into its place. Inside a pass the per-step matrices are stored transposed, one row per
(time step, sequence), time-major: ``hs[t·B + b] = h_t[:, b]``, so every h_t is a contiguous
(B, H) block. Only the recurrence loops over t; u·x_t + b_h (a gather of columns of u), the
output layer, softmax, ∂E/∂v, ∂E/∂b_y and vᵀ·(ŷ − y) run once for all T steps, and so do ∂E/∂w
and [∂E/∂b_h; ∂E/∂u], the latter as one product with the one-hot inputs [1 | x_tᵀ] (cheaper than
a scatter-add). The arrays of a pass are kept for the next pass of the same shape, and a large
batch is split into parts that run on the CPU cores at once (:mod:`rnntui.parallel`).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from functools import lru_cache, partial

import numpy as np

from . import parallel

PARAM_NAMES = ("u", "w", "v", "bh", "by")
#: |h| above this counts as a saturated tanh unit (its gradient 1 − h² < 0.02).
SATURATION_LEVEL = 0.99
#: Where each tensor sits in the flat vector, in order: wᵀ, b_hᵀ, uᵀ (= Wz), vᵀ, b_yᵀ (= Wq).
FLAT_ORDER = ("w", "bh", "u", "v", "by")
#: Work buffers are kept for this many batch shapes (training and validation need two).
KEEP_SHAPES = 4


@lru_cache(maxsize=16)
def _segment_starts(H: int, V: int) -> np.ndarray:
    sizes = {"w": H * H, "bh": H, "u": V * H, "v": H * V, "by": V}
    starts = np.cumsum([0] + [sizes[k] for k in FLAT_ORDER[:-1]])
    starts.flags.writeable = False
    return starts


@lru_cache(maxsize=16)
def _segment_bounds(H: int, V: int) -> tuple[tuple[str, int, int], ...]:
    """(name, start, end) of each tensor's segment of a packed vector, in FLAT_ORDER."""
    starts = _segment_starts(H, V).tolist()
    ends = starts[1:] + [(H + 1 + V) * H + (H + 1) * V]
    return tuple(zip(FLAT_ORDER, starts, ends, strict=True))


class Packed(dict):
    """``u, w, v, bh, by`` as views of one flat vector, in the lecture's shapes.

    The vector holds ``Wz = [wᵀ; b_hᵀ; uᵀ]`` (H+1+V, H) then ``Wq = [vᵀ; b_yᵀ]`` (H+1, V), so each
    tensor is one contiguous segment of it (transposed). Parameters, gradients, optimizer state
    and updates share this layout, so whole-vector work (clipping, an update rule, norms) is one
    NumPy call on ``flat``. Replace an entry and the link is gone: ``flat`` is then None, and
    such code falls back to the entries one by one.
    """

    def __init__(self, flat: np.ndarray, hidden_size: int, vocab_size: int):
        H, V = int(hidden_size), int(vocab_size)
        K = H + 1 + V
        if flat.shape != (K * H + (H + 1) * V,):
            raise ValueError(f"a packed vector for H={H}, V={V} has {K * H + (H + 1) * V} entries, got {flat.shape}")
        self.H, self.V = H, V
        self._flat = flat
        self.Wz = flat[:K * H].reshape(K, H)
        self.Wq = flat[K * H:].reshape(H + 1, V)
        super().__init__(u=self.Wz[H + 1:].T, w=self.Wz[:H].T, v=self.Wq[:H].T, bh=self.Wz[H:H + 1].T,
                         by=self.Wq[H:].T)
        self._intact = True
        #: start of each segment in ``flat``, in FLAT_ORDER (for np.ufunc.reduceat)
        self.starts = _segment_starts(H, V)
        #: each tensor's segment of ``flat`` (1-D, contiguous), by name
        self.flat_segments = self.segments(flat)

    @classmethod
    def empty(cls, hidden_size: int, vocab_size: int, dtype) -> Packed:
        H, V = int(hidden_size), int(vocab_size)
        return cls(np.empty((H + 1 + V) * H + (H + 1) * V, dtype), H, V)

    @classmethod
    def zeros(cls, hidden_size: int, vocab_size: int, dtype) -> Packed:
        p = cls.empty(hidden_size, vocab_size, dtype)
        p._flat[...] = 0
        return p

    @classmethod
    def of(cls, tensors: dict[str, np.ndarray], dtype=None) -> Packed:
        """A packed copy of ``tensors`` (any dict of u, w, v, bh, by)."""
        H, V = tensors["u"].shape
        p = cls.empty(H, V, dtype or tensors["u"].dtype)
        for k in PARAM_NAMES:
            p[k][...] = tensors[k]
        return p

    @property
    def flat(self) -> np.ndarray | None:
        """The flat vector behind the entries, or None once an entry was replaced."""
        return self._flat if self._intact else None

    def segments(self, flat: np.ndarray) -> dict[str, np.ndarray]:
        """``flat`` (a vector in this layout) cut into its five tensors' segments, by name."""
        return {k: flat[a:b] for k, a, b in _segment_bounds(self.H, self.V)}

    def __reduce__(self):  # copies and pickles are plain dicts of plain arrays
        return dict, (dict(self),)


def _unlinking(name: str):
    """``dict.<name>``, also marking the Packed as no longer backed by its flat vector."""
    method = getattr(dict, name)

    def change(self, *args, **kwargs):
        self._intact = False
        return method(self, *args, **kwargs)

    change.__name__ = name
    return change


for _name in ("__setitem__", "__delitem__", "__ior__", "update", "pop", "popitem", "setdefault", "clear"):
    setattr(Packed, _name, _unlinking(_name))


def packed_pair(*dicts) -> list[np.ndarray] | None:
    """The flat vectors of ``dicts`` if all are intact :class:`Packed` of one layout, else None."""
    first = dicts[0]
    if not isinstance(first, Packed):
        return None
    flats = []
    for d in dicts:
        flat = d.flat if isinstance(d, Packed) and (d.H, d.V) == (first.H, first.V) else None
        if flat is None:
            return None
        flats.append(flat)
    return flats


@dataclass(frozen=True)
class StepDiagnostics:
    """Per-step figures from one forward/backward pass.

    ``dh_norms[t]``  ‖∂E/∂h_t‖ (Frobenius over the batch) for t = 0 … T−1.
    ``hs`` the tanh activations, one row per (step, sequence): (T·B, H); ``ps`` the softmax
    outputs, (T·B, V). When the batch was split into P parts, one block per part:
    (P, T·B/P, H) and (P, T·B/P, V). Both are views of the model's work buffers, valid until its
    next pass.
    ``saturated`` ``(hs, n)``: n activations of that very ``hs`` array have |h| > SATURATION_LEVEL,
    counted during the pass while they were in the cache (a copy given another ``hs`` counts anew).
    """

    dh_norms: np.ndarray
    hs: np.ndarray
    ps: np.ndarray
    dh0: np.ndarray  # (H, B): ∂E/∂h_0
    saturated: tuple[np.ndarray, int] | None = field(default=None, repr=False, compare=False)

    def by_step(self, T: int) -> tuple[np.ndarray, np.ndarray]:
        """``hs`` and ``ps`` as (T, B, H) and (T, B, V), sequences in batch order (a copy when the batch was split)."""
        def steps(a: np.ndarray) -> np.ndarray:
            if a.ndim == 2:
                return a.reshape(T, -1, a.shape[-1])
            P = a.shape[0]
            return a.reshape(P, T, -1, a.shape[-1]).transpose(1, 0, 2, 3).reshape(T, -1, a.shape[-1])
        return steps(self.hs), steps(self.ps)

    def last_loss_back(self, w: np.ndarray, v: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """:func:`last_loss_back` of this pass (``targets`` (B, T), ``w`` and ``v`` the weights it ran on)."""
        targets = np.asarray(targets)
        T = targets.shape[1]
        hs, ps = self.by_step(T)
        dy = np.array(ps[T - 1])  # ŷ_T (B, V)
        dy[np.arange(len(dy)), targets[:, T - 1]] -= 1  # eq-3: − y_T
        return last_loss_back(w, v, hs, dy)


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

    ``hbuf``  ((T+1)·b, H)  row block 0 is h_0ᵀ, block t+1 is h_tᵀ (row t·b + j: sequence j)
    ``x1``    (T·b, 1+V)    [1 | x_tᵀ], the one-hot input of every step with a 1 before it (for b_h and u)
    ``ux``    (T·b, H)      u·x_t + b_h of every step (gathered columns of u)
    ``q``     (V, T·b)      logits, then ŷ; column t·b + j is step t of sequence j
    ``dy``    (V, T·b)      ∂E/∂q
    ``dh``, ``dhraw``, ``dhnext``  (T·b, H)  ∂E/∂h_t; ∂E/∂z_t; wᵀ·dhraw_t, what step t sends back to h_{t−1}
    ``grad``  a flat gradient (the first part writes into the returned one instead)
    The ``*_at`` lists hold each step's (b, ·) block of these arrays.
    """

    def __init__(self, hbuf: np.ndarray, q: np.ndarray, H: int, V: int, b: int, T: int):
        N, dtype = T * b, hbuf.dtype
        self.b, self.T, self.N, self.H = b, T, N, H
        self.hbuf, self.q = hbuf, q
        self.x1 = np.zeros((N, 1 + V), dtype)
        self.x1[:, 0] = 1
        self.x_idx: np.ndarray | None = None  # the inputs now set in x1 (time-major)
        self.x1_ones: np.ndarray | None = None  # where their ones are, in x1.ravel()
        self.rows = np.arange(N)
        self.x1_rows = self.rows * (1 + V) + 1  # x1.ravel() index of column 1 (input 0) of every row
        self.ux = np.empty((N, H), dtype)
        self.dy = np.empty((V, N), dtype)
        self.dh = np.empty((N, H), dtype)
        self.dhraw = np.empty((N, H), dtype)
        self.dhnext = np.empty((N, H), dtype)
        self.grad = np.empty((H + 1 + V) * H + (H + 1) * V, dtype)
        blocks = lambda a: [a[t * b:(t + 1) * b] for t in range(len(a) // b)]  # noqa: E731
        self.h_at, self.ux_at = blocks(hbuf), blocks(self.ux)
        self.dh_at, self.dhraw_at, self.dhnext_at = blocks(self.dh), blocks(self.dhraw), blocks(self.dhnext)

    def target_index(self, targets: np.ndarray) -> np.ndarray:
        """Where each step's target y_t is in ``q.ravel()`` (and ``dy.ravel()``), from (b, T) targets."""
        return targets.T.reshape(-1).astype(np.intp) * self.N + self.rows

    def set_inputs(self, x_idx: np.ndarray, h0: np.ndarray) -> None:
        """h_0 (H, b) into block 0 of hbuf, and the one-hot x_t of every step into x1."""
        flat = self.x1.reshape(-1)
        if self.x1_ones is not None:
            flat[self.x1_ones] = 0
        self.x_idx = x_idx.astype(np.intp)
        self.x1_ones = self.x1_rows + self.x_idx
        flat[self.x1_ones] = 1
        self.hbuf[:self.b] = h0.T


class _Buffers:
    """A (B, T) batch as ``P`` parts of B/P sequences; their hbuf and q are blocks of one array each."""

    def __init__(self, H: int, V: int, B: int, T: int, parts: int, dtype):
        b = B // parts
        self.hbuf = np.empty((parts, (T + 1) * b, H), dtype)
        self.q = np.empty((parts, V, T * b), dtype)
        self.parts = [_Part(self.hbuf[k], self.q[k], H, V, b, T) for k in range(parts)]
        self.bounds = [(k * b, (k + 1) * b) for k in range(parts)]
        self.pacer = parallel.Pacer(parts)

    def hs(self) -> np.ndarray:
        """h_t of every step and sequence: (T·B, H), or (P, T·B/P, H) over P parts."""
        hs = self.hbuf[:, self.parts[0].b:]
        return hs[0] if len(self.parts) == 1 else hs

    def ps(self) -> np.ndarray:
        """ŷ of every step and sequence: (T·B, V), or (P, T·B/P, V) over P parts."""
        ps = self.q.transpose(0, 2, 1)
        return ps[0] if len(self.parts) == 1 else ps


def last_loss_back(w: np.ndarray, v: np.ndarray, hs: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """The last step's loss alone, followed back through the recurrence: log ‖∂E_T/∂h_{T−d}‖ for d = 0 … T.

    ``hs`` (T, B, H) holds h_1 … h_T of B sequences as rows, ``dy`` (B, V) their ŷ_T − y_T (eq-3),
    ``w`` (H, H) and ``v`` (V, H) the weights of the pass that made ``hs``. Index d = T is h_0. The
    norm is the Frobenius norm over the batch (the sequences' gradients are independent). Each step
    back is eq-7 then eq-12/13, as in the lecture's loop without the other steps' losses:
    dhraw = (1 − h²) ⊙ dh, then dhnext = wᵀ·dhraw. The vector is rescaled to norm 1 after every
    step and the log norms summed, so a gradient that vanishes (or explodes) by 1e-40 over the
    window stays measurable in float32. Returns float64 log norms; −inf from where it is exactly 0.
    """
    T = hs.shape[0]
    logs = np.full(T + 1, -np.inf)
    dh = np.dot(dy, v)  # eq-6: vᵀ·(ŷ_T − y_T), one row per sequence
    dhraw = np.empty_like(dh)
    acc = 0.0
    for d in range(T + 1):
        flat = dh.reshape(-1)
        n = math.sqrt(float(np.dot(flat, flat)))
        if not n > 0 or not math.isfinite(n):
            if not math.isfinite(n):
                logs[d:] = math.inf if n == math.inf else math.nan
            break
        acc += math.log(n)
        logs[d] = acc
        if d == T:
            break
        dh *= dh.dtype.type(1.0 / n)
        h = hs[T - 1 - d]  # h_{T−d}
        np.multiply(h, h, out=dhraw)
        np.subtract(1, dhraw, out=dhraw)  # eq-7: 1 − h²
        np.multiply(dhraw, dh, out=dhraw)  # dhraw = (1 − h²) ⊙ ∂E_T/∂h
        np.dot(dhraw, w, out=dh)  # eq-12/13: dhnext = wᵀ·dhraw, ∂E_T/∂h one step further back
    return logs


def _block_sq(a: np.ndarray, T: int) -> np.ndarray:
    """Σ of squares of each of the T row blocks of ``a``, in float64."""
    rows = a.reshape(T, 1, -1)
    return np.matmul(rows, rows.transpose(0, 2, 1)).reshape(T).astype(np.float64)


class CharRNN:
    """A character-level vanilla RNN with parameters ``u, w, v, bh, by``.

    ``init="scaled"`` draws u, w, v uniformly from ±1/√H (as PyTorch's nn.RNN does);
    ``init="lecture"`` draws them from N(0, 0.01²) as the lecture does. Biases start at 0.
    ``chars`` (optional) is the vocabulary, used to turn text into indices and back.
    ``threads`` is how a pass uses the CPU cores: ``"auto"``, a number of parts, or ``"blas"``
    (see :mod:`rnntui.parallel`; default: the ``RNNTUI_THREADS`` environment variable, else auto).
    A model runs one pass at a time (its work buffers are reused); use a copy (``astype``) to
    compute on the same weights from another thread.
    """

    def __init__(self, vocab_size: int, hidden_size: int, *, seed: int = 0, dtype=np.float32,
                 init: str = "scaled", chars: str | None = None, threads: str | int | None = None):
        if chars is not None and len(chars) != vocab_size:
            raise ValueError(f"chars has {len(chars)} characters but vocab_size is {vocab_size}")
        self.V, self.H = int(vocab_size), int(hidden_size)
        self.dtype = np.dtype(dtype)
        self.chars = chars
        self.threads = parallel.parse_policy(threads)
        self._buffers: dict[tuple[int, int], _Buffers] = {}
        rng = np.random.default_rng(seed)
        H, V = self.H, self.V
        if init == "lecture":
            draw = lambda *shape: rng.standard_normal(shape) * 0.01  # noqa: E731
        elif init == "scaled":
            k = 1.0 / np.sqrt(H)
            draw = lambda *shape: rng.uniform(-k, k, shape)  # noqa: E731
        else:
            raise ValueError(f"unknown init {init!r}")
        self.params: Packed = Packed.zeros(H, V, self.dtype)
        for name, shape in (("u", (H, V)), ("w", (H, H)), ("v", (V, H))):  # the draws in this order
            self.params[name][...] = draw(*shape)

    def __getstate__(self) -> dict:
        # The work buffers are views of each other (a part's per-step blocks alias its arrays); a pickle
        # would copy them apart and the next pass would compute on stale copies. They are not state.
        state = self.__dict__.copy()
        state["_buffers"] = {}
        return state

    # -- convenience -------------------------------------------------------------
    u = property(lambda self: self.params["u"])
    w = property(lambda self: self.params["w"])
    v = property(lambda self: self.params["v"])
    bh = property(lambda self: self.params["bh"])
    by = property(lambda self: self.params["by"])

    def zero_state(self, batch_size: int = 1) -> np.ndarray:
        return np.zeros((self.H, batch_size), self.dtype)

    def astype(self, dtype) -> CharRNN:
        """A copy of this model with parameters in ``dtype`` (e.g. float64 for a gradient check)."""
        other = CharRNN.__new__(CharRNN)
        other.V, other.H, other.chars, other.threads = self.V, self.H, self.chars, self.threads
        other.dtype = np.dtype(dtype)
        other._buffers = {}
        other.params = Packed.of(self.params, other.dtype)
        return other

    def num_params(self) -> int:
        return sum(p.size for p in self.params.values())

    # -- the pass ----------------------------------------------------------------
    def _check(self, inputs, targets, h0):
        inputs = np.asarray(inputs)
        if inputs.ndim != 2:
            raise ValueError(f"inputs must be (B, T), got shape {inputs.shape}")
        B, T = inputs.shape
        if targets is not None and np.shape(targets) != (B, T):
            raise ValueError(f"targets must have the shape of inputs {(B, T)}, got {np.shape(targets)}")
        if h0 is None:
            h0 = self.zero_state(B)
        if np.shape(h0) != (self.H, B):
            raise ValueError(f"h0 must be (H, B) = {(self.H, B)}, got {np.shape(h0)}")
        return inputs, B, T, h0

    def _weights(self) -> Packed:
        """The parameters as a Packed whose Wz and Wq are current (a packed copy if an entry was replaced)."""
        p = self.params
        if isinstance(p, Packed) and p.flat is not None and p.Wz.dtype == self.dtype:
            return p
        return Packed.of(p, self.dtype)

    def _buffers_for(self, B: int, T: int) -> _Buffers:
        buf = self._buffers.get((B, T))
        if buf is None or buf.hbuf.dtype != self.dtype:
            parts = parallel.num_parts(self.threads, B, self.H)
            while B % parts:  # equal parts only
                parts -= 1
            if len(self._buffers) >= KEEP_SHAPES:
                self._buffers.clear()
            buf = self._buffers[(B, T)] = _Buffers(self.H, self.V, B, T, parts, self.dtype)
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

    def _recur(self, part: _Part, Wz: np.ndarray) -> None:
        """The recurrence over one part: h_1 … h_T into hbuf (h_0 and the inputs are already there)."""
        H = self.H
        # u·x_t for a one-hot x_t is column x_t of u: one gather for all steps, plus b_h.
        np.take(Wz[H + 1:] + Wz[H], part.x_idx, axis=0, out=part.ux, mode="clip")
        wT, h_at, ux_at = Wz[:H], part.h_at, part.ux_at
        for t in range(part.T):
            h_t = h_at[t + 1]
            np.dot(h_at[t], wT, out=h_t)  # w·h_{t−1}, in rows
            np.add(h_t, ux_at[t], out=h_t)
            np.tanh(h_t, out=h_t)  # h_t = tanh(u·x_t + w·h_{t−1} + b_h)

    def _output(self, part: _Part, Wq: np.ndarray, y_at: np.ndarray) -> float:
        """ŷ for every step at once into ``part.q`` (V, T·b), softmax(v·h + b_y); returns Σ −log ŷ[y] over them.

        ``y_at`` is where each step's target is in ``part.q.ravel()``: y·T·b + column.

        The loss is taken from the logits (log-sum-exp), not from ŷ: a target whose probability
        underflows to 0 still has a finite loss, so a poor but finite model is not taken for a diverged one.
        """
        H = self.H
        q = np.matmul(Wq[:H].T, part.hbuf[part.b:].T, out=part.q)  # q_t = v·h_t
        np.add(q, Wq[H][:, None], out=q)  # + b_y
        np.subtract(q, q.max(axis=0), out=q)
        q_y = q.reshape(-1)[y_at]  # the target's logit of every step
        np.exp(q, out=q)
        z = q.sum(axis=0)
        np.divide(q, z, out=q)
        return float(np.log(z).sum() - q_y.sum())

    def _part_loss(self, W: Packed, inputs, targets, h0, h_last, k: int, part: _Part, b0: int, b1: int) -> float:
        """Forward over sequences b0 … b1 of the batch; Σ −log ŷ[y] over them, and their last state into h_last."""
        part.set_inputs(inputs[b0:b1].T.reshape(-1), h0[:, b0:b1])
        self._recur(part, W.Wz)
        h_last[:, b0:b1] = part.h_at[part.T].T
        return self._output(part, W.Wq, part.target_index(targets[b0:b1]))

    def _forward(self, inputs, h0, B: int, T: int) -> tuple[np.ndarray, np.ndarray]:
        """h_0 … h_T as rows, ((T+1)·B, H) with block t = h_tᵀ (a copy), and the inputs time-major (T·B,)."""
        inputs = np.asarray(inputs)
        self.loss(inputs, np.zeros_like(inputs), h0)
        buf = self._buffers_for(B, T)
        hs = buf.hbuf.reshape(len(buf.parts), T + 1, -1, self.H)  # (part, t, j, H)
        return hs.transpose(1, 0, 2, 3).reshape((T + 1) * B, self.H).copy(), inputs.T.reshape(-1)

    def loss(self, inputs, targets, h0=None) -> tuple[float, np.ndarray]:
        """Forward only: ``(loss, h_last)``; loss summed over T, averaged over B."""
        inputs, B, T, h0 = self._check(inputs, targets, h0)
        targets = np.asarray(targets)
        W, buf = self._weights(), self._buffers_for(B, T)
        h_last = np.empty((self.H, B), self.dtype)
        nll = self._run_parts(buf, partial(self._part_loss, W, inputs, targets, h0, h_last))
        return float(sum(nll) / B), h_last

    # -- forward + backward ------------------------------------------------------
    def _part_grads(self, W: Packed, w: np.ndarray, inputs, targets, h0, grads: Packed, h_last, dh0,
                    k: int, part: _Part, b0: int, b1: int) -> tuple[float, np.ndarray, np.ndarray, int]:
        """Forward and BPTT over sequences b0 … b1 of a batch; the gradient of part 0 goes into ``grads``,
        that of part k > 0 into ``part.grad``. ``w`` is the parameter w, C-contiguous (for the products in the loop).

        Returns (Σ −log ŷ[y], Σ ‖∂E/∂h_t‖² per step, number of saturated h) over these sequences.
        """
        H, b, T, N, B = self.H, part.b, part.T, part.N, len(inputs)
        grad = grads if k == 0 else Packed(part.grad, H, self.V)
        x_idx = inputs[b0:b1].T.reshape(-1)  # (T·b,) time-major: row t·b + j is sequence j at step t
        y_at = part.target_index(targets[b0:b1])  # where ŷ_t[y_t] is in part.q.ravel()
        part.set_inputs(x_idx, h0[:, b0:b1])
        hs = part.hbuf[b:]  # (T·b, H): h_t for every step
        hprev = part.hbuf[:N]  # (T·b, H): h_{t−1} for every step
        Wz, Wq = W.Wz, W.Wq
        v = Wq[:H].T
        self._recur(part, Wz)
        h_last[:, b0:b1] = part.h_at[T].T
        nll = self._output(part, Wq, y_at)  # part.q is now ŷ, (V, T·b)
        saturated = np.count_nonzero(np.abs(hs, out=part.dh) > SATURATION_LEVEL)  # for the monitor, while hot

        # eq-3: ∂E/∂q_t = ŷ_t − y_t (divided by B: the loss is averaged over sequences).
        dy = np.multiply(part.q, self.dtype.type(1.0 / B), out=part.dy).T  # (T·b, V)
        part.dy.reshape(-1)[y_at] -= self.dtype.type(1.0 / B)  # − y_t: at each step's target
        dv = dy.T @ hs  # eq-5: Σ_t (ŷ_t − y_t)·h_tᵀ
        dby = dy.sum(axis=0)
        np.matmul(dy, v, out=part.dh)  # eq-6: vᵀ·(ŷ_t − y_t), for every t at once
        np.subtract(1, np.square(hs, out=part.dhraw), out=part.dhraw)  # eq-7: ∂h_t/∂z_t = 1 − h_t²

        dh_at, dhraw_at, dhnext_at = part.dh_at, part.dhraw_at, part.dhnext_at
        for t in range(T - 1, -1, -1):
            if t < T - 1:
                np.add(dh_at[t], dhnext_at[t + 1], out=dh_at[t])  # ∂E/∂h_t = vᵀ·dy_t + what step t+1 sent back
            np.multiply(dhraw_at[t], dh_at[t], out=dhraw_at[t])  # dhraw_t = (1 − h_t²) ⊙ ∂E/∂h_t
            np.dot(dhraw_at[t], w, out=dhnext_at[t])  # eq-12/13: wᵀ·dhraw_t, sent back to h_{t−1}
        dh0[:, b0:b1] = dhnext_at[0].T

        # eq-9: Σ_t dhraw_t·x_tᵀ (a product with the one-hot rows of x1) and Σ_t dhraw_t (its column of ones):
        np.matmul(part.x1.T, part.dhraw, out=grad.Wz[H:])  # [∂E/∂b_h; ∂E/∂u]ᵀ
        np.matmul(hprev.T, part.dhraw, out=grad.Wz[:H])  # eq-11: Σ_t dhraw_t·h_{t−1}ᵀ, as ∂E/∂wᵀ
        np.copyto(grad["v"], dv)
        np.copyto(grad["by"][:, 0], dby)
        return nll, _block_sq(part.dh, T), saturated

    def loss_and_grads(self, inputs, targets, h0=None):
        """One forward pass and backpropagation through time over a (B, T) batch.

        Returns ``(loss, grads, h_last, diagnostics)``: the cross-entropy summed over
        the T steps and averaged over the B sequences; the exact, unclipped gradient
        of that loss (same keys and shapes as ``params``, a :class:`Packed`); the last
        hidden state (H, B) to carry into the next batch (without gradient: truncated BPTT);
        and a :class:`StepDiagnostics`.
        """
        inputs, B, T, h0 = self._check(inputs, targets, h0)
        targets = np.asarray(targets)
        W, buf = self._weights(), self._buffers_for(B, T)
        grads = Packed.empty(self.H, self.V, self.dtype)
        h_last, dh0 = np.empty((self.H, B), self.dtype), np.empty((self.H, B), self.dtype)
        w = np.ascontiguousarray(W["w"])
        results = self._run_parts(buf, partial(self._part_grads, W, w, inputs, targets, h0, grads, h_last, dh0))
        for part in buf.parts[1:]:
            np.add(grads.flat, part.grad, out=grads.flat)
        nll, dh_sq, saturated = (sum(r[i] for r in results) for i in range(3))
        hs = buf.hs()
        diag = StepDiagnostics(dh_norms=np.sqrt(dh_sq), hs=hs, ps=buf.ps(), dh0=dh0,
                               saturated=(hs, int(saturated)))
        return float(nll / B), grads, h_last, diag

    def states(self, inputs, h0=None) -> np.ndarray:
        """h_0 … h_T of a (B, T) batch: (T+1, B, H), row t·B + b of block t is sequence b (a copy)."""
        inputs, B, T, h0 = self._check(inputs, None, h0)
        rows, _ = self._forward(inputs, h0, B, T)
        return rows.reshape(T + 1, B, self.H)

    def last_loss_back(self, inputs, targets, h0=None, states: np.ndarray | None = None) -> np.ndarray:
        """:func:`last_loss_back` on these weights, by a fresh forward pass over a (B, T) batch (or from its
        ``states``, this batch's :meth:`states` when the caller has them already)."""
        inputs, B, T, h0 = self._check(inputs, targets, h0)
        targets = np.asarray(targets)
        hs = self.states(inputs, h0) if states is None else states
        p = self.params
        q = (hs[T] @ p["v"].T + p["by"][:, 0]).astype(np.float64)
        dy = softmax_rows(q)
        dy[np.arange(B), targets[:, T - 1]] -= 1  # eq-3
        return last_loss_back(p["w"], p["v"], hs[1:], dy.astype(self.dtype))

    # -- sampling ----------------------------------------------------------------
    def encode(self, text: str) -> list[int]:
        if self.chars is None:
            raise ValueError("this model has no vocabulary (chars); pass indices instead of text")
        index = {c: i for i, c in enumerate(self.chars)}
        missing = sorted(set(text) - set(index))
        if missing:
            raise ValueError(f"prime text has characters outside the vocabulary: {''.join(missing)!r}")
        return [index[c] for c in text]

    def sample(self, h=None, prime: int | str | list[int] = 0, n: int = 200, temperature: float = 1.0,
               rng: np.random.Generator | None = None):
        """Generate ``n`` characters after ``prime`` (an index, indices, or text).

        ``h`` is the starting state (H,) or (H, 1) (zeros when None). The prime is fed
        through the network first; each next character is drawn from softmax(q / temperature),
        or is the argmax when ``temperature`` is 0. Returns text when the model has
        ``chars``, else a list of indices. The caller's ``h`` is not changed.
        """
        if temperature < 0:
            raise ValueError("temperature must be >= 0")
        rng = rng if rng is not None else np.random.default_rng()
        p = self.params
        u, w, v, bh, by = p["u"], p["w"], p["v"], p["bh"][:, 0], p["by"][:, 0]
        h = np.zeros(self.H, self.dtype) if h is None else np.asarray(h, self.dtype).reshape(self.H).copy()
        ids = self.encode(prime) if isinstance(prime, str) else [int(i) for i in np.atleast_1d(prime)]
        if not ids:
            ids = [0]
        for i in ids[:-1]:
            h = np.tanh(u[:, i] + w @ h + bh)
        ix = ids[-1]
        out = []
        for _ in range(int(n)):
            h = np.tanh(u[:, ix] + w @ h + bh)
            q = (v @ h + by).astype(np.float64)
            if temperature == 0:
                ix = int(np.argmax(q))
            else:
                prob = softmax_rows((q - q.max()) / temperature)  # ≤ 0 before dividing: no inf − inf at tiny T
                ix = int(rng.choice(self.V, p=prob))
            out.append(ix)
        if self.chars is None:
            return out
        return "".join(self.chars[i] for i in out)
