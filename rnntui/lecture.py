"""The lecture's loop, readable: forward and backpropagation through time in the lecture's names.

This is the reference. ``model.CharRNN`` is the fast path (packed weights, transposed rows, one
product for all T steps where the maths allows); a test proves the two agree to 1e-12 in float64.
The derivation screen computes its numbers with :func:`bptt` and shows *these* lines, gradcheck
differentiates :func:`forward`, and the tests compare against both.

Batch in columns, as in the lecture: ``xs[t]`` is the one-hot (V, B) of the B sequences' inputs at
step t, ``hs[t]`` the (H, B) hidden states, ``hs[-1]`` the state the window started from, ``ps[t]``
the (V, B) softmax outputs. The loss is summed over the T steps and averaged over the B sequences
(the slides' loop sums over sequences; dividing dy by B is the only change). Works for real and
complex weights (gradcheck's complex step): the softmax subtracts the largest real part.

    h_t = tanh(u·x_t + w·h_{t−1} + b_h)         ŷ_t = softmax(v·h_t + b_y)
    E   = −(1/B) Σ_b Σ_t log ŷ_t[y_t]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NAMES = ("u", "w", "v", "bh", "by")


def onehot(indices: np.ndarray, V: int, dtype=np.float64) -> np.ndarray:
    """(V, B): column b is the one-hot of ``indices[b]`` (eq-8: u·x_t is then a column of u)."""
    x = np.zeros((V, len(indices)), dtype)
    x[np.asarray(indices), np.arange(len(indices))] = 1
    return x


def softmax_jacobian(s: np.ndarray) -> np.ndarray:
    """∂s_i/∂q_j = s_i(δ_ij − s_j) for a softmax output vector ``s``."""
    return np.diag(s) - np.outer(s, s)  # eq-1


def softmax(q: np.ndarray) -> np.ndarray:
    """ŷ = softmax(q) over each column, shifted by the largest real part (exact for complex q too)."""
    e = np.exp(q - q.real.max(axis=0, keepdims=True))
    return e / e.sum(axis=0, keepdims=True)


@dataclass
class Forward:
    """What the forward loop keeps for backpropagation: xs, hs (hs[-1] = h0), ps, by step; the loss."""

    xs: dict
    hs: dict
    ps: dict
    loss: complex | float


def states(params: dict, inputs: np.ndarray, h0: np.ndarray) -> tuple[dict, dict]:
    """The recurrence over a (B, T) batch of indices from the (H, B) state ``h0``: xs and hs by step."""
    u, w, bh, v = params["u"], params["w"], params["bh"], params["v"]
    inputs = np.asarray(inputs)
    T = inputs.shape[1]
    V = v.shape[0]
    dtype = np.result_type(u, w, bh, h0)
    xs, hs = {}, {-1: np.array(h0, dtype)}
    for t in range(T):
        xs[t] = onehot(inputs[:, t], V, dtype)
        hs[t] = np.tanh(np.dot(u, xs[t]) + np.dot(w, hs[t - 1]) + bh)  # eq-8: u·x_t picks column x_t of u
    return xs, hs


def outputs(params: dict, hs: dict, targets: np.ndarray) -> tuple[dict, complex | float]:
    """ŷ_t = softmax(v·h_t + b_y) for t = 0 … T−1, and E = −(1/B) Σ log ŷ_t[y_t] (from the logits)."""
    v, by = params["v"], params["by"]
    targets = np.asarray(targets)
    B, T = targets.shape
    ps = {}
    loss = 0
    for t in range(T):
        q = np.dot(v, hs[t]) + by  # q_t = v·h_t + b_y
        ps[t] = softmax(q)  # ŷ_t
        # −log ŷ_t[y_t] by log-sum-exp: finite even where ŷ_t[y_t] underflows to 0
        m = q.real.max(axis=0)
        loss = loss + np.sum(m + np.log(np.exp(q - m).sum(axis=0)) - q[targets[:, t], np.arange(B)])
    return ps, loss / B


def forward(params: dict, inputs: np.ndarray, targets: np.ndarray, h0: np.ndarray) -> Forward:
    """The forward loop: :func:`states` then :func:`outputs`."""
    xs, hs = states(params, inputs, h0)
    ps, loss = outputs(params, hs, targets)
    return Forward(xs, hs, ps, loss)


@dataclass
class Backward:
    """The gradients (named as the parameters), ∂E/∂h0 (the last dhnext) and, when asked for, every
    step's dy, dh, dhraw and dhnext (``steps[t]``)."""

    grads: dict
    dh0: np.ndarray
    steps: dict


def backward(params: dict, fwd: Forward, targets: np.ndarray, *, keep: bool = False) -> Backward:
    """BPTT, from t = T down to 1, line for line the lecture's loop (dhnext = 0 at t = T)."""
    u, w, v, bh, by = (params[k] for k in NAMES)
    xs, hs, ps = fwd.xs, fwd.hs, fwd.ps
    targets = np.asarray(targets)
    B, T = targets.shape
    du, dw, dv = np.zeros_like(u, dtype=hs[0].dtype), np.zeros_like(w, dtype=hs[0].dtype), np.zeros_like(
        v, dtype=hs[0].dtype)
    dbh, dby = np.zeros_like(bh, dtype=hs[0].dtype), np.zeros_like(by, dtype=hs[0].dtype)
    dhnext = np.zeros_like(hs[0])
    steps = {}
    for t in reversed(range(T)):
        dy = np.copy(ps[t])
        dy[targets[:, t], np.arange(B)] -= 1  # eq-3: dE/dq = ŷ − y
        dy /= B  # the loss is averaged over the B sequences
        dv += np.dot(dy, hs[t].T)  # eq-5: (ŷ − y)·hᵀ
        dby += np.sum(dy, axis=1, keepdims=True)
        dh = np.dot(v.T, dy) + dhnext  # eq-6: backprop into h, plus what step t+1 sent back
        dhraw = (1 - hs[t] * hs[t]) * dh  # eq-7: backprop through tanh nonlinearity
        dbh += np.sum(dhraw, axis=1, keepdims=True)
        du += np.dot(dhraw, xs[t].T)  # eq-9: dhraw·xᵀ (only the input characters' columns)
        dw += np.dot(dhraw, hs[t - 1].T)  # eq-10/11: ∂z/∂w = h_{t−1}, so dhraw·h_{t−1}ᵀ
        dhnext = np.dot(w.T, dhraw)  # eq-12/13: ∂z/∂h_{t−1} = w, so wᵀ·dhraw goes to the step before
        if keep:
            steps[t] = {"dy": dy, "dh": dh, "dhraw": dhraw, "dhnext": dhnext}
    grads = {"u": du, "w": dw, "v": dv, "bh": dbh, "by": dby}
    return Backward(grads, dhnext, steps)


def bptt(params: dict, inputs, targets, h0, *, keep: bool = False) -> tuple[Forward, Backward]:
    """:func:`forward` then :func:`backward`: the loss, the gradients, ∂E/∂h0 (and every step's terms)."""
    fwd = forward(params, inputs, targets, h0)
    return fwd, backward(params, fwd, targets, keep=keep)


def last_loss_back(params: dict, fwd: Forward, targets: np.ndarray) -> np.ndarray:
    """‖∂E_T/∂h_k‖ of each sequence, k = 0 … T (k = 0: h0): the last step's loss alone, followed back.

    The same loop without the other steps' losses: dh starts as vᵀ·(ŷ_T − y_T) and each step back
    is dhraw = (1 − h_k²) ⊙ dh, then dh = wᵀ·dhraw. Returns (B, T+1), per sequence (not divided by B).
    """
    w, v = params["w"], params["v"]
    targets = np.asarray(targets)
    B, T = targets.shape
    dy = np.copy(fwd.ps[T - 1])
    dy[targets[:, T - 1], np.arange(B)] -= 1  # eq-3 at the last step only
    dh = np.dot(v.T, dy)  # eq-6
    out = np.zeros((B, T + 1))
    for k in range(T, 0, -1):  # dh is ∂E_T/∂h_k; hs[k − 1] is h_k
        out[:, k] = np.linalg.norm(dh, axis=0)
        dhraw = (1 - fwd.hs[k - 1] * fwd.hs[k - 1]) * dh  # eq-7
        dh = np.dot(w.T, dhraw)  # eq-13
    out[:, 0] = np.linalg.norm(dh, axis=0)
    return out
