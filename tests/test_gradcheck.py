"""rnntui gradcheck: the complex-step check passes correct gradients, trained weights included, and fails wrong ones."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from rnntui import gradcheck
from rnntui.cli import run
from rnntui.model import PARAM_NAMES, CharRNN

CORPUS = Path(__file__).resolve().parents[1] / "sample_data" / "persuasion.txt"
TENSORS = ("v", "u", "w", "bh", "by", "h0")


def _perturb(monkeypatch, change):
    """Make ``CharRNN.loss_and_grads`` hand out ``change(grads)``'s gradient (h0's as grads["h0"])."""
    original = CharRNN.loss_and_grads

    def wrong(self, *args, **kwargs):
        loss, grads, h_last, diag = original(self, *args, **kwargs)
        change({**grads, "h0": diag.dh0})
        return loss, grads, h_last, diag

    monkeypatch.setattr(CharRNN, "loss_and_grads", wrong)


def _rows(out: str) -> dict[str, list[str]]:
    """The table's rows by tensor name, split into columns (the formula cut off)."""
    rows = {}
    for line in out.splitlines():
        cols = line.split()
        if len(cols) > 7 and cols[1] in gradcheck.EQUATIONS:
            rows[cols[1]] = cols[:8]
    return rows


# -- the check on small random models -------------------------------------------------------------


@pytest.mark.parametrize(("V", "H", "B", "T", "seed"), [(7, 6, 3, 5, 0), (5, 4, 1, 7, 1), (4, 3, 2, 1, 2)])
def test_gradcheck_every_entry_of_every_tensor(V, H, B, T, seed):
    model, x, y, h0 = gradcheck.random_problem(V, H, B, T, seed)
    results = gradcheck.check_model(model, x, y, h0)  # entries=None: every element
    by_name = {r.name: r for r in results}
    assert set(by_name) == {"u", "w", "v", "bh", "by", "h0", "q", "softmax"}
    sizes = {**{k: p.size for k, p in model.params.items()}, "h0": h0.size, "q": V, "softmax": V * V}
    for name, r in by_name.items():
        assert r.checked == sizes[name], name
        assert r.max_error < 1e-12, gradcheck.format_table(results)  # the complex step is exact to rounding
        assert r.ok


def test_gradcheck_catches_a_wrong_gradient(monkeypatch):
    """The checker itself must be able to fail: perturb one entry of ∂E/∂w and drop ∂E/∂h0."""
    model, x, y, h0 = gradcheck.random_problem(seed=3)

    def change(g):
        g["w"][1, 2] += 1e-4
        g["h0"][...] = 0.0

    _perturb(monkeypatch, change)
    by_name = {r.name: r for r in gradcheck.check_model(model, x, y, h0)}
    assert not by_name["w"].ok and by_name["w"].worst_index == (1, 2)
    assert not by_name["h0"].ok
    assert by_name["u"].ok and by_name["v"].ok


def test_check_output_layer_passes():
    model, x, y, h0 = gradcheck.random_problem(seed=4)
    for r in gradcheck.check_output_layer(model, x, y, h0, t=2, b=1):
        assert r.ok, r


def test_reference_forward_is_the_models_loss(reference):
    """The function the complex step differentiates is CharRNN's loss and conftest's plain loop."""
    for seed in range(3):
        model, x, y, h0 = gradcheck.random_problem(vocab_size=9, hidden_size=5, batch_size=4, seq_length=6, seed=seed)
        E = gradcheck.reference_loss(**model.params, h0=h0, inputs=x, targets=y)
        assert E == pytest.approx(model.loss(x, y, h0)[0], rel=1e-13)
        assert E == pytest.approx(reference(model.params, x, y, h0)[0], rel=1e-13)


def test_a_wrong_forward_fails_the_loss_row(monkeypatch):
    """Were the check's forward not the model's loss, its derivatives would prove nothing: the E row says so."""
    model, x, y, h0 = gradcheck.random_problem(seed=2)
    real = gradcheck.reference_loss
    assert gradcheck.check_forward(model, x, y, h0).max_error < 1e-13
    monkeypatch.setattr(gradcheck, "reference_loss", lambda *a, **k: real(*a, **k) * (1 + 1e-5))
    assert not gradcheck.check_forward(model, x, y, h0).ok


def test_complex_step_log_softmax_at_huge_logits():
    """log-sum-exp shifted by the largest real part: finite at logits of ±1000, derivative ŷ − y exactly."""
    q = np.array([1000.0, 0.0, -1000.0, 999.0], np.complex128)
    d = gradcheck.complex_step(lambda: -gradcheck.log_softmax(q)[3], q, [(j,) for j in range(4)])
    s = np.exp(np.array([1000.0, 0.0, -1000.0, 999.0]) - 1000.0)
    s /= s.sum()
    np.testing.assert_allclose(d, s - np.eye(4)[3], rtol=1e-15, atol=1e-300)
    assert np.all(q.imag == 0)  # every step was undone


def test_complex_step_where_centred_differences_fail():
    """d/dx tanh(a·x) for a steep tanh (a = 1000, as large weights make it): centred differences at ε = 1e-5
    are off by 4.5e-6 relative, above the threshold; the complex step agrees with a·(1 − tanh²) to rounding."""
    a, x0 = 1000.0, 6e-4
    exact = a * (1 - np.tanh(a * x0) ** 2)
    x = np.array([x0], np.complex128)
    cs = gradcheck.complex_step(lambda: np.tanh(a * x[0]), x, [(0,)])[0]
    eps = 1e-5
    cd = (np.tanh(a * (x0 + eps)) - np.tanh(a * (x0 - eps))) / (2 * eps)
    assert abs(cs - exact) / exact < 1e-15
    assert abs(cd - exact) / exact > gradcheck.THRESHOLD


# -- the command on a trained checkpoint ----------------------------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A checkpoint of 3,000 Adam steps on the bundled novel (small H, B and T, so a few seconds)."""
    path = tmp_path_factory.mktemp("gradcheck") / "trained.npz"
    argv = [str(CORPUS), "--headless", "--max-steps", "3000", "--hidden-size", "16", "--batch-size", "8",
            "--seq-length", "10", "--sample-every", "0", "--val-every", "0", "--log-every", "3000",
            "--checkpoint", str(path)]
    assert run(argv) == 0
    return path


@pytest.mark.parametrize("seq_length", [6, 25])
def test_a_trained_checkpoint_passes_for_every_seed(trained, capsys, seq_length):
    """With centred differences (ε = 1e-5) most of these seeds failed at T = 25 (errors 1e-6 … 4e-6) and
    some at T = 6; the complex step leaves a correct gradient far below the unchanged threshold."""
    capsys.readouterr()
    for seed in range(10):
        rc = run(["gradcheck", "--checkpoint", str(trained), "--seed", str(seed), "--seq-length", str(seq_length)])
        out = capsys.readouterr().out
        assert rc == 0, out
        assert "FAIL" not in out
        largest = float(re.search(r"largest relative error (\S+) <", out).group(1))
        assert largest < 1e-9, out
    assert gradcheck.THRESHOLD == 1e-6


@pytest.mark.parametrize("name", TENSORS)
def test_a_gradient_wrong_by_1e_4_relative_on_one_tensor_fails(trained, capsys, monkeypatch, name):
    def change(g):
        g[name] *= 1 + 1e-4

    _perturb(monkeypatch, change)
    capsys.readouterr()
    for seed in range(2):
        rc = run(["gradcheck", "--checkpoint", str(trained), "--seed", str(seed)])
        captured = capsys.readouterr()
        rows = _rows(captured.out)
        assert rc == 1, captured.out
        assert rows[name][-1] == "FAIL"
        assert all(r[-1] == "ok" for k, r in rows.items() if k != name), captured.out
        assert f"({name}) has relative error" in captured.err


def test_the_table_prints_the_worst_entrys_pair(capsys, monkeypatch):
    """One entry of ∂E/∂w off by 1e-3 relative: its row names that entry and shows its (analytic, numeric) pair."""
    model, x, y, h0 = gradcheck.random_problem(10, 8, 3, 6, 0)  # the command's default problem
    _, grads, _, _ = model.loss_and_grads(x, y, h0)
    true = float(grads["w"][3, 5])

    def change(g):
        g["w"][3, 5] *= 1 + 1e-3

    _perturb(monkeypatch, change)
    assert run(["gradcheck"]) == 1
    captured = capsys.readouterr()
    row = _rows(captured.out)["w"]
    assert row[4] == "3,5"
    assert float(row[5]) == pytest.approx(true * (1 + 1e-3), rel=1e-9)
    assert float(row[6]) == pytest.approx(true, rel=1e-9)
    assert row[5] != row[6]  # the pair shows the disagreement
    assert "at entry (3, 5)" in captured.err


def test_a_nan_gradient_fails(capsys, monkeypatch):
    def change(g):
        g["v"][0, 0] = np.nan

    _perturb(monkeypatch, change)
    assert run(["gradcheck"]) == 1
    captured = capsys.readouterr()
    assert _rows(captured.out)["v"][-1] == "FAIL" and "all passed" not in captured.out


def test_every_parameter_is_checked():
    assert set(TENSORS) == {*PARAM_NAMES, "h0"}
