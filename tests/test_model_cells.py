"""The model for every cell: its pass against the cells' readable reference, names and shapes, initialisation,
dropout masks, sampling, the figures of a pass (reach, gates, σmax) on constructed cases whose answer is known,
and the trainer around it (snapshots, exact resumption with dropout, checkpoints, the sample command)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from rnntui import Corpus, HyperParams, TrainConfig, Trainer, lecture
from rnntui import recall as recall_mod
from rnntui.checkpoint import load as load_checkpoint
from rnntui.checkpoint import save as save_checkpoint
from rnntui.cli import run
from rnntui.model import CharRNN, layer_of, layout_of, tensor_name
from rnntui.monitor import Monitor, exact_sigmas
from rnntui.trainer import HISTORY_NAMES, history_names, resume_trainer

CASES = [(c, k, p) for c in ("rnn", "lstm", "gru") for k, p in ((1, 0.0), (2, 0.3), (3, 0.5))]
IDS = [f"{c}-{k}layer" for c, k, _ in CASES]


def _model(cell, layers=1, dropout=0.0, V=6, H=5, seed=0, **kw) -> CharRNN:
    m = CharRNN(V, H, seed=seed, dtype=np.float64, cell=cell, layers=layers, dropout=dropout, **kw)
    rng = np.random.default_rng(seed + 100)
    m.params.flat[...] += rng.standard_normal(m.params.flat.size) * 0.3  # every bias non-zero, gates off ½
    return m


def _batch(V, B, T, seed=1):
    rng = np.random.default_rng(seed)
    return rng.integers(0, V, (B, T)), rng.integers(0, V, (B, T))


def _rows(model, B, seed=2):
    rng = np.random.default_rng(seed)
    return [tuple(np.tanh(rng.standard_normal((B, model.H))) for _ in model.state_names) for _ in range(model.layers)]


def _reference(model: CharRNN, x, y, state0, masks):
    """Loss, gradients (the model's names), ∂E/∂state0 and last states (rows) by the cells' reference loops and the
    lecture's output layer, float64."""
    B, T = x.shape
    layers = model.layer_params()
    cols = [tuple(a.T for a in s) for s in state0]
    fwds = model.stack.reference_forward(layers, x, cols, masks)
    v, by = model.params["v"], model.params["by"]
    hs = {t: fwds[-1].states[t + 1][0] for t in range(T)}
    ps, loss = lecture.outputs({"v": v, "by": by}, hs, y)
    dys = []
    for t in range(T):
        dy = ps[t].copy()
        dy[y[:, t], np.arange(B)] -= 1
        dys.append(dy / B)
    back = model.stack.reference_bptt(layers, fwds, [v.T @ dy for dy in dys], masks)
    grads = {"v": sum(dy @ hs[t].T for t, dy in enumerate(dys)), "by": sum(dy.sum(axis=1, keepdims=True) for dy in dys)}
    for tensors, b in zip(model.layout.layer_tensors, back, strict=True):
        for cname, name, _ in tensors:
            grads[name] = b.grads[cname].reshape(model.params[name].shape)
    dstate0 = [tuple(a.T for a in b.dstate0) for b in back]
    last = [tuple(a.T for a in f.states[-1]) for f in fwds]
    return float(loss), grads, dstate0, last


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize(("cell", "layers", "dropout"), CASES, ids=IDS)
def test_the_pass_is_the_cells_reference(cell, layers, dropout, threads):
    """Loss, every gradient, ∂E/∂state0 and the last state equal the readable reference to 1e-12 (float64), the
    batch in one part or split over two, with dropout masks."""
    model = _model(cell, layers, dropout)
    model.threads = threads
    B, T = 4, 6
    x, y = _batch(6, B, T)
    state0 = _rows(model, B)
    masks = model.draw_masks(np.random.default_rng(3), B, T)
    assert (masks is None) == (layers == 1)
    loss, grads, last, diag = model.loss_and_grads(x, y, state0, masks)
    assert len(model._buffers_for(B, T).parts) == threads
    r_loss, r_grads, r_dstate0, r_last = _reference(model, x, y, state0, masks)
    assert loss == pytest.approx(r_loss, rel=1e-12)
    assert model.loss(x, y, state0, masks)[0] == pytest.approx(r_loss, rel=1e-12)
    for name, g in r_grads.items():
        np.testing.assert_allclose(grads[name], g, rtol=1e-10, atol=1e-12, err_msg=name)
    for k in range(layers):
        for j in range(len(model.state_names)):
            np.testing.assert_allclose(diag.dstate0[k][j], r_dstate0[k][j], rtol=1e-10, atol=1e-12)
            np.testing.assert_allclose(last[k][j], r_last[k][j], rtol=1e-12, atol=1e-14)


def test_names_shapes_and_views():
    m = CharRNN(7, 3, cell="lstm", layers=2)
    assert list(m.params) == ["w_ih_l0", "w_hh_l0", "b_ih_l0", "b_hh_l0", "w_ih_l1", "w_hh_l1", "b_ih_l1", "b_hh_l1",
                              "v", "by"]
    assert m.params["w_ih_l0"].shape == (12, 7) and m.params["w_ih_l1"].shape == (12, 3)
    assert m.params["v"].shape == (7, 3) and m.params["by"].shape == (7, 1)
    assert [layer_of(n) for n in ("w_hh_l1", "w_hh_l1[f]", "u", "w_l3", "v", "by", "by[x]")] == [1, 1, 0, 3, None,
                                                                                                 None, None]
    assert tensor_name("w", 0, 1) == "w" and tensor_name("w", 2, 3) == "w_l2"
    layers = m.layer_params()
    assert list(layers[1]) == ["w_ih", "w_hh", "b_ih", "b_hh"] and np.shares_memory(layers[1]["w_hh"],
                                                                                      m.params["w_hh_l1"])
    lay = m.layout
    assert lay.sigma_names == tuple(f"w_hh{s}[{g}]" for s in ("_l0", "_l1") for g in "ifgo")
    assert [label for label, *_ in lay.gate_blocks][:4] == ["w_ih_l0[i]", "w_ih_l0[f]", "w_ih_l0[g]", "w_ih_l0[o]"]
    assert layout_of("rnn", 7, 3).names == ("u", "w", "bh", "v", "by") and layout_of("rnn", 7, 3).sigma_names == ("w",)
    gru = CharRNN(7, 3, cell="gru", layers=3)
    assert gru.layout.sigma_names[-3:] == ("w_hh_l2[r]", "w_hh_l2[z]", "w_hh_l2[n]") and gru.num_params() == \
        sum(a.size for a in gru.params.values())


def test_initialisation():
    """The vanilla model draws u, w, then v from its seed (the weights it always started from), biases 0; the lstm
    draws PyTorch's uniform, then sets the forget gate's bias to 1 (b_if = 1, b_hf = 0)."""
    H, V = 6, 9
    rng = np.random.default_rng(5)
    k = 1 / math.sqrt(H)
    m = CharRNN(V, H, seed=5, dtype=np.float64)
    for name, shape in (("u", (H, V)), ("w", (H, H)), ("v", (V, H))):
        np.testing.assert_array_equal(m.params[name], rng.uniform(-k, k, shape))
    assert not m.params["bh"].any() and not m.params["by"].any()
    lstm = CharRNN(V, H, cell="lstm", layers=2, seed=1, dtype=np.float64)
    for s in ("_l0", "_l1"):
        b_ih, b_hh = lstm.params["b_ih" + s], lstm.params["b_hh" + s]
        assert np.all(b_ih[H:2 * H] == 1) and np.all(b_hh[H:2 * H] == 0) and np.abs(b_ih[:H]).max() <= k
    assert np.all(CharRNN(V, H, cell="lstm", forget_bias=3.0).params["b_ih"][H:2 * H] == 3)
    assert CharRNN(V, H, cell="gru", init="lecture").params["w_hh"].std() == pytest.approx(0.01, rel=0.3)
    with pytest.raises(ValueError, match="unknown cell"):
        CharRNN(V, H, cell="transformer")
    with pytest.raises(ValueError, match="layers"):
        CharRNN(V, H, layers=0)


def test_dropout_masks():
    m = _model("lstm", 3, 0.4)
    masks = m.draw_masks(np.random.default_rng(0), 4, 5)
    assert len(masks) == 2 and all(a.shape == (20, m.H) for a in masks)
    assert set(np.unique(np.concatenate(masks)).round(9)) == {0.0, round(1 / 0.6, 9)}
    again = m.draw_masks(np.random.default_rng(0), 4, 5)
    assert all(np.array_equal(a, b) for a, b in zip(masks, again, strict=True))  # from the generator alone
    assert _model("lstm", 1).draw_masks(np.random.default_rng(0), 4, 5) is None
    assert _model("gru", 2, 0.0).draw_masks(np.random.default_rng(0), 4, 5) is None
    x, y = _batch(6, 4, 5)
    plain = m.loss(x, y)[0]
    assert m.loss(x, y, None, [np.ones((20, m.H))] * 2)[0] == plain  # masks of ones: nothing dropped
    assert m.loss(x, y, None, masks)[0] != plain
    assert m.loss_and_grads(x, y)[0] == plain  # no masks, no dropout (validation, sampling, checks)
    with pytest.raises(ValueError, match="masks"):
        m.loss(x, y, None, masks[:1])


def test_the_lecture_models_state_is_its_columns_and_others_are_rows():
    m = _model("rnn")
    x, y = _batch(6, 3, 4)
    h0 = np.tanh(np.random.default_rng(0).standard_normal((m.H, 3)))
    loss, _, last, diag = m.loss_and_grads(x, y, h0)
    assert last.shape == (m.H, 3) and diag.dh0.shape == (m.H, 3)
    loss_rows, _, last_rows, diag_rows = m.loss_and_grads(x, y, [(h0.T.copy(),)])
    assert loss_rows == loss and np.array_equal(last_rows[0][0].T, last)
    assert np.array_equal(diag_rows.dh0[0][0], diag.dh0.T)
    with pytest.raises(ValueError, match="list of states"):
        _model("lstm").loss(x, y, h0)
    with pytest.raises(ValueError, match="h0 must hold"):
        _model("lstm", 2).loss(x, y, [(h0.T, h0.T)])


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_sampling_steps_the_cells_as_the_pass_does(cell):
    """At temperature 0 the first character after the prime is the argmax of the pass's last logits."""
    m = CharRNN(6, 5, cell=cell, layers=2, seed=3, dtype=np.float64, chars="abcdef")
    prime = "abcab"
    ids = np.array([m.encode(prime)])
    hs, _ = m.hidden(ids)
    q = m.params["v"] @ hs[-1, 0] + m.params["by"][:, 0]
    text = m.sample(None, prime, 30, 0)
    assert len(text) == 30 and set(text) <= set("abcdef") and text[0] == "abcdef"[int(np.argmax(q))]
    assert m.sample(None, prime, 30, 0) == text
    sampled = m.sample(None, prime, 200, 1.0, np.random.default_rng(0))
    assert len(set(sampled)) > 1 and sampled == m.sample(None, prime, 200, 1.0, np.random.default_rng(0))
    state = m.state_of(_rows(m, 3), 1)
    kept = [tuple(a.copy() for a in layer) for layer in state]
    m.sample(state, prime, 10, 0)
    assert all(np.array_equal(a, b) for x, y in zip(state, kept, strict=True) for a, b in zip(x, y, strict=True))


def test_the_pass_figures_of_a_split_batch_are_those_of_one_part():
    for cell in ("lstm", "gru", "rnn"):
        one = _model(cell, 2, 0.3)
        split = one.astype(np.float64)
        one.threads, split.threads = 1, 2
        x, y = _batch(6, 4, 7)
        masks = one.draw_masks(np.random.default_rng(1), 4, 7)
        a = one.loss_and_grads(x, y, None, masks)[3].figures(one.params["v"])
        b = split.loss_and_grads(x, y, None, masks)[3].figures(split.params["v"])
        fresh = split.measure(x, y, None, masks)
        assert len(split._buffers_for(4, 7).parts) == 2
        for other in (b, fresh):
            for la, lb in zip(a.logs, other.logs, strict=True):
                assert set(la) == set(lb) == set(one.state_names)
                for name in la:
                    np.testing.assert_allclose(la[name], lb[name], rtol=1e-10)
            for ga, gb in zip(a.gates, other.gates, strict=True):
                for sa, sb in zip(ga, gb, strict=True):
                    assert sa.name == sb.name and sa.mean == pytest.approx(sb.mean, rel=1e-12)
                    assert (sa.low, sa.high) == pytest.approx((sb.low, sb.high), rel=1e-12)


# -- constructed cases: the reach through the cell state, the forget gate -------------------------------------------


def _lstm_with_forget_bias(bias: float, T: int = 30) -> tuple[Trainer, object]:
    """A trainer whose lstm has every weight 0 but the output layer and the forget gate's bias; one step (lr tiny)."""
    corpus = Corpus.from_text("abcde fghij " * 200, val_fraction=0.1)
    cfg = TrainConfig(hidden_size=8, batch_size=4, seq_length=T, dtype="float64", cell="lstm",
                      hyper=HyperParams(lr=1e-12, optimizer="sgd", clip_mode="none", sample_every=0, val_every=0))
    t = Trainer(corpus, cfg, publish_interval=0)
    p = t.model.params
    for name in p:
        if name not in ("v", "by"):
            p[name][...] = 0
    p["b_ih"][8:16] = bias  # the forget gate: σ(±20)
    t.train_step()
    return t, t.snapshot()


def test_a_forget_gate_open_keeps_the_cell_states_gradient_beyond_the_window():
    """f = σ(20) ≈ 1: ∂E/∂c_{t−1} = f ⊙ ∂E/∂c_t keeps its size back through the window (reach beyond T), while
    through h alone (W_hh = 0) it is gone after one step; the forget gate reads right-saturated on every unit."""
    t, snap = _lstm_with_forget_bias(20.0)
    (layer,) = snap.reaches
    assert layer.layer == 0 and layer.c is not None and snap.reach is layer.h
    assert layer.c.lag is None and layer.c.ratios.min() > 0.999 and layer.c.to_h0 > 0.999
    assert layer.h.lag == 1
    f = {s.name: s for s in snap.gates[0]}["f"]
    assert f.high == 1.0 and f.low == 0.0 and f.mean == pytest.approx(1, abs=1e-8)
    assert [s.name for s in snap.gates[0]] == ["i", "f", "g", "o", "tanh(c)"]


def test_a_forget_gate_shut_cuts_the_cell_states_gradient_at_once():
    t, snap = _lstm_with_forget_bias(-20.0)
    (layer,) = snap.reaches
    assert layer.c.lag == 1 and layer.c.ratios[1] < 1e-8
    f = {s.name: s for s in snap.gates[0]}["f"]
    assert f.low == 1.0 and f.high == 0.0


def test_a_gru_whose_update_gate_is_shut_carries_h_unchanged():
    """z = σ(20) ≈ 1: h_t = z ⊙ h_{t−1} + (1 − z) ⊙ n ≈ h_{t−1}, and ∂E/∂h_{t−1} = ∂E/∂h_t ⊙ z: the reach of h goes
    beyond the window (the rnn's, with the same zero recurrent weights, is gone after a step)."""
    m = CharRNN(5, 6, cell="gru", dtype=np.float64, seed=2)
    for name in ("w_ih", "w_hh", "b_ih", "b_hh"):
        m.params[name][...] = 0
    m.params["b_ih"][6:12] = 20.0
    x, y = _batch(5, 3, 25)
    fig = m.measure(x, y)
    from rnntui.monitor import PassReach

    reach = PassReach.of(0, fig).reach
    assert reach.lag is None and reach.ratios.min() > 0.999
    assert {s.name: s for s in fig.gates[0]}["z"].high == 1.0


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_sigma_of_every_recurrent_block(cell):
    """The batched power iteration gives each gate block's σmax (against the SVD)."""
    m = _model(cell, 2, H=7)
    mon = Monitor(7, names=m.layout.sigma_names)
    estimates = mon.sigmas_of(m.params, iters=3000)
    exact = exact_sigmas(m.params)
    assert list(estimates) == list(exact) == list(m.layout.sigma_names)
    for name, s in exact.items():
        assert estimates[name] == pytest.approx(s, rel=1e-6), name
    H = 7
    k = "ifgo".index("f") if cell == "lstm" else "rzn".index("z")
    gate = "f" if cell == "lstm" else "z"
    assert exact[f"w_hh_l1[{gate}]"] == pytest.approx(np.linalg.norm(m.params["w_hh_l1"][k * H:(k + 1) * H], 2))


# -- the trainer -------------------------------------------------------------------------------------------------


def _trainer(corpus, cell="lstm", layers=2, dropout=0.3, **hyper):
    hyper = {"sample_every": 0, "val_every": 0, "lr": 5e-3, **hyper}
    cfg = TrainConfig(hidden_size=10, batch_size=3, seq_length=7, dtype="float32", seed=4, cell=cell, layers=layers,
                      dropout=dropout, hyper=HyperParams(**hyper))
    return Trainer(corpus, cfg, publish_interval=0)


def test_history_names_follow_the_model(corpus):
    assert history_names(TrainConfig()) == HISTORY_NAMES
    names = history_names(TrainConfig(cell="gru", layers=2))
    assert "pre:w_hh_l1" in names and "ratio:total" in names and "pre:w" not in names
    t = _trainer(corpus)
    assert set(t.history) == set(history_names(t.config))


def test_a_snapshot_holds_every_cells_and_layers_figures(corpus):
    t = _trainer(corpus)
    for _ in range(2):
        t.train_step()
    snap = t.snapshot()
    assert (snap.config.cell, snap.config.layers, snap.config.dropout) == ("lstm", 2, 0.3)
    g = snap.grad_stats
    assert [p.name for p in g.params] == list(t.model.params)
    assert set(g.blocks) == {f"{n}[{gate}]" for n in t.model.params if n not in ("v", "by") for gate in "ifgo"}
    assert list(snap.sigmas) == list(t.model.layout.sigma_names)
    assert g.sigma_max == max(snap.sigmas.values())  # (an even step: the estimates of this very step)
    assert [r.layer for r in snap.reaches] == [0, 1] and all(r.c is not None for r in snap.reaches)
    assert snap.reach is snap.reaches[-1].h and snap.reach.step == 1
    assert len(snap.gates) == 2 and [s.name for s in snap.gates[1]] == ["i", "f", "g", "o", "tanh(c)"]
    assert all(0 <= s.low + s.high <= 1 for layer in snap.gates for s in layer)
    assert set(t.history) >= {"pre:w_hh_l1", "post:b_ih_l0", "ratio:v"} and len(t.history["pre:w_hh_l1"]) == 2


def test_an_lstm_with_dropout_resumes_bit_for_bit(corpus, tmp_path):
    """N + M steps in one go == N steps, save, load, M steps: the parameters, the masks' generator and all."""
    N, M = 9, 8
    straight = _trainer(corpus)
    for _ in range(N + M):
        straight.train_step()
    first = _trainer(corpus)
    for _ in range(N):
        first.train_step()
    path = save_checkpoint(tmp_path / "lstm.npz", first)
    ck = load_checkpoint(path)
    assert (ck.config.cell, ck.config.layers, ck.config.dropout) == ("lstm", 2, 0.3) and ck.header["version"] == 2
    resumed = resume_trainer(ck, corpus)
    for _ in range(M):
        resumed.train_step()
    np.testing.assert_array_equal(resumed.model.params.flat, straight.model.params.flat)
    for a, b in zip(resumed.h, straight.h, strict=True):
        for x, y in zip(a, b, strict=True):
            np.testing.assert_array_equal(x, y)
    assert resumed.dropout_rng.bit_generator.state == straight.dropout_rng.bit_generator.state
    assert resumed.loss == straight.loss and resumed.monitor.sigmas == straight.monitor.sigmas
    # the masks matter: without the generator's state the run would not have gone on alike
    other = resume_trainer(ck, corpus)
    other.dropout_rng = np.random.default_rng(123)
    for _ in range(M):
        other.train_step()
    assert not np.array_equal(other.model.params.flat, straight.model.params.flat)


def test_dropout_is_off_in_validation_and_sampling(corpus):
    t = _trainer(corpus, val_every=1)
    t.train_step()
    before = t.dropout_rng.bit_generator.state
    v1 = t.validate()
    assert t.validate() == v1 and t.dropout_rng.bit_generator.state == before  # no masks drawn
    t.sample(20, temperature=0)
    assert t.dropout_rng.bit_generator.state == before


def test_the_inspection_holds_the_pass_masks_and_states(corpus):
    t = _trainer(corpus, cell="gru", layers=3, dropout=0.5)
    t.train_step()
    inputs, targets, h0, masks = t._last_batch
    ins = t.inspection()
    assert len(ins.masks) == 2 and all(np.array_equal(a, b) for a, b in zip(ins.masks, masks, strict=True))
    assert len(ins.states0) == 3 and np.array_equal(ins.states0[1][0], h0[1][0])
    assert ins.model.params["w_hh_l2"].dtype == np.float64 and ins.reach is t.reach and len(t.reaches) == 3
    np.testing.assert_array_equal(ins.model.params.flat, t._before_update.flat.astype(np.float64))


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_the_sample_command_reads_the_cell_from_the_checkpoint(tmp_path, capsys, corpus_file, cell):
    path = tmp_path / f"{cell}.npz"
    assert run([str(corpus_file), "--headless", "--max-steps", "20", "--hidden-size", "8", "--batch-size", "2",
                "--seq-length", "8", "--cell", cell, "--layers", "2", "--checkpoint", str(path)]) == 0
    capsys.readouterr()
    assert run(["sample", str(path), "--prime", "The ", "-n", "60", "--seed", "1"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("The ") and len(out.rstrip("\n")) >= 60
    m = load_checkpoint(path).model()
    assert (m.cell, m.layers) == (cell, 2)


def test_the_recall_probe_reads_through_the_models_forward(monkeypatch):
    """Chunked through the lstm's own forward (the state carried from chunk to chunk), the copy scores are those of
    one pass over the whole held-out text."""
    text = (Path(__file__).resolve().parents[1] / "sample_data" / "recall.txt").read_text(encoding="utf-8")
    corpus = Corpus.from_text(text[:30000], val_fraction=0.2)
    probe = recall_mod.RecallProbe.for_corpus(corpus, 50, 4000)
    assert probe is not None
    m = CharRNN(corpus.vocab.size, 12, cell="lstm", layers=2, seed=1, dtype=np.float64, chars=corpus.vocab.chars)
    whole, _ = m.hidden(probe.inputs.T)
    h_eq = whole[probe.eq_t, probe.eq_s]
    q = h_eq @ m.params["v"].T + m.params["by"][:, 0]
    q -= q.max(axis=1, keepdims=True)
    expected = np.log(np.exp(q).sum(axis=1)) - q[np.arange(len(q)), probe.markers]
    monkeypatch.setattr(recall_mod, "CHUNK", 37)
    nll, correct = probe.copy_scores(m)
    np.testing.assert_allclose(nll, expected, rtol=1e-12)
    assert len(nll) == len(probe.starts) > 20 and correct.dtype == bool


def test_an_lstm_runs_snapshot_and_inspection_cross_the_wire(corpus):
    """The run protocol carries every cell's figures (LayerReach, the gates' Saturation) and model (its cell, layers
    and dropout with its weights), built back through their constructors."""
    from rnntui.runs import protocol as P

    t = _trainer(corpus, cell="lstm", layers=2, dropout=0.3)
    for _ in range(2):
        t.train_step()
    snap = P.decode(P.encode(t.snapshot()))
    assert snap.gates == t.gates and snap.sigmas == t.sigmas
    for a, b in zip(snap.reaches, t.reaches, strict=True):
        assert a.layer == b.layer and (a.h.lag, a.c.lag, a.h.step) == (b.h.lag, b.c.lag, b.h.step)
        np.testing.assert_array_equal(a.c.ratios, b.c.ratios)
    assert snap.grad_stats.blocks == t.grad_stats.blocks and snap.config == t.config
    ins = t.inspection()
    got = P.decode(P.encode(ins))
    m = got.model
    assert (m.cell, m.layers, m.dropout) == ("lstm", 2, 0.3) and list(m.params) == list(ins.model.params)
    np.testing.assert_array_equal(m.params.flat, ins.model.params.flat)
    assert m.loss(got.inputs, got.targets, [tuple(s) for s in got.states0], list(got.masks))[0] == \
        ins.model.loss(ins.inputs, ins.targets, [tuple(s) for s in ins.states0], list(ins.masks))[0]
    for bad in ({"cell": "tcn"}, {"layers": 9}, {"dropout": 1.5}):
        payload = {**P._encode_model(ins.model), **bad}
        with pytest.raises(P.ProtocolError):
            P._decode_model(payload)


def test_the_lstms_forget_bias_is_a_setting(corpus):
    """1 by default (Jozefowicz et al. 2015); TrainConfig(forget_bias=…) sets another, None keeps PyTorch's draw."""
    H = 10
    for value, check in ((1.0, lambda b: np.all(b == 1)), (2.5, lambda b: np.all(b == 2.5)),
                         (None, lambda b: np.abs(b).max() <= 2 / math.sqrt(H) and b.std() > 0)):
        t = _trainer(corpus, cell="lstm", layers=1, dropout=0.0) if value == 1.0 else Trainer(
            corpus, TrainConfig(hidden_size=H, batch_size=3, seq_length=7, cell="lstm", forget_bias=value))
        p = t.model.params
        assert check(p["b_ih"][H:2 * H] + p["b_hh"][H:2 * H]), value
    assert TrainConfig(forget_bias=None).validated().forget_bias is None
    with pytest.raises(ValueError, match="forget bias"):
        TrainConfig(forget_bias=float("nan")).validated()
