"""Checkpoints: exact resume, refusal of files that are not ours, atomic writes."""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np
import pytest

from rnntui import checkpoint
from rnntui.checkpoint import CheckpointError, check_writable
from rnntui.checkpoint import load as load_checkpoint
from rnntui.checkpoint import save as save_checkpoint
from rnntui.config import ConfigError
from rnntui.corpus import Corpus
from rnntui.trainer import resume_trainer


def _run(trainer, n):
    for _ in range(n):
        assert trainer.train_step() is not None


@pytest.mark.parametrize("optimizer", ["adam", "adagrad"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_exact_resume(make_trainer, short_text, tmp_path, optimizer, dtype):
    """N + M steps in one go == N steps, save, load, resume, M steps: bit for bit (an epoch wraps on the way)."""
    N, M = 17, 16
    kw = dict(text=short_text, optimizer=optimizer, lr=0.05, dtype=dtype, sample_every=5, val_every=4,
              sample_length=10)
    straight = make_trainer(**kw)
    _run(straight, N + M)
    assert straight.stream.epoch >= 1  # the run went across an epoch boundary

    first = make_trainer(**kw)
    _run(first, N)
    path = tmp_path / "run.npz"
    save_checkpoint(path, first)
    ckpt = load_checkpoint(path)
    assert ckpt.step == N
    resumed = resume_trainer(ckpt, Corpus.from_text(short_text))
    assert resumed.step == N
    _run(resumed, M)

    assert resumed.step == straight.step == N + M
    for k, p in straight.model.params.items():
        assert resumed.model.params[k].dtype == p.dtype
        assert np.array_equal(resumed.model.params[k], p), k
    assert resumed.optimizer.name == straight.optimizer.name == optimizer
    assert resumed.optimizer.t == straight.optimizer.t == N + M
    for slot, arrays in straight.optimizer.state.items():
        for k, a in arrays.items():
            assert np.array_equal(resumed.optimizer.state[slot][k], a), (slot, k)
    assert np.array_equal(resumed.h, straight.h)
    assert resumed.stream.state() == straight.stream.state()
    assert resumed.rng.bit_generator.state == straight.rng.bit_generator.state
    assert np.array_equal(resumed.monitor._x, straight.monitor._x)
    assert resumed.loss == straight.loss and resumed.val_loss == straight.val_loss
    assert resumed.samples[-1] == straight.samples[-1]
    assert resumed.chars_seen == straight.chars_seen
    assert resumed.grad.sigma_max == straight.grad.sigma_max


def test_checkpoint_contents(make_trainer, tmp_path):
    tr = make_trainer(hidden_size=7, optimizer="momentum")
    _run(tr, 3)
    path = save_checkpoint(tmp_path / "c.npz", tr)
    ck = load_checkpoint(path)
    assert ck.vocab == tr.corpus.vocab
    assert ck.config == tr.config
    assert ck.hyper == tr.hyper
    assert ck.header["optimizer"] == {"name": "momentum", "t": 3}
    m = ck.model()
    for k, p in tr.model.params.items():
        assert np.array_equal(m.params[k], p)
    assert m.chars == tr.corpus.vocab.chars
    s, v = tr.history["loss"].arrays()
    assert np.array_equal(ck.arrays["hist.loss.values"], v)


def test_resume_with_another_optimizer_starts_it_fresh(make_trainer, tmp_path):
    tr = make_trainer(optimizer="adam")
    _run(tr, 4)
    save_checkpoint(tmp_path / "c.npz", tr)
    resumed = resume_trainer(load_checkpoint(tmp_path / "c.npz"), tr.corpus, hyper_changes={"optimizer": "rmsprop"})
    assert resumed.hyper.optimizer == "rmsprop"
    assert resumed.optimizer.name == "rmsprop" and resumed.optimizer.t == 0
    assert not any(a.any() for a in resumed.optimizer.state["s"].values())
    for k, p in tr.model.params.items():
        assert np.array_equal(resumed.model.params[k], p)
    _run(resumed, 1)


def test_divergence_right_after_resume_keeps_the_checkpoint_parameters(make_trainer, tmp_path, monkeypatch):
    """The trainer rolls back to the parameters before its last update on divergence; right after a
    resume that must be the checkpoint's parameters, never the fresh random initialisation."""
    tr = make_trainer(lr=0.01)
    initial = {k: p.copy() for k, p in tr.model.params.items()}
    _run(tr, 6)
    save_checkpoint(tmp_path / "c.npz", tr)
    resumed = resume_trainer(load_checkpoint(tmp_path / "c.npz"), tr.corpus)
    original = resumed.model.loss_and_grads

    def poisoned(*args):
        loss, grads, h, diag = original(*args)
        grads["u"][0, 0] = np.nan
        return loss, grads, h, diag

    monkeypatch.setattr(resumed.model, "loss_and_grads", poisoned)
    assert resumed.train_step() is None and resumed.state == "diverged"
    for k, p in resumed.model.params.items():
        assert np.array_equal(p, tr.model.params[k]), k
        assert not np.array_equal(p, initial[k]), k


def test_resume_needs_the_same_vocabulary(make_trainer, tmp_path):
    tr = make_trainer()
    _run(tr, 1)
    save_checkpoint(tmp_path / "c.npz", tr)
    other = Corpus.from_text("a completely different text with q, x and z! " * 20)
    with pytest.raises(ConfigError, match="vocabulary"):
        resume_trainer(load_checkpoint(tmp_path / "c.npz"), other)


# -- corrupt and foreign files ---------------------------------------------------------------------------


@pytest.fixture
def good_checkpoint(make_trainer, tmp_path):
    tr = make_trainer()
    _run(tr, 2)
    return save_checkpoint(tmp_path / "good.npz", tr)


def _rewrite(src, dst, edit_header=None, edit_arrays=None):
    with np.load(src) as z:
        arrays = {k: z[k] for k in z.files}
    header = json.loads(arrays.pop("__header__").tobytes().decode())
    if edit_header:
        edit_header(header)
    if edit_arrays:
        edit_arrays(arrays)
    np.savez(dst, __header__=np.frombuffer(json.dumps(header).encode(), dtype=np.uint8), **arrays)
    return dst


def _make_bad(kind, good, tmp_path):
    p = tmp_path / f"{kind}.npz"
    if kind == "truncated":
        data = good.read_bytes()
        p.write_bytes(data[: len(data) // 2])
    elif kind == "random":
        p.write_bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    elif kind == "empty":
        p.write_bytes(b"")
    elif kind == "text":
        p.write_text("hello, this is not a checkpoint\n")
    elif kind == "npy":
        p = tmp_path / "array.npy"
        np.save(p, np.arange(5))
    elif kind == "no-header":
        np.savez(p, a=np.arange(3))
    elif kind == "bad-json":
        np.savez(p, __header__=np.frombuffer(b"{not json", dtype=np.uint8))
    elif kind == "version":
        _rewrite(good, p, edit_header=lambda h: h.update(version=99))
    elif kind == "format":
        _rewrite(good, p, edit_header=lambda h: h.update(format="something-else"))
    elif kind == "shape":
        _rewrite(good, p, edit_arrays=lambda a: a.update({"param.w": np.zeros((3, 3), np.float32)}))
    elif kind == "config":
        _rewrite(good, p, edit_header=lambda h: h["config"].update(hidden_size=-4))
    return p


@pytest.mark.parametrize(("kind", "words"), [
    ("truncated", "corrupt or truncated"),
    ("random", "corrupt or truncated"),
    ("empty", "corrupt or truncated"),
    ("text", "corrupt or truncated"),
    ("npy", "corrupt or truncated"),
    ("no-header", "no header"),
    ("bad-json", "header is corrupt"),
    ("version", "version 99 is not supported"),
    ("format", "not an rnntui checkpoint"),
    ("shape", "param.w"),
    ("config", "hidden size"),
])
def test_bad_files_are_refused_clearly(good_checkpoint, tmp_path, kind, words):
    bad = _make_bad(kind, good_checkpoint, tmp_path)
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(bad)
    msg = str(e.value)
    assert words in msg and str(bad) in msg
    assert "\n" not in msg


def test_missing_and_directory(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nope.npz")
    with pytest.raises(CheckpointError, match="directory"):
        load_checkpoint(tmp_path)


def test_check_writable(tmp_path):
    assert check_writable(tmp_path / "ok.npz") == tmp_path / "ok.npz"
    with pytest.raises(CheckpointError, match="does not exist"):
        check_writable(tmp_path / "missing" / "c.npz")
    with pytest.raises(CheckpointError, match="is a directory"):
        check_writable(tmp_path)
    (tmp_path / "file").write_text("x")
    with pytest.raises(CheckpointError, match="not a directory"):
        check_writable(tmp_path / "file" / "c.npz")


# -- atomic writes ---------------------------------------------------------------------------------------


def test_failed_save_leaves_the_old_file_intact(make_trainer, tmp_path, monkeypatch):
    tr = make_trainer()
    _run(tr, 2)
    path = tmp_path / "run.npz"
    save_checkpoint(path, tr)
    old_bytes = path.read_bytes()
    _run(tr, 3)

    def crash(tmp):
        assert os.path.exists(tmp) and os.path.getsize(tmp) > 0  # the new file was fully written first
        raise RuntimeError("simulated crash before the rename")

    monkeypatch.setattr(checkpoint, "_before_replace", crash)
    with pytest.raises(RuntimeError, match="simulated"):
        save_checkpoint(path, tr)
    assert path.read_bytes() == old_bytes
    assert load_checkpoint(path).step == 2
    assert sorted(os.listdir(tmp_path)) == ["run.npz"]  # no temporary file left behind

    # an OSError at that moment becomes a CheckpointError; the trainer reports it instead of raising
    def disk_full(tmp):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoint, "_before_replace", disk_full)
    assert tr.save(str(path)) is None
    assert "NOT saved" in tr.message and "No space left" in tr.message
    assert load_checkpoint(path).step == 2
    assert sorted(os.listdir(tmp_path)) == ["run.npz"]

    monkeypatch.setattr(checkpoint, "_before_replace", None)
    assert tr.save(str(path)) == str(path)
    assert load_checkpoint(path).step == 5 and tr.saved_step == 5


def test_trainer_save_without_path_or_folder(make_trainer, tmp_path):
    tr = make_trainer()
    assert tr.save() is None and "no checkpoint path" in tr.message
    assert tr.save(str(tmp_path / "gone" / "c.npz")) is None
    assert "NOT saved" in tr.message


def test_the_change_log_survives_a_resume(make_trainer, tmp_path):
    """The loss plot marks every change at its step (snapshot.changes): a resumed run must still have them."""
    tr = make_trainer(lr=0.01)
    _run(tr, 3)
    tr.set_hyper(lr=0.02)
    _run(tr, 2)
    tr.set_hyper(clip_mode="element", clip=1.0)
    tr.set_hyper(lr=-1.0)  # refused: also in the log
    _run(tr, 1)
    before = list(tr.changes)
    assert [c.step for c in before] == [3, 5, 5] and "refused" in before[-1].text
    save_checkpoint(tmp_path / "c.npz", tr)
    ck = load_checkpoint(tmp_path / "c.npz")
    assert ck.header["changes"] == [dataclasses.asdict(c) for c in before]  # plain dicts, one per entry
    assert ck.header["changes"][0]["step"] == 3 and ck.header["changes"][0]["text"] == "lr 0.01 → 0.02"
    resumed = resume_trainer(ck, tr.corpus)
    assert list(resumed.changes) == before
    assert resumed.snapshot().changes == tuple(before)
    _run(resumed, 1)
    resumed.set_hyper(lr=0.005)
    assert [c.step for c in resumed.changes] == [3, 5, 5, 7]


def test_change_entries_with_fields_this_version_does_not_know_still_load(make_trainer, tmp_path):
    tr = make_trainer()
    _run(tr, 1)
    arrays, header = checkpoint._arrays_and_header(tr)
    header["changes"] = [{"step": 1, "text": "lr 0.005 → 0.01", "kind": "hyper"}, {"step": 1, "text": "paused"}]
    np.savez(tmp_path / "c.npz", __header__=np.frombuffer(json.dumps(header).encode(), dtype=np.uint8), **arrays)
    resumed = resume_trainer(load_checkpoint(tmp_path / "c.npz"), tr.corpus)
    assert [(c.step, c.text) for c in resumed.changes] == [(1, "lr 0.005 → 0.01"), (1, "paused")]
    header["changes"] = [{"step": -3, "text": "bad"}]
    np.savez(tmp_path / "bad.npz", __header__=np.frombuffer(json.dumps(header).encode(), dtype=np.uint8), **arrays)
    with pytest.raises(CheckpointError, match="change step"):
        resume_trainer(load_checkpoint(tmp_path / "bad.npz"), tr.corpus)


def test_the_change_log_survives_a_resume_from_the_command_line(corpus_file, tmp_path, capsys):
    from rnntui.cli import run

    ck = tmp_path / "run.npz"
    small = ["--hidden-size", "16", "--batch-size", "2", "--seq-length", "10"]
    assert run([str(corpus_file), "--headless", "--max-steps", "4", *small, "--checkpoint", str(ck)]) == 0
    first = [(c["step"], c["text"]) for c in load_checkpoint(ck).header["changes"]]
    assert (4, "finished: reached 4 steps") in first
    assert run([str(corpus_file), "--headless", "--max-steps", "6", "--resume", str(ck)]) == 0
    after = [(c["step"], c["text"]) for c in load_checkpoint(ck).header["changes"]]
    assert after[:len(first)] == first and (6, "finished: reached 6 steps") in after
