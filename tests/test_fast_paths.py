"""The speed-ups against the plain ways they replace: packed tensors, flat optimizer and clipping,
the batch split over threads, reused pass buffers, and Corpus.load encoding straight from bytes."""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest

from rnntui import corpus as corpus_mod
from rnntui import gradcheck, parallel
from rnntui.corpus import Corpus, CorpusError, read_text
from rnntui.model import PARAM_NAMES, CharRNN, Packed, layout_of
from rnntui.monitor import Monitor
from rnntui.optim import clip_grads, make_optimizer

# -- Packed ---------------------------------------------------------------------------------------------


def test_packed_entries_are_views_of_one_vector():
    p = Packed.zeros(layout_of("rnn", 6, 4), np.float64)
    shapes = {"u": (4, 6), "w": (4, 4), "bh": (4, 1), "v": (6, 4), "by": (6, 1)}
    assert {k: a.shape for k, a in p.items()} == shapes and list(p) == ["u", "w", "bh", "v", "by"]
    for k in PARAM_NAMES:
        p[k][...] = np.arange(p[k].size).reshape(p[k].shape) + 1
    assert p.flat.size == sum(a.size for a in p.values()) and np.all(p.flat > 0)  # every entry covered once
    for k, seg in p.segments(p.flat).items():  # each tensor is one contiguous segment
        np.testing.assert_array_equal(seg, p[k].ravel())
    assert [d["bh"].shape for d in p.layers] == [(4,)] and np.shares_memory(p.layers[0]["bh"], p["bh"])
    p.flat[...] = 0
    assert not any(a.any() for a in p.values())


def test_packed_entries_are_assigned_into_never_replaced():
    p = Packed.zeros(layout_of("lstm", 5, 3, 2), np.float32)
    assert list(p)[:4] == ["w_ih_l0", "w_hh_l0", "b_ih_l0", "b_hh_l0"] and list(p)[-2:] == ["v", "by"]
    p["w_hh_l1"] = np.ones((12, 3))
    assert p.flat.sum() == 36 and p["w_hh_l1"].base is not None  # copied into the vector
    with pytest.raises(ValueError, match="shape"):
        p["w_hh_l1"] = np.ones((3, 3))
    for change in (lambda: p.pop("v"), lambda: p.update(v=1), lambda: p.__delitem__("v"), p.clear):
        with pytest.raises(TypeError):
            change()
    for other in (copy.deepcopy(p), pickle.loads(pickle.dumps(p)), p.clone()):
        assert type(other) is Packed and other.layout is p.layout and not np.shares_memory(other.flat, p.flat)
        np.testing.assert_array_equal(other.flat, p.flat)


def test_assigning_a_models_entry_changes_its_pass():
    model, x, y, h0 = gradcheck.random_problem(seed=1)
    expected = model.loss_and_grads(x, y, h0)
    w = model.params["w"].copy()
    model.params["w"] = w  # the same values, written into the flat vector
    assert model.loss_and_grads(x, y, h0)[0] == expected[0]
    model.params["w"] = w * 0.5
    assert model.loss_and_grads(x, y, h0)[0] != expected[0]
    np.testing.assert_array_equal(model.params.flat[model.layout.bounds[1][1]:model.layout.bounds[1][2]],
                                  (w * 0.5).ravel())


# -- optimizer and clipping on the flat vector -------------------------------------------------------------


def _pair(seed=0):
    rng = np.random.default_rng(seed)
    packed = Packed.empty(layout_of("rnn", 7, 5), np.float32)
    packed.flat[...] = rng.standard_normal(packed.flat.size)
    return packed, {k: a.copy() for k, a in packed.items()}


@pytest.mark.parametrize("name", ["adam", "adagrad", "rmsprop", "momentum", "sgd"])
def test_flat_update_equals_per_tensor_update(name):
    params_p, params_d = _pair(0)
    opt_p, opt_d = make_optimizer(name, params_p, 0.01), make_optimizer(name, params_d, 0.01)
    assert isinstance(opt_p._delta, Packed) and not isinstance(opt_d._delta, Packed)
    for seed in range(1, 5):
        grads_p, grads_d = _pair(seed)
        deltas_p, deltas_d = opt_p.step(params_p, grads_p), opt_d.step(params_d, grads_d)
        for k in PARAM_NAMES:  # the same arithmetic element by element: equal, not just close
            np.testing.assert_array_equal(params_p[k], params_d[k], err_msg=k)
            np.testing.assert_array_equal(deltas_p[k], deltas_d[k], err_msg=k)


@pytest.mark.parametrize("mode", ["element", "global", "none"])
def test_flat_clip_equals_per_tensor_clip(mode):
    grads_p, grads_d = _pair(3)
    grads_p.flat[...] *= 4
    for g in grads_d.values():
        g *= 4
    scale_p, scale_d = clip_grads(grads_p, mode, 2.0), clip_grads(grads_d, mode, 2.0)
    assert scale_p == pytest.approx(scale_d, rel=1e-6)
    for k in PARAM_NAMES:
        np.testing.assert_allclose(grads_p[k], grads_d[k], rtol=1e-6)


@pytest.mark.parametrize("mode", ["element", "global", "none"])
def test_monitor_figures_are_those_of_each_tensor_and_gate_block(mode):
    """The monitor works on the flat vector's segments; its figures are those of each tensor (and gate block)."""
    model, x, y, h0 = gradcheck.random_problem(seed=2, cell="lstm", layers=2)
    _, grads, _, diag = model.loss_and_grads(x, y, h0)
    grads.flat[...] *= 30
    raw = {k: g.copy() for k, g in grads.items()}
    mon = Monitor(model.H, names=model.layout.sigma_names)
    pre = mon.pre_clip(grads, mode, 1.0)
    scale = clip_grads(grads, mode, 1.0)
    deltas = grads.like(0.01)
    stats = mon.measure(1, pre, grads, deltas, model.params, diag, mode, 1.0, scale)
    assert [p.name for p in stats.params] == list(model.params)
    for p in stats.params:
        g = raw[p.name]
        assert p.norm_pre == pytest.approx(np.linalg.norm(g), rel=1e-12) and p.max_abs == np.abs(g).max()
        assert p.norm_post == pytest.approx(np.linalg.norm(grads[p.name]), rel=1e-12)
        assert p.clip_frac == (np.mean(np.abs(g) > 1.0) if mode == "element" else float(mode == "global"))
    gates = "ifgo"
    assert set(stats.blocks) == {f"{t}[{gate}]" for t in model.params if t not in ("v", "by") for gate in gates}
    H = model.H
    for k, gate in enumerate(gates):
        assert stats.blocks[f"w_hh_l1[{gate}]"] == pytest.approx(np.linalg.norm(raw["w_hh_l1"][k * H:(k + 1) * H]),
                                                                 rel=1e-12)
        assert stats.blocks[f"b_ih_l0[{gate}]"] == pytest.approx(np.linalg.norm(raw["b_ih_l0"][k * H:(k + 1) * H]),
                                                                 rel=1e-12)


def test_pre_clip_on_packed_finds_non_finite_tensors():
    grads, plain = _pair(4)
    grads["v"][1, 1] = np.nan
    grads["by"][0, 0] = -np.inf
    pre = Monitor(5).pre_clip(grads, "element", 0.5)
    assert pre.nonfinite == "v"
    assert sum(pre.clipped.values()) > 0
    for k in ("u", "w", "bh"):  # the finite ones (the step with the others diverges: they are named, not counted)
        assert pre.clipped[k] == np.count_nonzero(np.abs(grads[k]) > 0.5) and pre.max_abs[k] == np.abs(plain[k]).max()
    assert np.isnan(pre.max_abs["v"]) and np.isnan(pre.norms["by"])


# -- the batch split and the reused buffers -------------------------------------------------------------------


@pytest.mark.parametrize(("B", "threads"), [(4, 2), (6, 3), (5, 2), (8, "blas")])
def test_split_batch_equals_one_part(B, threads):
    one, x, y, h0 = gradcheck.random_problem(vocab_size=9, hidden_size=7, batch_size=B, seq_length=6, seed=B)
    split = one.astype(np.float64)
    one.threads, split.threads = 1, parallel.parse_policy(threads)
    ref, out = one.loss_and_grads(x, y, h0), split.loss_and_grads(x, y, h0)
    parts = len(split._buffers_for(B, 6).parts)
    assert parts == (1 if threads == "blas" else {4: 2, 6: 3, 5: 1}[B])  # equal parts only
    assert out[0] == pytest.approx(ref[0], rel=1e-13)
    for k in PARAM_NAMES:
        np.testing.assert_allclose(out[1][k], ref[1][k], rtol=1e-12, atol=1e-15, err_msg=k)
    np.testing.assert_allclose(out[2], ref[2], rtol=1e-13)
    for f in ("dh_norms", "dh0"):
        np.testing.assert_allclose(getattr(out[3], f), getattr(ref[3], f), rtol=1e-12, err_msg=f)
    hs, ps = out[3].hs, out[3].ps
    assert hs.size == 6 * B * 7 and ps.size == 6 * B * 9
    if parts > 1:
        assert hs.shape == (parts, 6 * B // parts, 7) and ps.shape == (parts, 6 * B // parts, 9)
    np.testing.assert_allclose(ps.sum(axis=-1), 1.0, rtol=1e-12)
    assert split.loss(x, y, h0)[0] == pytest.approx(one.loss(x, y, h0)[0], rel=1e-13)


def test_parts_give_the_same_bits_on_one_thread_or_several():
    """How the parts run (the pacer's choice) must not change a single bit: checkpoints resume exactly."""
    model, x, y, h0 = gradcheck.random_problem(vocab_size=9, hidden_size=7, batch_size=6, seq_length=5, seed=3)
    model.threads = 3
    buf = model._buffers_for(6, 5)
    runs = []
    for threads in (1, 3, 2):
        buf.pacer.choose = lambda n=threads: n
        loss, grads, h_last, diag = model.loss_and_grads(x, y, h0)
        runs.append((loss, grads.flat.copy(), h_last, diag.dh_norms, diag.dh0))
    for other in runs[1:]:
        assert other[0] == runs[0][0]
        for a, b in zip(other[1:], runs[0][1:], strict=True):
            np.testing.assert_array_equal(a, b)


def test_pacer_keeps_the_faster_way_and_tries_the_other_now_and_then():
    pacer = parallel.Pacer(2)
    chosen = []
    for _ in range(200):
        n = pacer.choose()
        chosen.append(n)
        pacer.record(n, 1.0 if n == 2 else 3.0)  # the cores are faster here
    assert chosen[:3] == [2, 2, 1]  # the first pass warms up (untimed), then each way is timed once
    assert chosen.count(1) <= 1 + 200 // pacer.explore_every
    late = []
    for _ in range(200):
        n = pacer.choose()
        late.append(n)
        pacer.record(n, 5.0 if n == 2 else 3.0)  # now they are busy: one thread is faster
    assert late[-pacer.explore_every:].count(1) == pacer.explore_every - 1


def test_reused_buffers_give_what_a_fresh_model_gives():
    model, x, y, h0 = gradcheck.random_problem(vocab_size=6, hidden_size=5, batch_size=3, seq_length=4, seed=4)
    rng = np.random.default_rng(0)
    for _ in range(3):  # new inputs into the same buffers: the one-hot columns of the last batch must be gone
        x2, y2 = rng.integers(0, 6, (3, 4)), rng.integers(0, 6, (3, 4))
        model.loss_and_grads(x, y, h0)
        loss, grads, h_last, _ = model.loss_and_grads(x2, y2, h0)
        fresh = model.astype(np.float64)
        ref = fresh.loss_and_grads(x2, y2, h0)
        assert loss == ref[0]
        for k in PARAM_NAMES:
            np.testing.assert_array_equal(grads[k], ref[1][k])
    assert len(model._buffers) == 1


def test_saturation_counted_in_the_pass_is_the_share_of_saturated_units():
    from rnntui.model import SATURATION_LEVEL

    model, x, y, h0 = gradcheck.random_problem(seed=6)
    model.params["w"][...] *= 8  # many saturated units
    _, _, _, diag = model.loss_and_grads(x, y, h0)
    assert 0 < diag.saturation == np.count_nonzero(np.abs(diag.hs) > SATURATION_LEVEL) / diag.hs.size < 1


def test_returned_arrays_survive_the_next_pass():
    model, x, y, h0 = gradcheck.random_problem(seed=5)
    loss, grads, h_last, diag = model.loss_and_grads(x, y, h0)
    kept = {k: g.copy() for k, g in grads.items()}, h_last.copy(), diag.dh0.copy()
    model.loss_and_grads(y, x, h0 * 0.5)
    model.loss(y, x)
    for k in PARAM_NAMES:
        np.testing.assert_array_equal(grads[k], kept[0][k])
    np.testing.assert_array_equal(h_last, kept[1])
    np.testing.assert_array_equal(diag.dh0, kept[2])


def test_saturation_of_a_split_batch_counts_every_part():
    one, x, y, h0 = gradcheck.random_problem(vocab_size=9, hidden_size=7, batch_size=6, seq_length=5, seed=9)
    one.params["u"][...] *= 10
    split = one.astype(np.float64)
    one.threads, split.threads = 1, parallel.parse_policy(3)
    a, b = one.loss_and_grads(x, y, h0)[3], split.loss_and_grads(x, y, h0)[3]
    assert len(split._buffers_for(6, 5).parts) == 3 and b.hs.shape == (3, 10, 7)
    assert 0 < a.saturation == b.saturation == np.mean(np.abs(b.hs) > 0.99) < 1


def test_thread_policy():
    assert parallel.num_parts("blas", 64, 512) == 1
    assert parallel.num_parts(1, 64, 512) == 1
    assert parallel.num_parts("auto", 64, 128) == 1  # small products: one part
    assert parallel.num_parts("auto", 32, 512) == 1  # too few sequences for two parts
    assert parallel.num_parts("auto", 64, 512) == min(2, parallel.cpu_count())
    assert parallel.num_parts(3, 2, 0) == 2
    for bad in ("many", "0", -1):
        with pytest.raises(ValueError, match="threads"):
            parallel.parse_policy(bad)
    parallel.single_threaded_blas()
    parallel.single_threaded_blas()  # once is enough; again is harmless
    for lib in parallel._blas_controller() or ():
        assert lib.get_num_threads() == 1


def test_run_takes_each_task_once_and_keeps_the_order():
    import threading

    ran = []
    tasks = [lambda i=i: ran.append((i, threading.get_ident())) or i * i for i in range(7)]
    assert parallel.run(tasks) == [i * i for i in range(7)]
    assert sorted(i for i, _ in ran) == list(range(7))

    def boom():
        raise RuntimeError("part failed")

    with pytest.raises(RuntimeError, match="part failed"):
        parallel.run([lambda: 1, boom])


def test_threads_from_the_environment(monkeypatch):
    monkeypatch.setenv(parallel.ENV, "blas")
    assert CharRNN(5, 4).threads == "blas"
    monkeypatch.setenv(parallel.ENV, "3")
    assert CharRNN(5, 4).threads in (3, "blas")  # "blas" only without threadpoolctl
    assert CharRNN(5, 4, threads=1).threads in (1, "blas")


# -- Corpus.load from bytes ----------------------------------------------------------------------------------


CONTENTS = [
    b"plain ascii text\nwith two lines\n",
    b"crlf\r\nlines\r\nand a lone\rcarriage return\r",
    b"\r\r\n\r\n\n\rx\r",
    "\ufeffGrüße — “quoted” text\r\nzweite Zeile ✓ 🎉\r\n".encode(),
    "ascii then é at the end".encode(),
    "日本語のテキスト\r\nです。".encode() * 3,
]


@pytest.mark.parametrize("piece", [1, 2, 3, 5, 1 << 20])
@pytest.mark.parametrize("content", CONTENTS)
def test_load_equals_reading_the_text(tmp_path, monkeypatch, content, piece):
    monkeypatch.setattr(corpus_mod, "_PIECE", piece)
    p = tmp_path / "c.txt"
    p.write_bytes(content)
    loaded, expected = Corpus.load(p, val_fraction=0.2), Corpus.from_text(read_text(p), val_fraction=0.2)
    assert loaded.vocab == expected.vocab and loaded.path == str(p)
    assert loaded.train.dtype == expected.train.dtype
    np.testing.assert_array_equal(loaded.train, expected.train)
    np.testing.assert_array_equal(loaded.val, expected.val)
    vocab = loaded.vocab
    np.testing.assert_array_equal(Corpus.load(p, vocab=vocab).train, Corpus.from_text(read_text(p), vocab=vocab).train)


@pytest.mark.parametrize("content", [b"abc\xffdef", b"ab\r\ncd\xfe", "é".encode() + b"\xc3(", b"\xef\xbb\xbfxy\x80",
                                     b"ok " * 10 + "é".encode()[:1], b" \r\n\t ", b"\xef\xbb\xbf", b"a\x00b", b""])
def test_load_refuses_what_read_text_refuses(tmp_path, monkeypatch, content):
    monkeypatch.setattr(corpus_mod, "_PIECE", 4)
    p = tmp_path / "bad.txt"
    p.write_bytes(content)
    with pytest.raises(CorpusError) as expected:
        read_text(p)
    with pytest.raises(CorpusError) as got:
        Corpus.load(p)
    assert str(got.value) == str(expected.value)


def test_load_with_a_vocabulary_refuses_unknown_characters(tmp_path):
    p = tmp_path / "c.txt"
    p.write_text("abcxyz", encoding="utf-8")
    with pytest.raises(CorpusError, match="outside the vocabulary: xyz"):
        Corpus.load(p, vocab=Corpus.from_text("abc").vocab)
