"""Numerical check of the BPTT gradients, in float64, equation by equation.

For each parameter (and for the initial state h0) the analytic gradient from
``CharRNN.loss_and_grads`` is compared with the complex-step derivative
``Im E(θ + ih) / h`` at ``h = 1e-20``, one entry of θ at a time. E is made only of
analytic functions (tanh, exp, log, sums and products), so ``E(θ + ih) = E(θ) + ih·∂E/∂θ + O(h²)``:
the derivative is read off the imaginary part with no difference of two nearly equal losses,
hence no cancellation, and a truncation error of order h² ≈ 1e-40: what is left is the rounding
of the forward pass itself, whatever the size of the weights. Centred differences, whose error
is ε²·E‴/6 plus rounding 1e-16·E/ε, reach the threshold on their own on trained weights.

E(θ + ih) is computed by :func:`reference_loss`, the lecture's equations step by step on
complex arrays; :func:`check_forward` (the command's first row, E) checks that it is the loss
``CharRNN`` computes.

The error of an entry is ``|a − n| / max(|a| + |n|, floor)``: relative for ordinary entries,
absolute (scaled by 1/floor) for entries so small that a relative figure would mean little.
Each row reports its worst entry: its index and its (analytic, numeric) pair.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import lecture
from .model import PARAM_NAMES, CharRNN, softmax_jacobian, softmax_rows

STEP = 1e-20  # the complex step h
FLOOR = 1e-3
THRESHOLD = 1e-6
#: How the numeric side is computed, for headers.
METHOD = f"complex-step derivative Im E(θ+ih)/h, h={STEP:g}"

#: What each checked tensor's gradient is, in the lecture's numbering.
EQUATIONS = {
    "E": ("loss", "E = −Σₜ log ŷₜ[targetₜ] / B: CharRNN.loss vs this check's own forward pass"),
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
    """The row of one tensor: its largest error, with the index and the (analytic, numeric) pair of that entry."""
    a, n = np.asarray(a, np.float64), np.asarray(n, np.float64)
    eq, formula = EQUATIONS[name]
    if not a.size:
        return TensorCheck(name, eq, formula, 0, 0.0, (), 0.0, 0.0)
    err = _error(a, n)
    k = int(np.argmax(np.where(np.isnan(err), np.inf, err)))  # a NaN is the worst entry there is
    return TensorCheck(name, eq, formula, int(err.size), float(err[k]), tuple(idx[k]), float(a[k]), float(n[k]))


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


# -- the forward pass, for real or complex weights -------------------------------------------------


def log_softmax(q: np.ndarray, axis: int = 0) -> np.ndarray:
    """log softmax(q) along ``axis`` by log-sum-exp, for real or complex q.

    The shift is the largest *real* part: it keeps exp from overflowing and, being real,
    leaves the imaginary parts (the derivatives a complex step carries) untouched.
    """
    shift = q.real.max(axis=axis, keepdims=True)
    return q - (shift + np.log(np.exp(q - shift).sum(axis=axis, keepdims=True)))


def hidden_states(u, w, bh, h0, inputs) -> list[np.ndarray]:
    """h₀ … h_T, each (H, B), by the lecture's recurrence (:func:`rnntui.lecture.states`)."""
    _, hs = lecture.states({"u": u, "w": w, "bh": bh, "v": np.empty((u.shape[1], 0))}, inputs, h0)
    return [hs[t] for t in range(-1, len(hs) - 1)]


def output_loss(v, by, hs, targets):
    """E from h₁ … h_T by the lecture's output layer (:func:`rnntui.lecture.outputs`)."""
    return lecture.outputs({"v": v, "by": by}, dict(enumerate(hs)), targets)[1]


def reference_loss(u, w, v, bh, by, h0, inputs, targets):
    """E = −Σₜ log ŷₜ[targetₜ], summed over the T steps and averaged over the B sequences.

    The lecture's forward loop (:func:`rnntui.lecture.forward`), independent of ``CharRNN``;
    every operation is analytic, so it accepts complex weights and h0 (and returns a complex E).
    """
    return lecture.forward({"u": u, "w": w, "v": v, "bh": bh, "by": by}, inputs, targets, h0).loss


def complex_step(f, p: np.ndarray, idx, step: float = STEP) -> np.ndarray:
    """∂f/∂p[i] = Im f(p + ih·eᵢ) / h for each index i in ``idx`` (rows of the result, one per i).

    ``p`` is a complex array that ``f`` reads; ``f`` may return a scalar or an array.
    """
    out = []
    for i in idx:
        old = p[i]
        p[i] = old + 1j * step
        out.append(np.imag(f()) / step)
        p[i] = old
    return np.array(out, np.float64)


# -- the checks ------------------------------------------------------------------------------------


def check_forward(model: CharRNN, inputs, targets, h0=None) -> TensorCheck:
    """The row E: ``CharRNN.loss`` against :func:`reference_loss` (float64), the function whose
    complex-step derivatives :func:`check_model` compares the gradients with."""
    m = model.astype(np.float64)
    inputs = np.asarray(inputs)
    h0 = np.zeros((m.H, inputs.shape[0])) if h0 is None else np.asarray(h0, np.float64)
    loss, _ = m.loss(inputs, targets, h0)
    return _result("E", [loss], [reference_loss(**m.params, h0=h0, inputs=inputs, targets=targets)], [()])


def check_model(model: CharRNN, inputs, targets, h0=None, *, entries: int | None = None, seed: int = 0,
                step: float = STEP, largest: bool = False, t: int = -1, b: int = 0) -> list[TensorCheck]:
    """Check every parameter of ``model`` (a float64 copy is used) and h0 on one batch.

    The numeric side is the complex-step derivative of :func:`reference_loss` (that it is the
    model's loss is :func:`check_forward`'s row). ``entries`` limits how many entries of each
    tensor are checked (all when None): chosen at random, or the largest in size with
    ``largest``. eq-3 and eq-1 are checked at step ``t`` of sequence ``b``.
    """
    m = model.astype(np.float64)
    inputs, targets = np.asarray(inputs), np.asarray(targets)
    B = inputs.shape[0]
    h0 = np.zeros((m.H, B)) if h0 is None else np.asarray(h0, np.float64).copy()
    rng = np.random.default_rng(seed)
    _, grads, _, diag = m.loss_and_grads(inputs, targets, h0)
    analytic = dict(grads, h0=diag.dh0)
    tensors = {name: np.array(m.params[name], np.complex128) for name in PARAM_NAMES}
    tensors["h0"] = h0.astype(np.complex128)

    def E():
        return reference_loss(**tensors, inputs=inputs, targets=targets)

    hs = hidden_states(*(tensors[k].real for k in ("u", "w", "bh", "h0")), inputs)[1:]

    def E_of_output_layer():  # v and b_y do not change h₁ … h_T: only the output layer is recomputed
        return output_loss(tensors["v"], tensors["by"], hs, targets)

    results = []
    for name in ("v", "u", "w", "bh", "by", "h0"):
        idx = _entries(tensors[name].shape, entries, rng, analytic[name] if largest else None)
        numeric = complex_step(E_of_output_layer if name in ("v", "by") else E, tensors[name], idx, step)
        results.append(_result(name, [analytic[name][i] for i in idx], numeric, idx))
    results.extend(check_output_layer(m, inputs, targets, h0, t=t, b=b, step=step))
    return results


def check_output_layer(model: CharRNN, inputs, targets, h0, *, t: int = -1, b: int = 0,
                       step: float = STEP, classes: int = 12) -> list[TensorCheck]:
    """eq-3 and eq-1 at one step: ∂E/∂q = ŷ − y, and the softmax Jacobian, by complex steps in q.

    Checked over at most ``classes`` output classes (the most likely ones and the target),
    so the cost stays small for a large vocabulary.
    """
    p = {k: np.asarray(model.params[k], np.float64) for k in PARAM_NAMES}
    inputs = np.asarray(inputs)
    t = t % inputs.shape[1]
    h_t = hidden_states(p["u"], p["w"], p["bh"], np.asarray(h0, np.float64), inputs)[t + 1][:, b]
    q = p["v"] @ h_t + p["by"][:, 0]
    y = int(np.asarray(targets)[b, t])
    s = softmax_rows(q)
    keep = [int(j) for j in np.argsort(-s, kind="stable")[:classes]]
    if y not in keep:
        keep = [y] + keep[: classes - 1]
    keep.sort()

    analytic_q = s.copy()
    analytic_q[y] -= 1
    jac = softmax_jacobian(s)[np.ix_(keep, keep)]
    qc = q.astype(np.complex128)
    idx_q = [(j,) for j in keep]
    numeric_q = complex_step(lambda: -log_softmax(qc)[y], qc, idx_q, step)
    jac_num = complex_step(lambda: np.exp(log_softmax(qc)[keep]), qc, idx_q, step).T  # row j was ∂s/∂a_j
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
    """One row per check: its largest error and, for that worst entry, its index and (analytic, numeric) pair."""
    lines = [f"{'eq':6} {'tensor':7} {'entries':>7} {'max rel err':>11} {'worst at':>9} {'analytic':>16} "
             f"{'numeric':>16}  {'':4} formula"]
    for r in results:
        at = ",".join(map(str, r.worst_index)) or "-"
        lines.append(f"{r.equation:6} {r.name:7} {r.checked:7d} {r.max_error:11.2e} {at:>9} {r.analytic:16.10g} "
                     f"{r.numeric:16.10g}  {'ok' if r.ok else 'FAIL':4} {r.formula}")
    return "\n".join(lines)
