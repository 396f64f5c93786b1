"""Numerical check of the BPTT gradients, in float64, equation by equation, for every cell and layer.

For each parameter tensor and for the initial state of every layer (h0, and c0 for the lstm) the
analytic gradient from ``CharRNN.loss_and_grads`` is compared with the complex-step derivative
``Im E(θ + ih) / h`` at ``h = 1e-20``, one entry of θ at a time. E is made only of
analytic functions (tanh, σ, exp, log, sums and products), so ``E(θ + ih) = E(θ) + ih·∂E/∂θ + O(h²)``:
the derivative is read off the imaginary part with no difference of two nearly equal losses,
hence no cancellation, and a truncation error of order h² ≈ 1e-40: what is left is the rounding
of the forward pass itself, whatever the size of the weights. Centred differences, whose error
is ε²·E‴/6 plus rounding 1e-16·E/ε, reach the threshold on their own on trained weights.

E(θ + ih) is computed by the readable references on complex arrays: for the lecture's model (the rnn,
one layer) :func:`reference_loss`, the lecture's equations step by step; for any other, the cells'
reference loops (:meth:`rnntui.cells.Stack.reference_forward`) under the lecture's output layer, with
the pass's dropout masks held fixed (a fixed mask makes dropout a constant factor, so the check is
exact). :func:`check_forward` (the command's first row, E) checks that it is the loss ``CharRNN``
computes (its fast path).

The error of an entry is ``|a − n| / max(|a| + |n|, floor)``: relative for ordinary entries,
absolute (scaled by 1/floor) for entries so small that a relative figure would mean little.
Each row reports its worst entry: its index and its (analytic, numeric) pair.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from . import lecture
from .model import PARAM_NAMES, CharRNN, softmax_jacobian, softmax_rows, tensor_name

_SUFFIX = re.compile(r"_l\d+$")  # a layer's suffix (rnntui.model.tensor_name)
STEP = 1e-20  # the complex step h
FLOOR = 1e-3
THRESHOLD = 1e-6
#: How the numeric side is computed, for headers.
METHOD = f"complex-step derivative Im E(θ+ih)/h, h={STEP:g}"

#: What each checked tensor's gradient is, in the lecture's numbering (the lecture's model, and the output layer).
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
#: The equation of the cells (their ``equations``) that each of a layer's gradients is, by cell and tensor.
CELL_EQUATIONS = {
    "rnn": {"u": "eq-9", "w": "eq-11", "bh": "b_h", "h0": "eq-13"},
    "lstm": {"w_ih": "lstm-17", "w_hh": "lstm-18", "b_ih": "lstm-19", "b_hh": "lstm-19", "h0": "lstm-20",
             "c0": "lstm-21"},
    "gru": {"w_ih": "gru-14", "w_hh": "gru-15", "b_ih": "gru-16", "b_hh": "gru-17", "h0": "gru-18"},
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


def _result(name, a, n, idx, equation: tuple[str, str] | None = None) -> TensorCheck:
    """The row of one tensor: its largest error, with the index and the (analytic, numeric) pair of that entry.
    ``equation``: (id, formula), default the lecture's for ``name`` (:data:`EQUATIONS`)."""
    a, n = np.asarray(a, np.float64), np.asarray(n, np.float64)
    eq, formula = equation or EQUATIONS[name]
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


def equation_of(model: CharRNN, name: str, layer: int | None = None) -> tuple[str, str]:
    """(equation id, formula) of the gradient of tensor or initial state ``name`` (without its layer suffix) of
    ``model``: the lecture's numbering for the vanilla cell and the output layer, the cell's own otherwise."""
    if model.cell == "rnn" or name in ("v", "by"):
        return EQUATIONS[name]
    eq = CELL_EQUATIONS[model.cell][name]
    maths = next(e.maths for e in model.stack.cell.equations if e.id == eq)
    return eq, maths


def _columns(model: CharRNN, h0, B: int) -> list[tuple]:
    """The initial state per layer as (H, B) columns (float64 copies), from either form the model takes."""
    if h0 is None:
        return [tuple(np.zeros((model.H, B)) for _ in model.state_names) for _ in range(model.layers)]
    if isinstance(h0, np.ndarray):
        return [(np.array(h0, np.float64),)]
    return [tuple(np.array(a, np.float64).T for a in layer) for layer in h0]


def _rows(columns: list[tuple]) -> list[tuple]:
    return [tuple(a.T.copy() for a in layer) for layer in columns]


def _layer_tensors(model: CharRNN, tensors: dict) -> list[dict]:
    """Each layer's tensors as the cells take them: views of ``tensors`` (the model's names and shapes)."""
    return [{cname: tensors[name].reshape(shape) for cname, name, shape in layer}
            for layer in model.layout.layer_tensors]


def top_states(model: CharRNN, tensors: dict, state0: list[tuple], inputs, masks=None) -> list:
    """h_1 … h_T of the top layer ((H, B) each) by the readable reference: the lecture's loop for the lecture's
    model, the cells' reference loops for any other (with the dropout ``masks`` fixed)."""
    if model.lecture:
        return hidden_states(tensors["u"], tensors["w"], tensors["bh"], state0[0][0], inputs)[1:]
    fwds = model.stack.reference_forward(_layer_tensors(model, tensors), inputs, state0, masks)
    return [s[0] for s in fwds[-1].states[1:]]


def model_loss(model: CharRNN, tensors: dict, state0: list[tuple], inputs, targets, masks=None):
    """E of ``model``'s architecture on the weights ``tensors`` (its names and shapes, real or complex) from the
    initial states ``state0`` ((H, B) columns per layer): :func:`reference_loss` for the lecture's model, the
    cells' reference loops under the lecture's output layer for any other."""
    if model.lecture:
        return reference_loss(**{k: tensors[k] for k in PARAM_NAMES}, h0=state0[0][0], inputs=inputs,
                              targets=targets)
    return output_loss(tensors["v"], tensors["by"], top_states(model, tensors, state0, inputs, masks), targets)


def check_forward(model: CharRNN, inputs, targets, h0=None, masks=None) -> TensorCheck:
    """The row E: ``CharRNN.loss`` (the fast path, with the dropout ``masks``) against :func:`model_loss`
    (float64), the function whose complex-step derivatives :func:`check_model` compares the gradients with."""
    m = model.astype(np.float64)
    inputs = np.asarray(inputs)
    state0 = _columns(m, h0, inputs.shape[0])
    masks = None if masks is None else [np.asarray(a, np.float64) for a in masks]
    given = state0[0][0] if isinstance(h0, np.ndarray) else _rows(state0)
    loss, _ = m.loss(inputs, targets, given, masks)
    return _result("E", [loss], [model_loss(m, dict(m.params), state0, inputs, targets, masks)], [()])


def check_model(model: CharRNN, inputs, targets, h0=None, masks=None, *, entries: int | None = None, seed: int = 0,
                step: float = STEP, largest: bool = False, t: int = -1, b: int = 0) -> list[TensorCheck]:
    """Check every parameter tensor of ``model`` (a float64 copy is used) and every layer's initial state on one
    batch, with the dropout ``masks`` of that batch's pass (None: no dropout).

    The numeric side is the complex-step derivative of :func:`model_loss` (that it is the model's loss is
    :func:`check_forward`'s row). ``entries`` limits how many entries of each tensor are checked (all when
    None): chosen at random, or the largest in size with ``largest``. eq-3 and eq-1 are checked at step ``t`` of
    sequence ``b``. The initial states' rows are named ``h0`` (and ``c0``), with a layer suffix for more layers.
    """
    m = model.astype(np.float64)
    inputs, targets = np.asarray(inputs), np.asarray(targets)
    state0 = _columns(m, h0, inputs.shape[0])
    masks = None if masks is None else [np.asarray(a, np.float64) for a in masks]
    rng = np.random.default_rng(seed)
    given = state0[0][0] if isinstance(h0, np.ndarray) else _rows(state0)
    _, grads, _, diag = m.loss_and_grads(inputs, targets, given, masks)
    tensors = {name: np.array(a, np.complex128) for name, a in m.params.items()}
    states = [tuple(a.astype(np.complex128) for a in layer) for layer in state0]

    def E():
        return model_loss(m, tensors, states, inputs, targets, masks)

    hs = top_states(m, {k: a.real for k, a in tensors.items()}, state0, inputs, masks)

    def E_of_output_layer():  # v and b_y do not change h₁ … h_T: only the output layer is recomputed
        return output_loss(tensors["v"], tensors["by"], hs, targets)

    checks = [(name, tensors[name], np.asarray(grads[name]), equation_of(m, _SUFFIX.sub("", name)))
              for name in m.params]
    for k, layer in enumerate(states):
        for j, sname in enumerate(m.state_names):
            checks.append((tensor_name(f"{sname}0", k, m.layers), layer[j], diag.dstate0[k][j].T,
                           equation_of(m, f"{sname}0")))
    checks.sort(key=lambda c: c[0] != "v")  # v first, as the lecture's backward computes it
    results = []
    for name, tensor, analytic, eq in checks:
        idx = _entries(tensor.shape, entries, rng, analytic if largest else None)
        numeric = complex_step(E_of_output_layer if name in ("v", "by") else E, tensor, idx, step)
        results.append(_result(name, [analytic[i] for i in idx], numeric, idx, eq))
    results.extend(check_output_layer(m, inputs, targets, given, masks, t=t, b=b, step=step))
    return results


def check_output_layer(model: CharRNN, inputs, targets, h0, masks=None, *, t: int = -1, b: int = 0,
                       step: float = STEP, classes: int = 12) -> list[TensorCheck]:
    """eq-3 and eq-1 at one step: ∂E/∂q = ŷ − y, and the softmax Jacobian, by complex steps in q.

    Checked over at most ``classes`` output classes (the most likely ones and the target),
    so the cost stays small for a large vocabulary.
    """
    p = {k: np.asarray(a, np.float64) for k, a in model.params.items()}
    inputs = np.asarray(inputs)
    t = t % inputs.shape[1]
    state0 = _columns(model, h0, inputs.shape[0])
    masks = None if masks is None else [np.asarray(a, np.float64) for a in masks]
    h_t = top_states(model, p, state0, inputs, masks)[t][:, b]
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


def random_state(model: CharRNN, batch_size: int, rng: np.random.Generator):
    """A non-zero initial state: the lecture's (H, B) columns for the lecture's model, else per layer a tuple of
    (B, H) rows (tanh of normal draws: a state a pass could have left)."""
    if model.lecture:
        return np.tanh(rng.standard_normal((model.H, batch_size)))
    return [tuple(np.tanh(rng.standard_normal((batch_size, model.H))) for _ in model.state_names)
            for _ in range(model.layers)]


def random_problem(vocab_size: int = 7, hidden_size: int = 6, batch_size: int = 3, seq_length: int = 5,
                   seed: int = 0, *, cell: str = "rnn", layers: int = 1, dropout: float = 0.0):
    """A small random model and batch (float64) with a non-zero initial state (:func:`random_state`), for checks and
    tests: ``(model, inputs, targets, h0)``. Draw the dropout masks with :func:`random_masks`."""
    rng = np.random.default_rng(seed)
    m = CharRNN(vocab_size, hidden_size, seed=seed, dtype=np.float64, cell=cell, layers=layers, dropout=dropout)
    for k in PARAM_NAMES if m.lecture else m.params:  # non-zero biases, so their gradients are exercised too
        p = m.params[k]
        p += rng.standard_normal(p.shape) * 0.1
    x = rng.integers(0, vocab_size, (batch_size, seq_length))
    y = rng.integers(0, vocab_size, (batch_size, seq_length))
    if m.lecture:
        return m, x, y, np.tanh(rng.standard_normal((hidden_size, batch_size)))
    return m, x, y, random_state(m, batch_size, rng)


def random_masks(model: CharRNN, batch_size: int, seq_length: int, seed: int = 0) -> list[np.ndarray] | None:
    """Dropout masks for one batch, as a training pass draws them (None without dropout): fixed, they make dropout a
    constant factor of the loss, which the check then differentiates exactly."""
    return model.draw_masks(np.random.default_rng(seed + 1), batch_size, seq_length)


def format_table(results: list[TensorCheck]) -> str:
    """One row per check: its largest error and, for that worst entry, its index and (analytic, numeric) pair."""
    e = max([6] + [len(r.equation) for r in results])
    n = max([7] + [len(r.name) for r in results])
    lines = [f"{'eq':{e}} {'tensor':{n}} {'entries':>7} {'max rel err':>11} {'worst at':>9} {'analytic':>16} "
             f"{'numeric':>16}  {'':4} formula"]
    for r in results:
        at = ",".join(map(str, r.worst_index)) or "-"
        lines.append(f"{r.equation:{e}} {r.name:{n}} {r.checked:7d} {r.max_error:11.2e} {at:>9} {r.analytic:16.10g} "
                     f"{r.numeric:16.10g}  {'ok' if r.ok else 'FAIL':4} {r.formula}")
    return "\n".join(lines)
