"""The derivation of any cell and layer: every equation checked by complex steps (and caught when wrong), the
terms on constructed weights whose values are known, and the Inspection's forms of the initial states."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rnntui.cells import CELLS, GRU, LSTM, Stack
from rnntui.derivation import CHECKS, TERMS, Inspection, cell_terms, forward_equations, verify_cell
from rnntui.model import CharRNN

CASES = [(name, layers, masked) for name in CELLS for layers in (1, 2) for masked in (False, True)
         if not (masked and layers == 1)]


def inspection(name: str, layers: int, masked: bool = False, *, V=6, H=5, B=3, T=7, seed=0, params=None):
    """An Inspection of a float64 model of ``name`` off its initial point (every bias non-zero, gates away from ½),
    or with the cells' ``params`` given, on a random batch with random initial states (and dropout masks)."""
    rng = np.random.default_rng(seed)
    model = CharRNN(V, H, seed=seed, dtype=np.float64, cell=name, layers=layers, dropout=0.4 if masked else 0.0)
    for k, layer in enumerate(model.layer_params()):
        for key, a in layer.items():
            a[...] = params[k][key] if params is not None else a + rng.standard_normal(a.shape) * 0.3
    model.params["v"][...] = rng.standard_normal((V, H)) * 0.5
    model.params["by"][...] = rng.standard_normal((V, 1)) * 0.1
    x, y = rng.integers(0, V, (B, T)), rng.integers(0, V, (B, T))
    cell = model.stack.cell
    state0 = [tuple(np.tanh(rng.standard_normal((B, H))) for _ in cell.state_names) for _ in range(layers)]
    masks = model.stack.draw_masks(rng, T * B, np.float64) if masked and layers > 1 else None
    return Inspection.from_arrays(5, model, x, y, state0, masks)


@pytest.mark.parametrize(("name", "layers", "masked"), CASES)
def test_every_equation_of_every_layer_passes(name, layers, masked):
    ins = inspection(name, layers, masked, seed=layers)
    cell = ins.stack.cell
    for layer in range(layers):
        for t in (0, 3, 6):
            rows = verify_cell(ins, t, b=1, layer=layer)
            bad = [(r.equation, r.name, r.max_error) for r in rows if not r.ok]
            assert not bad, f"layer {layer}, t={t}: {bad}"
    # every equation has its row: the forward lines by the loss (the first row), each backward one by its own
    fwd = forward_equations(cell)
    assert rows[0].name == "state" and rows[0].equation.startswith(fwd[0])
    assert rows[0].checked == ins.inputs.shape[1] * len(cell.state_names) * ins.stack.hidden_size
    assert {r.equation for r in rows[1:]} == set(CHECKS[name])
    assert set(fwd) | set(CHECKS[name]) == {eq.id for eq in cell.equations}
    assert set(fwd) == set(TERMS[name])
    assert all(r.checked > 0 for r in rows)


def _wrong(monkeypatch, cls, change):
    original = cls.reference_bptt

    def wrong(self, params, fwd, dhs):
        back = original(self, params, fwd, dhs)
        change(back)
        return back

    monkeypatch.setattr(cls, "reference_bptt", wrong)


@pytest.mark.parametrize(("cls", "equation", "change"), [
    (LSTM, "lstm-18", lambda back: back.grads["w_hh"].__imul__(1.01)),
    (LSTM, "lstm-11", lambda back: [s["df"].__imul__(1.01) for s in back.steps]),
    (LSTM, "lstm-21", lambda back: [s["dc_next"].__imul__(1.01) for s in back.steps]),
    (GRU, "gru-10", lambda back: [s["dhn"].__imul__(1.01) for s in back.steps]),
    (GRU, "gru-18", lambda back: [s["dh_next"].__imul__(1.01) for s in back.steps]),
])
def test_a_wrong_line_fails_its_own_row(monkeypatch, cls, equation, change):
    ins = inspection(cls.name, 2, True)
    _wrong(monkeypatch, cls, change)
    rows = verify_cell(ins, 3, b=0, layer=0)
    failing = [r.equation for r in rows if not r.ok]
    assert failing == [equation]


def test_the_forward_row_fails_when_the_reference_lines_are_not_the_training_pass(monkeypatch):
    ins = inspection("gru", 1)
    original = GRU.reference_step

    def wrong(self, params, x, state):
        (h,), terms = original(self, params, x, state)
        return (h * 1.001,), terms

    monkeypatch.setattr(GRU, "reference_step", wrong)
    rows = verify_cell(ins, 2)
    assert rows[0].name == "state" and not rows[0].ok
    assert [r.equation for r in rows if not r.ok][0] == "gru-1…5"


def test_terms_on_constant_gates_and_the_cell_states_reach():
    """W = 0 and b_f = 3: every forget gate is σ(3), and the last loss's gradient along c shrinks by exactly
    σ(3) per step back (lstm-21) while through h it is 0 (W_hh = 0)."""
    V, H, T = 5, 4, 6
    stack = Stack(LSTM(), V, H, 1)
    params = stack.zeros(np.float64)
    params[0]["b_ih"][H:2 * H] = 3.0  # b_if
    params[0]["b_ih"][:H] = -1.0  # b_ii
    ins = inspection("lstm", 1, V=V, H=H, T=T, params=params)
    st = cell_terms(ins, 2, b=1)
    f = 1 / (1 + math.exp(-3))
    assert np.allclose(st.fwd["f"], f, rtol=0, atol=1e-15)
    assert np.allclose(st.fwd["i"], 1 / (1 + math.e), rtol=0, atol=1e-15)
    c = st.reach["c"]
    assert c[T] > 0
    for k in range(T + 1):
        assert c[k] == pytest.approx(c[T] * f ** (T - k), rel=1e-12)
    assert np.all(st.reach["h"][:T] == 0) and st.reach["h"][T] > 0
    assert st.layer == 0 and st.layers == 1 and (st.t, st.b) == (2, 1)


def test_the_layer_above_sends_its_input_gradient_through_the_mask():
    ins = inspection("rnn", 2, True)
    below, above = cell_terms(ins, 4, b=2, layer=0), cell_terms(ins, 4, b=2, layer=1)
    mask = ins.masks[0][4 * 3 + 2]
    assert np.allclose(below.dh_above, above.dx * mask, rtol=0, atol=1e-15)
    # the top layer's ∂E/∂h from above is the output layer's vᵀ(ŷ − y)
    assert np.allclose(above.dh_above, ins.model.params["v"].T @ above.dq, rtol=0, atol=1e-15)


def test_inspection_keeps_both_forms_of_the_initial_state_and_every_sigma():
    from rnntui.gradcheck import random_problem

    m, x, y, h0 = random_problem()
    ins = Inspection.from_arrays(0, m, x, y, h0)
    assert ins.lecture and ins.layers == 1
    assert np.array_equal(ins.h0, h0) and np.array_equal(ins.states0[0][0], h0.T)
    assert ins.sigmas == {"w": pytest.approx(np.linalg.norm(m.params["w"], 2))}
    assert ins.sigma_max == ins.sigmas["w"]
    lstm = inspection("lstm", 2)
    assert not lstm.lecture and lstm.h0 is None and len(lstm.states0) == 2 and len(lstm.states0[0]) == 2
    assert list(lstm.sigmas) == [f"w_hh_l{k}[{g}]" for k in range(2) for g in "ifgo"]
    H = lstm.stack.hidden_size
    w = lstm.layer_params()[1]["w_hh"]
    assert lstm.sigmas["w_hh_l1[f]"] == pytest.approx(np.linalg.norm(w[H:2 * H], 2))
    assert lstm.sigma_max == max(lstm.sigmas.values())


def test_the_forward_row_compares_each_step_on_its_own():
    """Weights so large that the recurrence is chaotic (σmax ≈ 6.7): two correct computations of the whole run part
    by 1e-6 after 50 steps, as their roundings grow; step by step from the same state they agree to rounding."""
    from rnntui.cells import Cache
    from rnntui.derivation import _Sequence

    ins = inspection("rnn", 2, True, V=25, H=128, B=2, T=50)
    assert ins.sigma_max > 6
    seq = _Sequence(ins, 0)
    hs, _ = seq.cell.forward(seq.params[0], seq.inputs[0], tuple(a.T for a in seq.state0[0]), Cache())
    whole = np.concatenate([seq.base[0][0][t + 1][0][:, 0] for t in range(50)])
    assert np.max(np.abs(hs.ravel() - whole)) > 1e-9  # the whole runs drift apart
    row = verify_cell(ins, 49, b=0, layer=0)[0]
    assert row.name == "state" and row.max_error < 1e-11
