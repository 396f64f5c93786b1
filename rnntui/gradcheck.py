"""Finite-difference check of the BPTT gradients, in float64, equation by equation.

For each parameter (and for the initial state h0) the analytic gradient from
``CharRNN.loss_and_grads`` is compared with the centred difference
``(E(θ+ε) − E(θ−ε)) / 2ε``. The error of an entry is ``|a − n| / max(|a| + |n|, floor)``:
relative for ordinary entries, absolute (scaled by 1/floor) for entries so small that
rounding in E would dominate a relative figure.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .model import CharRNN, softmax_jacobian, softmax_rows

EPS = 1e-5
FLOOR = 1e-3
THRESHOLD = 1e-6

#: What each checked tensor's gradient is, in the lecture's numbering.
EQUATIONS = {
    "v": ("eq-5", "∂E/∂v = Σₜ (ŷₜ − yₜ)·hₜᵀ"),
    "u": ("eq-9", "∂E/∂u = Σₜ [(1 − hₜ²) ⊙ ∂E/∂hₜ]·xₜᵀ"),
    "w": ("eq-11", "∂E/∂w = Σₜ [(1 − hₜ²) ⊙ ∂E/∂hₜ]·hₜ₋₁ᵀ"),
    "bh": ("b_h", "∂E/∂b_h = Σₜ (1 − hₜ²) ⊙ ∂E/∂hₜ"),
    "by": ("b_y", "∂E/∂b_y = Σₜ (ŷₜ − yₜ)"),
    "h0": ("eq-13", "∂E/∂hₜ₋₁ = wᵀ[(1 − hₜ²) ⊙ ∂E/∂hₜ], down to h₀"),
    "q": ("eq-3", "∂E/∂qₜ = ŷₜ − yₜ"),
    "softmax": ("eq-1", "∂sᵢ/∂aⱼ = sᵢ(δᵢⱼ − sⱼ)"),
}


@dataclass(frozen=True)
class TensorCheck:
    name: str
    equation: str
    formula: str
    checked: int  # entries compared
    max_error: float
    worst_index: tuple
    analytic: float  # at the worst entry
    numeric: float

    @property
    def ok(self) -> bool:
        return self.max_error < THRESHOLD


def _error(a: np.ndarray, n: np.ndarray) -> np.ndarray:
    return np.abs(a - n) / np.maximum(np.abs(a) + np.abs(n), FLOOR)


def _result(name, a, n, idx) -> TensorCheck:
    err = _error(np.asarray(a), np.asarray(n))
    k = int(np.argmax(err)) if err.size else 0
    eq, formula = EQUATIONS[name]
    return TensorCheck(name, eq, formula, int(err.size), float(err.max()) if err.size else 0.0,
                       tuple(idx[k]) if len(idx) else (), float(a[k]) if err.size else 0.0,
                       float(n[k]) if err.size else 0.0)


def _entries(shape, limit, rng, analytic=None) -> list[tuple]:
    """All entries, or ``limit`` of them: at random, or the largest in size when ``analytic`` is given."""
    size = int(np.prod(shape))
    if limit is None or limit >= size:
        return list(np.ndindex(*shape))
    if analytic is not None:
        pick = np.argsort(-np.abs(np.asarray(analytic).ravel()), kind="stable")[:limit]
    else:
        pick = rng.choice(size, size=limit, replace=False)
    return [tuple(int(i) for i in np.unravel_index(k, shape)) for k in sorted(pick)]


def check_model(model: CharRNN, inputs, targets, h0=None, *, entries: int | None = None, seed: int = 0,
                eps: float = EPS, largest: bool = False, t: int = -1, b: int = 0) -> list[TensorCheck]:
    """Check every parameter of ``model`` (a float64 copy is used) and h0 on one batch.

    ``entries`` limits how many entries of each tensor are checked (all when None): chosen at
    random, or the largest in size with ``largest``. eq-3 and eq-1 are checked at step ``t``
    of sequence ``b``.
    """
    m = model.astype(np.float64)
    inputs = np.asarray(inputs)
    B = inputs.shape[0]
    h0 = np.zeros((m.H, B)) if h0 is None else np.asarray(h0, np.float64).copy()
    rng = np.random.default_rng(seed)
    _, grads, _, diag = m.loss_and_grads(inputs, targets, h0)
    analytic = dict(grads, h0=diag.dh0)
    tensors = dict(m.params, h0=h0)
    results = []
    for name in ("v", "u", "w", "bh", "by", "h0"):
        p = tensors[name]
        idx = _entries(p.shape, entries, rng, analytic[name] if largest else None)
        a, n = [], []
        for i in idx:
            old = p[i]
            p[i] = old + eps
            lp, _ = m.loss(inputs, targets, h0)
            p[i] = old - eps
            lm, _ = m.loss(inputs, targets, h0)
            p[i] = old
            n.append((lp - lm) / (2 * eps))
            a.append(analytic[name][i])
        results.append(_result(name, np.array(a), np.array(n), idx))
    results.extend(check_output_layer(m, inputs, targets, h0, t=t, b=b, eps=eps))
    return results


def check_output_layer(model: CharRNN, inputs, targets, h0, *, t: int = -1, b: int = 0,
                       eps: float = EPS, classes: int = 12) -> list[TensorCheck]:
    """eq-3 and eq-1 at one step: ∂E/∂q = ŷ − y, and the softmax Jacobian, numerically.

    Checked over at most ``classes`` output classes (the most likely ones and the target),
    so the cost stays small for a large vocabulary.
    """
    m = model if model.dtype == np.float64 else model.astype(np.float64)
    inputs = np.asarray(inputs)
    B, T = inputs.shape
    hbuf, _ = m._forward(inputs, np.asarray(h0, np.float64), B, T)
    t = t % T
    h_t = hbuf[(t + 1) * B + b]
    q = m.params["v"] @ h_t + m.params["by"][:, 0]
    y = int(np.asarray(targets)[b, t])
    s = softmax_rows(q)
    keep = [int(j) for j in np.argsort(-s, kind="stable")[:classes]]
    if y not in keep:
        keep = [y] + keep[: classes - 1]
    keep.sort()

    def ce(qq):
        return -np.log(softmax_rows(qq)[y])

    analytic_q = s.copy()
    analytic_q[y] -= 1
    jac = softmax_jacobian(s)[np.ix_(keep, keep)]
    numeric_q = np.empty(len(keep))
    jac_num = np.empty((len(keep), len(keep)))
    for c, j in enumerate(keep):
        d = np.zeros_like(q)
        d[j] = eps
        numeric_q[c] = (ce(q + d) - ce(q - d)) / (2 * eps)
        jac_num[:, c] = ((softmax_rows(q + d) - softmax_rows(q - d)) / (2 * eps))[keep]
    idx_q = [(j,) for j in keep]
    idx_j = [(i, j) for i in keep for j in keep]
    return [_result("q", analytic_q[keep], numeric_q, idx_q), _result("softmax", jac.ravel(), jac_num.ravel(), idx_j)]


def random_problem(vocab_size: int = 7, hidden_size: int = 6, batch_size: int = 3, seq_length: int = 5,
                   seed: int = 0):
    """A small random model and batch (float64) with a non-zero h0, for checks and tests."""
    rng = np.random.default_rng(seed)
    m = CharRNN(vocab_size, hidden_size, seed=seed, dtype=np.float64)
    for p in m.params.values():  # non-zero biases, so their gradients are exercised too
        p += rng.standard_normal(p.shape) * 0.1
    x = rng.integers(0, vocab_size, (batch_size, seq_length))
    y = rng.integers(0, vocab_size, (batch_size, seq_length))
    h0 = np.tanh(rng.standard_normal((hidden_size, batch_size)))
    return m, x, y, h0


def format_table(results: list[TensorCheck]) -> str:
    lines = [f"{'eq':6} {'tensor':7} {'entries':>7} {'max rel err':>12} {'analytic':>12} {'numeric':>12}  "
             f"{'':4} formula"]
    for r in results:
        lines.append(f"{r.equation:6} {r.name:7} {r.checked:7d} {r.max_error:12.2e} {r.analytic:12.5g} "
                     f"{r.numeric:12.5g}  {'ok' if r.ok else 'FAIL':4} {r.formula}")
    return "\n".join(lines)
