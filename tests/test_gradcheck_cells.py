"""gradcheck for every cell, at 1 and 2 layers, with a fixed dropout mask: every parameter tensor and every layer's
initial state (h0, and c0 for the lstm) passes, and a wrong gradient on any one of them fails."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rnntui import gradcheck
from rnntui.cli import run
from rnntui.model import CharRNN, tensor_name

CASES = [(cell, layers, dropout) for cell in ("rnn", "lstm", "gru") for layers, dropout in ((1, 0.0), (2, 0.4))]
IDS = [f"{c}-{k}layer{'-dropout' if p else ''}" for c, k, p in CASES]


def _perturb(monkeypatch, change):
    """``CharRNN.loss_and_grads`` hands out ``change(grads, dstate0)``'s gradients."""
    original = CharRNN.loss_and_grads

    def wrong(self, *args, **kwargs):
        loss, grads, h_last, diag = original(self, *args, **kwargs)
        change(grads, diag.dstate0)
        return loss, grads, h_last, diag

    monkeypatch.setattr(CharRNN, "loss_and_grads", wrong)


def _problem(cell, layers, dropout, seed=0):
    model, x, y, h0 = gradcheck.random_problem(6, 4, 2, 5, seed, cell=cell, layers=layers, dropout=dropout)
    return model, x, y, h0, gradcheck.random_masks(model, 2, 5, seed)


@pytest.mark.parametrize(("cell", "layers", "dropout"), CASES, ids=IDS)
def test_every_entry_of_every_tensor_and_initial_state_passes(cell, layers, dropout):
    model, x, y, h0, masks = _problem(cell, layers, dropout)
    assert (masks is not None) == (dropout > 0)
    if masks is not None:  # a real dropout mask: units dropped (0) and kept (1/(1 − p))
        assert set(np.unique(masks[0]).round(6)) == {0.0, round(1 / (1 - dropout), 6)}
    results = [gradcheck.check_forward(model, x, y, h0, masks), *gradcheck.check_model(model, x, y, h0, masks)]
    by_name = {r.name: r for r in results}
    states = [tensor_name(f"{s}0", k, layers) for k in range(layers) for s in model.state_names]
    assert set(by_name) == {"E", *model.params, *states, "q", "softmax"}
    sizes = {k: p.size for k, p in model.params.items()} | {s: model.H * 2 for s in states}
    for name, r in by_name.items():
        if name in sizes:
            assert r.checked == sizes[name], name  # every entry
        assert r.max_error < 1e-10, gradcheck.format_table(results)
    if cell == "lstm":
        assert by_name["c0" if layers == 1 else "c0_l1"].equation == "lstm-21"
        assert by_name["w_hh" if layers == 1 else "w_hh_l1"].equation == "lstm-18"


def test_the_check_differentiates_the_pass_with_its_mask():
    """With another mask than the pass's, the loss row says the check's function is not the model's loss."""
    model, x, y, h0, masks = _problem("gru", 2, 0.4)
    assert gradcheck.check_forward(model, x, y, h0, masks).ok
    other = gradcheck.random_masks(model, 2, 5, seed=9)
    loss = model.astype(np.float64).loss(x, y, h0, masks)[0]
    assert gradcheck.model_loss(model, dict(model.params), gradcheck._columns(model, h0, 2), x, y, other) != \
        pytest.approx(loss, rel=1e-6)


@pytest.mark.parametrize(("cell", "tensor"), [("lstm", "w_hh_l1"), ("lstm", "b_ih_l0"), ("gru", "w_ih_l0"),
                                              ("rnn", "w_l1"), ("lstm", "v")])
def test_a_gradient_wrong_by_1e_4_relative_on_one_tensor_fails(monkeypatch, cell, tensor):
    model, x, y, h0, masks = _problem(cell, 2, 0.4, seed=3)

    def change(grads, dstate0):
        grads[tensor] *= 1 + 1e-4

    _perturb(monkeypatch, change)
    by_name = {r.name: r for r in gradcheck.check_model(model, x, y, h0, masks)}
    assert not by_name[tensor].ok
    assert all(r.ok for name, r in by_name.items() if name != tensor)


@pytest.mark.parametrize(("layer", "state"), [(0, 1), (1, 1), (1, 0)])
def test_a_wrong_initial_state_gradient_fails(monkeypatch, layer, state):
    """c0 of the bottom layer, c0 and h0 of the top: each is checked on its own."""
    model, x, y, h0, masks = _problem("lstm", 2, 0.4, seed=4)

    def change(grads, dstate0):
        dstate0[layer][state][...] *= 1 + 1e-4

    _perturb(monkeypatch, change)
    name = tensor_name(("h0", "c0")[state], layer, 2)
    by_name = {r.name: r for r in gradcheck.check_model(model, x, y, h0, masks)}
    assert not by_name[name].ok and all(r.ok for n, r in by_name.items() if n != name)


@pytest.mark.parametrize("argv", [["--cell", "lstm", "--layers", "2", "--dropout", "0.3"], ["--cell", "gru"],
                                  ["--cell", "rnn", "--layers", "3", "--dropout", "0.5"]])
def test_the_command_passes_for_every_cell(capsys, argv):
    assert run(["gradcheck", *argv, "--hidden-size", "5", "--vocab-size", "6", "--seq-length", "4"]) == 0
    out = capsys.readouterr().out
    assert "all passed" in out and "FAIL" not in out and argv[1] in out.splitlines()[0]
    if "--dropout" in argv:
        assert "one fixed mask" in out.splitlines()[0]


@pytest.mark.parametrize(("argv", "words"), [(["--cell", "lstm", "--dropout", "0.2"], "layers 2 or more"),
                                             (["--layers", "5"], "layers must be between 1 and 4"),
                                             (["--layers", "2", "--dropout", "1"], "dropout must be")])
def test_the_command_refuses_a_model_it_cannot_build(capsys, argv, words):
    assert run(["gradcheck", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("rnntui: error: ") and words in err[0]


def test_a_checkpoint_of_any_cell(tmp_path, capsys, corpus_file, monkeypatch):
    """An lstm of two layers with dropout, trained a little: its checkpoint's gradients pass; one wrong fails."""
    path = tmp_path / "lstm.npz"
    assert run([str(corpus_file), "--headless", "--max-steps", "30", "--hidden-size", "6", "--batch-size", "2",
                "--seq-length", "6", "--cell", "lstm", "--layers", "2", "--dropout", "0.25", "--checkpoint",
                str(path), "--sample-every", "0", "--val-every", "0"]) == 0
    capsys.readouterr()
    assert run(["gradcheck", "--checkpoint", str(path), "--entries", "10"]) == 0
    out = capsys.readouterr().out
    assert "lstm, 2 layers, dropout 0.25" in out and "c0_l1" in out and "all passed" in out

    def change(grads, dstate0):
        grads["b_hh_l1"] *= 1 + 1e-4

    _perturb(monkeypatch, change)
    assert run(["gradcheck", "--checkpoint", str(path), "--entries", "10"]) == 1
    captured = capsys.readouterr()
    assert "(b_hh_l1) has relative error" in captured.err
    assert not math.isnan(float(captured.err.split("relative error ")[1].split()[0]))
