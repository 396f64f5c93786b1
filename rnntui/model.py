"""CharRNN: the lecture's vanilla RNN, its forward pass and backpropagation through time.

    h_t = tanh(u·x_t + w·h_{t−1} + b_h)        x_t one-hot, so u·x_t is a column of u
    ŷ_t = softmax(v·h_t + b_y)
    E   = −Σ_t log ŷ_t[target_t]               summed over T steps, averaged over B sequences

Shapes in the lecture's convention, batch in columns: ``u`` (H, V), ``w`` (H, H),
``v`` (V, H), ``bh`` (H, 1), ``by`` (V, 1), a hidden state ``h`` is (H, B).

Inside ``loss_and_grads`` the per-step matrices are stored transposed, one row per
(time step, sequence): ``hs[t·B + b] = h_t[:, b]``. Every h_t is then a contiguous
(B, H) block, and the output layer, softmax, ∂E/∂v, ∂E/∂b_y and the scatter into
∂E/∂u run once for all T steps; only the recurrence itself loops over t.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

PARAM_NAMES = ("u", "w", "v", "bh", "by")


@dataclass(frozen=True)
class StepDiagnostics:
    """Per-step figures from one forward/backward pass (views of the pass's buffers).

    ``dh_norms[t]``  ‖∂E/∂h_t‖ (Frobenius over the batch) for t = 0 … T−1.
    ``carry_norms[t]`` ‖wᵀ·dhraw_t‖, the part of the gradient that step t sends back to h_{t−1}
    (``carry_norms[0]`` is ‖∂E/∂h_0‖).
    ``hs`` the tanh activations, (T·B, H); ``ps`` the softmax outputs, (T·B, V).
    """

    dh_norms: np.ndarray
    carry_norms: np.ndarray
    hs: np.ndarray
    ps: np.ndarray
    dh0: np.ndarray  # (H, B): ∂E/∂h_0


def softmax_rows(q: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Numerically stable softmax over the last axis (subtract the row max first)."""
    out = np.subtract(q, q.max(axis=-1, keepdims=True), out=out)
    np.exp(out, out=out)
    out /= out.sum(axis=-1, keepdims=True)
    return out


def softmax_jacobian(s: np.ndarray) -> np.ndarray:
    """eq-1: ∂s_i/∂a_j = s_i(δ_ij − s_j) for a softmax output vector ``s``."""
    return np.diag(s) - np.outer(s, s)


class CharRNN:
    """A character-level vanilla RNN with parameters ``u, w, v, bh, by``.

    ``init="scaled"`` draws u, w, v uniformly from ±1/√H (as PyTorch's nn.RNN does);
    ``init="lecture"`` draws them from N(0, 0.01²) as the lecture does. Biases start at 0.
    ``chars`` (optional) is the vocabulary, used to turn text into indices and back.
    """

    def __init__(self, vocab_size: int, hidden_size: int, *, seed: int = 0, dtype=np.float32,
                 init: str = "scaled", chars: str | None = None):
        if chars is not None and len(chars) != vocab_size:
            raise ValueError(f"chars has {len(chars)} characters but vocab_size is {vocab_size}")
        self.V, self.H = int(vocab_size), int(hidden_size)
        self.dtype = np.dtype(dtype)
        self.chars = chars
        rng = np.random.default_rng(seed)
        H, V = self.H, self.V
        if init == "lecture":
            draw = lambda *shape: rng.standard_normal(shape) * 0.01  # noqa: E731
        elif init == "scaled":
            k = 1.0 / np.sqrt(H)
            draw = lambda *shape: rng.uniform(-k, k, shape)  # noqa: E731
        else:
            raise ValueError(f"unknown init {init!r}")
        self.params: dict[str, np.ndarray] = {
            "u": draw(H, V).astype(self.dtype),
            "w": draw(H, H).astype(self.dtype),
            "v": draw(V, H).astype(self.dtype),
            "bh": np.zeros((H, 1), self.dtype),
            "by": np.zeros((V, 1), self.dtype),
        }

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
        other.V, other.H, other.chars = self.V, self.H, self.chars
        other.dtype = np.dtype(dtype)
        other.params = {k: p.astype(dtype, copy=True) for k, p in self.params.items()}
        return other

    def num_params(self) -> int:
        return sum(p.size for p in self.params.values())

    # -- forward -----------------------------------------------------------------
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

    def _forward(self, inputs: np.ndarray, h0: np.ndarray, B: int, T: int):
        """Run the recurrence. Returns ``hbuf`` ((T+1)·B, H): row block 0 is h0ᵀ, block t+1 is h_tᵀ."""
        p = self.params
        H = self.H
        x_idx = inputs.T.reshape(-1)  # (T·B,) time-major: row t·B + b is sequence b at step t
        hbuf = np.empty(((T + 1) * B, H), self.dtype)
        hbuf[:B] = h0.T
        # u·x_t for a one-hot x_t is column x_t of u: one gather for all steps, plus b_h.
        z = np.take(p["u"].T, x_idx, axis=0)  # (T·B, H)
        z += p["bh"].T
        wT = np.ascontiguousarray(p["w"].T)
        for t in range(T):
            zt = z[t * B:(t + 1) * B]
            zt += hbuf[t * B:(t + 1) * B] @ wT  # w·h_{t−1}, in rows
            np.tanh(zt, out=hbuf[(t + 1) * B:(t + 2) * B])  # h_t = tanh(u·x_t + w·h_{t−1} + b_h)
        return hbuf, x_idx

    def _output(self, hs: np.ndarray, y_idx: np.ndarray) -> tuple[np.ndarray, float]:
        """ŷ for every row of ``hs`` at once, softmax(v·h + b_y), (N, V); and Σ −log ŷ[y] over the rows.

        The loss is taken from the logits (log-sum-exp), not from ŷ: a target whose probability
        underflows to 0 still has a finite loss, so a poor but finite model is not taken for a diverged one.
        """
        q = hs @ self.params["v"].T  # q_t = v·h_t
        q += self.params["by"].T
        q -= q.max(axis=-1, keepdims=True)
        q_y = q[np.arange(len(q)), y_idx]
        np.exp(q, out=q)
        z = q.sum(axis=-1, keepdims=True)
        q /= z
        return q, float(np.sum(np.log(z[:, 0]) - q_y))

    def loss(self, inputs, targets, h0=None) -> tuple[float, np.ndarray]:
        """Forward only: ``(loss, h_last)``; loss summed over T, averaged over B."""
        inputs, B, T, h0 = self._check(inputs, targets, h0)
        hbuf, _ = self._forward(inputs, h0, B, T)
        y_idx = np.asarray(targets).T.reshape(-1)
        _, nll = self._output(hbuf[B:], y_idx)
        loss = nll / B
        return float(loss), hbuf[T * B:].T.copy()

    # -- forward + backward ------------------------------------------------------
    def loss_and_grads(self, inputs, targets, h0=None):
        """One forward pass and backpropagation through time over a (B, T) batch.

        Returns ``(loss, grads, h_last, diagnostics)``: the cross-entropy summed over
        the T steps and averaged over the B sequences; the exact, unclipped gradient
        of that loss (same keys and shapes as ``params``); the last hidden state (H, B)
        to carry into the next batch (without gradient: truncated BPTT); and a
        :class:`StepDiagnostics`.
        """
        inputs, B, T, h0 = self._check(inputs, targets, h0)
        p = self.params
        N = T * B
        hbuf, x_idx = self._forward(inputs, h0, B, T)
        hs = hbuf[B:]  # (N, H): h_t for every step
        hprev = hbuf[:N]  # (N, H): h_{t−1} for every step

        y_idx = np.asarray(targets).T.reshape(-1)
        rows = np.arange(N)
        ps, nll = self._output(hs, y_idx)  # ŷ, (N, V)
        loss = nll / B

        # eq-3: ∂E/∂q_t = ŷ_t − y_t (divided by B: the loss is averaged over sequences).
        dy = ps.copy()
        dy[rows, y_idx] -= 1
        dy *= self.dtype.type(1.0 / B)
        dv = dy.T @ hs  # eq-5: Σ_t (ŷ_t − y_t)·h_tᵀ
        dby = dy.sum(axis=0)[:, None]
        dh_out = dy @ p["v"]  # eq-6: vᵀ·(ŷ_t − y_t), for every t at once

        one_minus_h2 = 1 - hs * hs  # eq-7: ∂h_t/∂z_t = 1 − h_t²
        dh_all = np.empty_like(hs)  # ∂E/∂h_t (output part + what flows back from t+1)
        dhraw = np.empty_like(hs)  # ∂E/∂z_t
        w = p["w"]
        dhnext = np.zeros((B, self.H), self.dtype)
        for t in range(T - 1, -1, -1):
            s = slice(t * B, (t + 1) * B)
            np.add(dh_out[s], dhnext, out=dh_all[s])  # dh = vᵀ·dy + dhnext
            np.multiply(one_minus_h2[s], dh_all[s], out=dhraw[s])  # dhraw = (1 − h²) ⊙ dh
            np.dot(dhraw[s], w, out=dhnext)  # eq-12/13: dhnext = wᵀ·dhraw
        dw = dhraw.T @ hprev  # eq-11: Σ_t dhraw_t·h_{t−1}ᵀ
        duT = np.zeros((self.V, self.H), self.dtype)  # eq-9: Σ_t dhraw_t·x_tᵀ, a scatter by input index
        np.add.at(duT, x_idx, dhraw)
        dbh = dhraw.sum(axis=0)[:, None]

        grads = {"u": duT.T.copy(), "w": dw, "v": dv, "bh": dbh, "by": dby}
        dh_norms = np.sqrt(np.einsum("tij,tij->t", dh_all.reshape(T, B, -1), dh_all.reshape(T, B, -1)))
        carried = dh_all[:N - B] - dh_out[:N - B]  # what step t+1 sent back to h_t
        carry_sq = np.einsum("tij,tij->t", carried.reshape(T - 1, B, self.H), carried.reshape(T - 1, B, self.H))
        carry_norms = np.sqrt(np.concatenate([[np.sum(dhnext * dhnext)], carry_sq]))
        diag = StepDiagnostics(dh_norms=dh_norms, carry_norms=carry_norms, hs=hs, ps=ps, dh0=dhnext.T)
        return float(loss), grads, hbuf[N:].T.copy(), diag

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
                prob = softmax_rows(q / temperature)
                ix = int(rng.choice(self.V, p=prob))
            out.append(ix)
        if self.chars is None:
            return out
        return "".join(self.chars[i] for i in out)
