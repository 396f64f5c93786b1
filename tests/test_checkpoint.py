"""Checkpoints: exact resume, refusal of files that are not ours, atomic writes."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np
import pytest

from rnntui import checkpoint
from rnntui.checkpoint import CheckpointError, check_writable
from rnntui.checkpoint import load as load_checkpoint
from rnntui.checkpoint import save as save_checkpoint
from rnntui.config import ConfigError, HyperParams
from rnntui.corpus import Corpus
from rnntui.monitor import History
from rnntui.state import ChangeKind, TrainerState
from rnntui.trainer import Trainer, resume_trainer

from .data.make_checkpoint import CHANGED, FIRST_STEPS, TEXT, THEN_STEPS

DATA = Path(__file__).parent / "data"
#: The fields of a TrainerState that belong to this session only (never in a file).
SESSION = ("status", "message", "error", "saved_step", "saved_path", "claimed", "grad_stats", "reach", "discarded",
           "reaches", "gates")
#: Those that differ between two runs of the same training: wall-clock time, and each run's own id.
OF_THE_RUN = ("elapsed", "run_id")


def assert_same_state(a: TrainerState, b: TrainerState, leave_out=SESSION + OF_THE_RUN) -> None:
    """Every field of ``a`` and ``b`` (but ``leave_out``) equal, arrays bit for bit, dicts key for key."""
    for f in dataclasses.fields(TrainerState):
        if f.name not in leave_out:
            _assert_equal(getattr(a, f.name), getattr(b, f.name), f.name)


def _assert_equal(x, y, where: str) -> None:
    if isinstance(x, dict) or isinstance(y, dict):
        assert isinstance(x, dict) and isinstance(y, dict) and set(x) == set(y), where
        for k in x:
            _assert_equal(x[k], y[k], f"{where}.{k}")
    elif isinstance(x, list) and x and isinstance(x[0], tuple):  # the carried state: per layer a tuple of arrays
        assert isinstance(y, list) and len(x) == len(y), where
        for k, (a, b) in enumerate(zip(x, y, strict=True)):
            assert len(a) == len(b), where
            for j, (p, q) in enumerate(zip(a, b, strict=True)):
                _assert_equal(p, q, f"{where}[{k}][{j}]")
    elif isinstance(x, np.ndarray) or isinstance(y, np.ndarray):
        assert np.shape(x) == np.shape(y), where
        np.testing.assert_array_equal(x, y, err_msg=where)
    else:
        assert x == y, where


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
    assert np.array_equal(resumed.monitor.state_dict()["x"], straight.monitor.state_dict()["x"])
    assert resumed.loss == straight.loss and resumed.val_loss == straight.val_loss
    assert resumed.samples[-1] == straight.samples[-1]
    assert resumed.chars_seen == straight.chars_seen
    assert resumed.grad_stats.sigma_max == straight.grad_stats.sigma_max


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
    with pytest.raises(CheckpointError, match=r"^metrics path is a directory: .*metrics\.jsonl$"):
        check_writable(tmp_path, "metrics", "metrics.jsonl", replaced=False)


def test_check_writable_appended_file_needs_only_itself(tmp_path, monkeypatch):
    """An existing file that is appended to passes in a folder that takes no new files; a replaced one does not."""
    (tmp_path / "m.jsonl").write_text("old\n")

    def read_only_folder(*a, **k):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("tempfile.mkstemp", read_only_folder)
    assert check_writable(tmp_path / "m.jsonl", "metrics", replaced=False) == tmp_path / "m.jsonl"
    with pytest.raises(CheckpointError, match="cannot write to checkpoint folder .*Permission denied"):
        check_writable(tmp_path / "m.jsonl")
    with pytest.raises(CheckpointError, match="cannot write to metrics folder"):
        check_writable(tmp_path / "new.jsonl", "metrics", replaced=False)


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
    arrays, header = checkpoint._arrays_and_header(tr.state_dict())
    header["changes"] = [{"step": 1, "text": "lr 0.005 → 0.01", "kind": "set", "colour": "red"},
                         {"step": 1, "text": "paused"}]
    np.savez(tmp_path / "c.npz", __header__=np.frombuffer(json.dumps(header).encode(), dtype=np.uint8), **arrays)
    resumed = resume_trainer(load_checkpoint(tmp_path / "c.npz"), tr.corpus)
    assert [(c.step, c.text) for c in resumed.changes] == [(1, "lr 0.005 → 0.01"), (1, "paused")]
    assert [c.kind for c in resumed.changes] == [ChangeKind.SET, ChangeKind.NOTE]  # no kind: a plain note
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


# -- the state, part by part -------------------------------------------------------------------------------


def _small_histories(monkeypatch):
    """Histories of 8 points, so that a few steps fill them and later points gather several steps each."""
    monkeypatch.setattr(History.__init__, "__defaults__", (8,))


CLIPPING = dict(clip_mode="global", clip=5.0, lr=0.05)  # fires on some steps and not on others (‖g‖ 3…8)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_state_dict_and_load_state_dict_go_on_exactly(make_trainer, short_text, monkeypatch, dtype):
    """N steps, state_dict, load it into a fresh trainer, M steps == N + M steps: every part of the state bit for
    bit, also what the monitor carries (σmax estimate reused on odd steps, the clip's window) and the partly
    gathered points of the histories."""
    _small_histories(monkeypatch)
    N, M = 18, 9  # the first step after the hand-over is odd: it reuses the σmax estimate handed over
    kw = dict(text=short_text, dtype=dtype, optimizer="adam", sample_every=5, val_every=4, sample_length=8,
              **CLIPPING)
    straight = make_trainer(**kw)
    _run(straight, N + M)
    first = make_trainer(**kw)
    _run(first, N)
    state = first.state_dict()
    assert any(h["pending"] for h in state.history.values())  # a point was half gathered at the hand-over
    fired = state.monitor["fired"]
    assert any(fired) and not all(fired)
    then = make_trainer(**kw)
    then.load_state_dict(state)
    assert_same_state(then.state_dict(), state, leave_out=())
    _run(then, M)
    assert_same_state(then.state_dict(), straight.state_dict())
    assert then.grad_stats.sigma_max == straight.grad_stats.sigma_max
    assert then.grad_stats.clip_rate == straight.grad_stats.clip_rate
    assert 0 < then.grad_stats.clip_rate < 1


def test_exact_resume_through_a_file_keeps_the_monitor_and_the_histories(make_trainer, short_text, tmp_path,
                                                                         monkeypatch):
    """The same through a checkpoint file: the σmax estimate, the clip's window and the histories' partly
    gathered points are saved too (before, a resumed run's clip rate started from an empty window)."""
    _small_histories(monkeypatch)
    N, M = 18, 9
    kw = dict(text=short_text, optimizer="adam", **CLIPPING)
    straight = make_trainer(**kw)
    _run(straight, N + M)
    first = make_trainer(**kw)
    _run(first, N)
    save_checkpoint(tmp_path / "run.npz", first)
    resumed = resume_trainer(load_checkpoint(tmp_path / "run.npz"), first.corpus)
    _run(resumed, M)
    assert resumed.grad_stats.clip_rate == straight.grad_stats.clip_rate and resumed.grad_stats.clip_window == N + M
    assert resumed.grad_stats.sigma_max == straight.grad_stats.sigma_max
    for name, hist in straight.history.items():
        got = resumed.history[name].arrays()
        if name == "reach_factor":  # measured at once after a resume from a file, too (a file keeps no reach)
            extra = got[0] == N + 1
            assert extra.sum() == 1 and N + 1 not in hist.arrays()[0]
            got = (got[0][~extra], got[1][~extra])
        for a, b in zip(got, hist.arrays(), strict=True):
            np.testing.assert_array_equal(a, b, err_msg=name)


def test_the_file_holds_what_each_part_gives(make_trainer, tmp_path):
    """The checkpoint writes the optimizer's, the monitor's, the stream's and the histories' own state and reads
    the same back; the session's parts stay out of the file."""
    tr = make_trainer(optimizer="adam", **CLIPPING, sample_every=2, sample_length=5)
    _run(tr, 5)
    tr.claimed.update({"/elsewhere.npz": (1, 2, 3)})
    path = save_checkpoint(tmp_path / "c.npz", tr)
    back = load_checkpoint(path).state()
    _assert_equal(back.optimizer, tr.optimizer.state_dict(), "optimizer")
    _assert_equal(back.monitor, tr.monitor.state_dict(), "monitor")
    _assert_equal(back.history, {name: h.state() for name, h in tr.history.items()}, "history")
    assert back.stream == tr.stream.state() and back.rng == tr.rng.bit_generator.state
    assert_same_state(back, tr.state_dict(), leave_out=SESSION)
    assert back.claimed == {} and back.status is None and back.grad_stats is None  # not the file's to keep
    assert (back.saved_step, back.saved_path) == (5, str(path))  # the file is a save of its own step


def test_state_dict_is_a_copy(make_trainer):
    tr = make_trainer(optimizer="adam")
    _run(tr, 2)
    state = tr.state_dict()
    before = tr.state_dict()
    for a in (state.params["w"], state.optimizer["state"]["m"]["w"], state.h[0][0], state.monitor["x"],
              state.history["loss"]["values"]):
        a[...] = 7.0
    assert_same_state(tr.state_dict(), before, leave_out=())


def test_a_state_that_does_not_fit_is_refused_and_the_optimizer_left_as_it_was(make_trainer):
    tr = make_trainer(optimizer="adam")
    _run(tr, 2)
    opt = tr.optimizer.state_dict()
    wrong = {**opt, "state": {**opt["state"], "m": {**opt["state"]["m"], "w": np.zeros(3)}}}
    with pytest.raises(ValueError, match="m.w has shape"):
        tr.optimizer.load_state_dict({**wrong, "t": 99})
    assert tr.optimizer.t == 2
    _assert_equal(tr.optimizer.state_dict(), opt, "optimizer")
    with pytest.raises(ValueError, match="holds"):
        tr.optimizer.load_state_dict({**opt, "state": {"m": opt["state"]["m"]}})  # no s
    with pytest.raises(ValueError, match="power-iteration vector"):
        tr.monitor.load_state_dict({"x": np.zeros(5)})
    with pytest.raises(ValueError, match="other settings"):
        make_trainer(hidden_size=13).load_state_dict(tr.state_dict())
    with pytest.raises(ValueError, match="vocabulary"):
        make_trainer(text="just these letters " * 40).load_state_dict(tr.state_dict())


def test_loading_a_state_of_another_optimizer_starts_the_rule_fresh(make_trainer):
    tr = make_trainer(optimizer="adam")
    _run(tr, 3)
    other = make_trainer(optimizer="adam")
    other.load_state_dict(dataclasses.replace(tr.state_dict(), hyper=tr.hyper.replace(optimizer="momentum")))
    assert other.optimizer.name == "momentum" and other.optimizer.t == 0
    assert not other.optimizer.state["m"]["w"].any()
    _run(other, 1)  # and it updates the model's parameters
    assert other.optimizer.t == 1 and not np.array_equal(other.model.params["w"], tr.model.params["w"])


# -- files written by earlier versions (tests/data/make_checkpoint.py) --------------------------------------


@pytest.mark.parametrize("commit", ["2cb3733", "0329c4a"])
def test_a_checkpoint_written_by_an_earlier_version_resumes(commit, tmp_path):
    """2cb3733: the format as the trainer wrote it field by field; 0329c4a: from before run ids and the saved
    change log. What they hold is read back, and training goes on from it as if it had never stopped."""
    path = DATA / f"checkpoint-{commit}.npz"
    with np.load(path) as z:  # read without the module, to compare with what it reads
        raw = {k: z[k] for k in z.files}
    header = json.loads(raw.pop("__header__").tobytes().decode())
    corpus = Corpus.from_text(TEXT, val_fraction=0.1)
    ck = load_checkpoint(path)
    resumed = resume_trainer(ck, corpus)
    steps = FIRST_STEPS + THEN_STEPS
    assert resumed.step == header["step"] == steps and resumed.optimizer.t == steps
    for k, p in resumed.model.params.items():
        np.testing.assert_array_equal(p, raw[f"param.{k}"], err_msg=k)
    for slot, per_param in resumed.optimizer.state.items():
        for k, a in per_param.items():
            np.testing.assert_array_equal(a, raw[f"opt.{slot}.{k}"], err_msg=f"{slot}.{k}")
    np.testing.assert_array_equal(resumed.h[0][0], raw["h"].T)  # version 1 held the lecture's (H, B) columns
    np.testing.assert_array_equal(resumed.monitor.state_dict()["x"], raw["monitor.x"][None])  # its one block's
    assert (resumed.config.cell, resumed.config.layers, resumed.config.dropout) == ("rnn", 1, 0.0)
    assert resumed.stream.state() == header["stream"] and resumed.rng.bit_generator.state == header["rng"]
    assert resumed.hyper == HyperParams(**header["hyper"]) and resumed.hyper.lr == CHANGED["lr"]
    assert (resumed.loss, resumed.val_loss, resumed.val_step) == (header["loss"], header["val_loss"],
                                                                   header["val_step"])
    for name, hist in resumed.history.items():
        np.testing.assert_array_equal(hist.arrays()[1], raw[f"hist.{name}.values"], err_msg=name)
    assert [(s.step, s.text) for s in resumed.samples] == [(s, x) for s, _, x in header["samples"]]
    if "run_id" in header:
        assert resumed.run_id == header["run_id"]
        assert [(c.step, c.text) for c in resumed.changes] == [(c["step"], c["text"]) for c in header["changes"]]
        assert len(resumed.changes) == 2 and {c.kind for c in resumed.changes} == {ChangeKind.NOTE}
    else:
        assert len(resumed.run_id) == 16 and not resumed.changes  # the run's own new id; no log was kept
    # saved again by this version, it reads back the same
    again = load_checkpoint(save_checkpoint(tmp_path / "again.npz", resumed)).state()
    assert_same_state(again, resumed.state_dict(), leave_out=SESSION)

    # the run goes on as if it had never stopped (to 1e-9: a later version may order its arithmetic otherwise;
    # a part of the state lost, the optimizer's moments or the data position, differs by far more)
    straight = Trainer(corpus, ck.config)
    _run(straight, FIRST_STEPS)
    straight.set_hyper(**CHANGED)
    _run(straight, THEN_STEPS + 6)
    _run(resumed, 6)
    for k, p in straight.model.params.items():
        np.testing.assert_allclose(resumed.model.params[k], p, rtol=1e-9, atol=1e-12, err_msg=k)
    assert resumed.stream.state() == straight.stream.state()
    assert resumed.rng.bit_generator.state == straight.rng.bit_generator.state
    assert resumed.loss == pytest.approx(straight.loss, rel=1e-9)
