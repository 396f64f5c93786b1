"""N layers of one cell, with inverted dropout between them (on the non-recurrent connections only).

Layer 1 reads the characters (indices); layer k > 1 reads layer k−1's hidden states. With dropout p
those inputs are multiplied by a mask m_t of 0 and 1/(1 − p), drawn anew for every step, sequence and
unit (Zaremba, Sutskever & Vinyals 2014: "dropout on the non-recurrent connections"; the recurrent
connections h_{t−1} → h_t are never dropped). As PyTorch's ``nn.LSTM(dropout=p)`` does, nothing is
dropped below the first layer nor above the last; the caller may drop the top layer's output before
its own output layer. Dropout is off at p = 0 and with ``train=False`` (sampling, validation); a
caller can fix the masks (``masks=``) to make a pass exactly repeatable, e.g. for a gradient check.

Parameters, gradients and states are lists with one entry per layer (bottom first), each in the
cell's own convention (:mod:`rnntui.cells.base`); PyTorch's names get the suffix ``_l{k}``
(:meth:`Stack.torch_state`), as in ``nn.LSTM(num_layers=N)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .base import Cache, Cell, ParamSpec, RefBackward, RefForward, onehot_columns, reach_back


@dataclass
class StackCache:
    """One cache per layer, and the dropout masks and dropped inputs of the last forward pass."""

    layers: list[Cache]
    masks: list[np.ndarray] | None = None
    inputs: list[np.ndarray] = field(default_factory=list)  # the dropped inputs of layers 2 … N


class Stack:
    """``layers`` layers of ``cell`` over ``input_size`` inputs (the vocabulary), ``hidden_size`` units each."""

    def __init__(self, cell: Cell, input_size: int, hidden_size: int, layers: int = 1, dropout: float = 0.0):
        if int(layers) < 1:
            raise ValueError(f"layers must be at least 1, got {layers}")
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.cell = cell
        self.input_size, self.hidden_size = int(input_size), int(hidden_size)
        self.layers, self.dropout = int(layers), float(dropout)

    def __repr__(self) -> str:
        return (f"Stack({self.cell!r}, input_size={self.input_size}, hidden_size={self.hidden_size}, "
                f"layers={self.layers}, dropout={self.dropout})")

    def _inputs(self, k: int) -> int:
        return self.input_size if k == 0 else self.hidden_size

    # -- parameters -----------------------------------------------------------------------------------------------
    def specs(self) -> tuple[tuple[ParamSpec, ...], ...]:
        return tuple(self.cell.specs(self._inputs(k), self.hidden_size) for k in range(self.layers))

    def zeros(self, dtype=np.float32) -> list[dict[str, np.ndarray]]:
        return [self.cell.zeros(self._inputs(k), self.hidden_size, dtype) for k in range(self.layers)]

    def init(self, rng: np.random.Generator, params: list[dict], scheme: str = "scaled") -> None:
        """Each layer's :meth:`Cell.init`, bottom first, from the one ``rng``."""
        for p in params:
            self.cell.init(rng, p, scheme)

    def zero_state(self, batch: int, dtype=np.float32) -> list[tuple]:
        return [self.cell.zero_state(batch, self.hidden_size, dtype) for _ in range(self.layers)]

    def new_cache(self) -> StackCache:
        return StackCache([Cache() for _ in range(self.layers)])

    def draw_masks(self, rng: np.random.Generator, rows: int, dtype=np.float32) -> list[np.ndarray]:
        """Inverted-dropout masks for the inputs of layers 2 … N: (rows, H) each, 0 or 1/(1 − p)."""
        keep = 1.0 - self.dropout
        out = []
        for _ in range(self.layers - 1):
            m = rng.random((rows, self.hidden_size), dtype=np.float32) < keep
            out.append(np.multiply(m, np.dtype(dtype).type(1.0 / keep), dtype=dtype))
        return out

    # -- the fast pass --------------------------------------------------------------------------------------------
    def forward(self, params: list[dict], x: np.ndarray, state0: list[tuple], cache: StackCache, *,
                train: bool = True, masks: list[np.ndarray] | None = None,
                rng: np.random.Generator | None = None) -> tuple[np.ndarray, list[tuple]]:
        """All layers over a (B, T) part: ``x`` the indices (T·B,), ``state0`` one state per layer.

        Dropout between layers: the given ``masks`` (L − 1 arrays (T·B, H) of factors), else, when training
        with p > 0, masks drawn from ``rng``. Returns the top layer's h as rows (T·B, H) (a view of the
        cache) and the last state of every layer.
        """
        self._check(params, state0)
        x = np.asarray(x)
        rows = x.shape[0]
        dtype = params[0][self.cell.w_hh].dtype
        if masks is None and train and self.dropout > 0 and self.layers > 1:
            if rng is None:
                raise ValueError("dropout needs a random generator (rng=) to draw its masks")
            masks = self.draw_masks(rng, rows, dtype)
        if masks is not None:
            masks = list(masks)
            if len(masks) != self.layers - 1 or any(np.shape(m) != (rows, self.hidden_size) for m in masks):
                raise ValueError(f"masks must be {self.layers - 1} arrays of shape {(rows, self.hidden_size)}")
        cache.masks = masks
        cache.inputs = []
        last = []
        hs = x
        for k, (p, c) in enumerate(zip(params, cache.layers, strict=True)):
            if k and masks is not None:
                xin = c.arrays.get("dropped")
                if xin is None or xin.shape != hs.shape or xin.dtype != dtype:
                    xin = c.arrays["dropped"] = np.empty(hs.shape, dtype)
                hs = np.multiply(hs, masks[k - 1], out=xin)  # the dropped input of layer k + 1
                cache.inputs.append(xin)
            hs, state = self.cell.forward(p, hs, state0[k], c)
            last.append(state)
        return hs, last

    def backward(self, params: list[dict], cache: StackCache, dh_top: np.ndarray, grads: list[dict]) -> list[tuple]:
        """BPTT through all layers, top first: ``dh_top`` (T·B, H) = ∂E/∂h of the top layer (used as work space).

        Every layer's gradients into ``grads`` (overwritten); returns ∂E/∂state0 of every layer.
        """
        dstate0 = [None] * self.layers
        dh = dh_top
        for k in range(self.layers - 1, -1, -1):
            out = self.cell.backward(params[k], cache.layers[k], dh, grads[k])
            dstate0[k] = out.dstate0
            if k:
                dh = out.dx  # ∂E/∂(layer k's input) …
                if cache.masks is not None:
                    np.multiply(dh, cache.masks[k - 1], out=dh)  # … through the mask: ∂E/∂h of the layer below
        return dstate0

    def last_loss_back(self, params: list[dict], cache: StackCache, dh_T: np.ndarray) -> list[dict[str, np.ndarray]]:
        """The last step's loss alone, followed back through time and down the layers (see
        :func:`rnntui.cells.base.reach_back`): per layer, log ‖∂E_T/∂h_{T−d}‖ (and c for the lstm), d = 0 … T."""
        masks = cache.masks or [None] * (self.layers - 1)
        layers = [(self.cell, c, None if k == 0 else masks[k - 1]) for k, c in enumerate(cache.layers)]
        return reach_back(layers, dh_T)

    def step(self, params: list[dict], x, state: list[tuple]) -> list[tuple]:
        """One time step of one sequence through all layers (no dropout): ``x`` an index, ``state`` one tuple of
        (H,) vectors per layer. Returns the next states; the top layer's h is ``[-1][0]``."""
        out = []
        for p, s in zip(params, state, strict=True):
            s = self.cell.step(p, x, s)
            out.append(s)
            x = s[0]
        return out

    def saturation(self, cache: StackCache) -> list[tuple]:
        return [self.cell.saturation(c) for c in cache.layers]

    def recurrent_matrices(self, params: list[dict]) -> list[dict[str, np.ndarray]]:
        return [self.cell.recurrent_matrices(p) for p in params]

    def torch_state(self, params: list[dict]) -> dict[str, np.ndarray]:
        """The parameters under the names of PyTorch's multi-layer module's state_dict (weight_ih_l0, …)."""
        return {f"{name}_l{k}": a for k, p in enumerate(params) for name, a in self.cell.torch_tensors(p).items()}

    def from_torch(self, state: dict) -> list[dict[str, np.ndarray]]:
        """Parameters from such a state_dict (NumPy arrays)."""
        out = []
        for k in range(self.layers):
            suffix = f"_l{k}"
            out.append(self.cell.from_torch({n[:-len(suffix)]: a for n, a in state.items() if n.endswith(suffix)}))
        return out

    def _check(self, params: list[dict], state0: list[tuple]) -> None:
        if len(params) != self.layers or len(state0) != self.layers:
            raise ValueError(f"a {self.layers}-layer stack needs {self.layers} parameter dicts and states, "
                             f"got {len(params)} and {len(state0)}")

    # -- the reference, batch in columns ------------------------------------------------------------------------------
    def _mask_column(self, masks, k: int, t: int, B: int):
        """Layer k's input mask at step t as (H, B) columns, or 1 without dropout."""
        return 1 if masks is None else np.asarray(masks[k - 1])[t * B:(t + 1) * B].T

    def reference_forward(self, params: list[dict], inputs: np.ndarray, state0: list[tuple],
                          masks: list[np.ndarray] | None = None) -> list[RefForward]:
        """Every layer's reference forward loop over (B, T) ``inputs``, from ``state0`` (tuples of (H, B)), with the
        dropout ``masks`` (rows (T·B, H), as :meth:`forward` takes them)."""
        inputs = np.asarray(inputs)
        B, T = inputs.shape
        xs = [onehot_columns(inputs[:, t], self.input_size) for t in range(T)]
        fwds = []
        for k, p in enumerate(params):
            if k:
                xs = [fwds[-1].states[t + 1][0] * self._mask_column(masks, k, t, B) for t in range(T)]
            fwds.append(self.cell.reference_forward(p, xs, state0[k]))
        return fwds

    def reference_bptt(self, params: list[dict], fwds: list[RefForward], dhs: list,
                       masks: list[np.ndarray] | None = None) -> list[RefBackward]:
        """Every layer's reference BPTT, top first, from ``dhs[t]`` = ∂E/∂h_t of the top layer ((H, B) each)."""
        B = np.shape(dhs[0])[1]
        out = [None] * self.layers
        for k in range(self.layers - 1, -1, -1):
            out[k] = self.cell.reference_bptt(params[k], fwds[k], dhs)
            if k:
                dhs = [dx * self._mask_column(masks, k, t, B) for t, dx in enumerate(out[k].dxs)]
        return out
