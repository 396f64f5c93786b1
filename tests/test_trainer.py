"""Trainer: learning, carried state, the control channel, divergence, crashes, snapshots."""

from __future__ import annotations

import dataclasses
import math
import threading
import time

import numpy as np
import pytest

from rnntui import Corpus, HyperParams, Pause, Resume, SampleNow, SaveCheckpoint, Set, Stop, TrainConfig, Trainer
from rnntui.checkpoint import load as load_checkpoint
from rnntui.corpus import BatchStream


def wait_for(predicate, timeout: float = 10.0, interval: float = 0.005):
    """Poll ``predicate`` until it is truthy; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s")


class Runner:
    """``trainer.run`` in a thread, with its return value kept."""

    def __init__(self, trainer, **kwargs):
        self.trainer = trainer
        self.result = None
        self.thread = threading.Thread(target=self._target, kwargs=kwargs, daemon=True)
        self.thread.start()

    def _target(self, **kwargs):
        self.result = self.trainer.run(**kwargs)

    def snap(self):
        return self.trainer.latest

    def wait(self, predicate, timeout=10.0):
        """The first published snapshot for which ``predicate`` holds."""

        def check():
            snap = self.snap()
            return snap if snap is not None and predicate(snap) else None

        return wait_for(check, timeout)

    def stop(self, timeout=10.0):
        self.trainer.send(Stop())
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the training thread did not stop"
        return self.result


# -- learning ------------------------------------------------------------------------------------------


def test_loss_falls_with_default_settings(text):
    corpus = Corpus.from_text(text)
    cfg = TrainConfig(hidden_size=32, hyper=HyperParams(sample_every=0, val_every=0))
    assert cfg.hyper.optimizer == "adam"
    tr = Trainer(corpus, cfg)
    ln_v = math.log(corpus.vocab.size)
    assert tr.validate() == pytest.approx(ln_v, abs=0.15)
    losses = []
    for _ in range(300):
        assert tr.train_step() is not None
        losses.append(tr.loss)
    assert np.mean(losses[:5]) == pytest.approx(ln_v, abs=0.15)
    assert np.mean(losses[-20:]) < 0.5 * ln_v  # typically ≈ 0.35·ln V after 300 steps
    assert tr.validate() < 0.6 * ln_v  # held-out text too: it learnt words, not only the training rows
    assert tr.chars_seen == 300 * 32 * 25


def test_hidden_state_is_carried_and_reset_on_wrap(make_trainer, short_text, monkeypatch):
    tr = make_trainer(text=short_text, batch_size=3, seq_length=8)
    seen = []
    original = tr.model.loss_and_grads

    def spy(inputs, targets, h0):
        out = original(inputs, targets, h0)
        seen.append((inputs.copy(), np.array(h0), np.array(out[2])))  # (layers, states, B, H)
        return out

    monkeypatch.setattr(tr.model, "loss_and_grads", spy)
    per_epoch = tr.stream.batches_per_epoch
    for _ in range(2 * per_epoch + 2):
        tr.train_step()
    assert not seen[0][1].any()
    wraps = 0
    for k in range(1, len(seen)):
        inputs, h0, _ = seen[k]
        if k % per_epoch == 0:  # a new epoch: the streams start again, so the state starts from zero
            assert not h0.any()
            np.testing.assert_array_equal(inputs, seen[0][0])
            wraps += 1
        else:
            np.testing.assert_array_equal(h0, seen[k - 1][2])  # the previous batch's last state
    assert wraps == 2 and tr.stream.epoch == 2


def test_validation_loss_per_character(make_trainer, reference):
    tr = make_trainer(hidden_size=6, batch_size=2, seq_length=7)
    for _ in range(3):
        tr.train_step()
    val = tr.corpus.val[: tr.config.val_chars + 1]
    B = min(2, (len(val) - 1) // 7)
    s = BatchStream(val, B, 7)
    total = chars = 0.0
    h = np.zeros((6, B))
    for _ in range(s.batches_per_epoch):
        x, y, _ = s.next()
        loss, _, h, *_ = reference(tr.model.params, x, y, h)
        total += loss * B
        chars += x.size
    assert tr.validate() == pytest.approx(total / chars, rel=1e-9)
    assert tr.val_step == 3 and tr.history["val_loss"].last() == tr.val_loss


def test_run_to_max_steps_in_this_thread(make_trainer):
    tr = make_trainer(sample_every=2, sample_length=5, val_every=3)
    published = []
    assert tr.run(max_steps=6, on_publish=published.append) == "finished"
    assert tr.step == 6
    assert [s.step for s in tr.samples] == [2, 4, 6]
    assert tr.val_step == 6
    assert published[-1].state == "finished" and published[-1].step == 6
    versions = [s.version for s in published]
    assert versions == sorted(set(versions))


# -- the control channel --------------------------------------------------------------------------------


def test_pause_resume_set_sample_stop_from_another_thread(make_trainer, tmp_path):
    tr = make_trainer(checkpoint_path=str(tmp_path / "c.npz"), sample_length=8)
    run = Runner(tr, start_paused=True)
    run.wait(lambda s: s.state == "paused")
    assert tr.step == 0

    tr.send(Resume())
    run.wait(lambda s: s.state == "running" and s.step >= 3)

    tr.send(Pause())
    snap = run.wait(lambda s: s.state == "paused")
    paused_at = tr.step
    assert snap.step == paused_at
    threading.Event().wait(0.15)
    assert tr.step == paused_at  # no steps while paused

    tr.send(Set({"lr": 0.0123, "clip_mode": "element", "clip": 2.5}))
    snap = run.wait(lambda s: s.hyper.lr == 0.0123)
    assert snap.hyper.clip_mode == "element" and snap.hyper.clip == 2.5
    assert tr.optimizer.lr == 0.0123
    assert any("lr" in c.text and "0.0123" in c.text for c in snap.changes)

    tr.send(Set({"lr": "not a number"}))
    snap = run.wait(lambda s: "refused" in s.message)
    assert snap.hyper.lr == 0.0123

    tr.send(SampleNow())
    snap = run.wait(lambda s: len(s.samples) == 1)
    assert snap.samples[0].step == paused_at and len(snap.samples[0].text) == 8

    tr.send(SaveCheckpoint())
    run.wait(lambda s: s.saved_step == paused_at)
    assert load_checkpoint(tmp_path / "c.npz").step == paused_at

    tr.send(Resume())
    run.wait(lambda s: s.step >= paused_at + 3)
    assert tr.grad_stats.clip_mode == "element"  # the new settings are used by the steps that follow
    assert run.stop() == "stopped"
    assert tr.latest.state == "stopped"


def test_stop_with_save(make_trainer, tmp_path):
    tr = make_trainer(checkpoint_path=str(tmp_path / "c.npz"))
    run = Runner(tr)
    run.wait(lambda s: s.step >= 2)
    tr.send(Stop(save=True))
    run.thread.join(10)
    assert run.result == "stopped"
    assert load_checkpoint(tmp_path / "c.npz").step == tr.step


def test_stop_event_and_resume_after_finish(make_trainer):
    tr = make_trainer()
    ev = threading.Event()
    run = Runner(tr, max_steps=3, stay_alive=True, stop_event=ev)
    run.wait(lambda s: s.state == "finished")
    assert tr.step == 3
    tr.send(Resume())  # after finishing, Resume trains on without a limit
    run.wait(lambda s: s.step >= 6)
    ev.set()
    run.thread.join(10)
    assert run.result == "stopped"


# -- divergence and crashes ------------------------------------------------------------------------------


def test_nan_gradient_diverges_naming_tensor_and_step_then_recovers(make_trainer, monkeypatch):
    tr = make_trainer(optimizer="adam", lr=0.01)
    original = tr.model.loss_and_grads
    params_at = {}  # parameters after n updates

    def poisoned(inputs, targets, h0):
        loss, grads, h, diag = original(inputs, targets, h0)
        if tr.step not in params_at:
            params_at[tr.step] = {k: p.copy() for k, p in tr.model.params.items()}
            if tr.step == 4:
                grads["w"][2, 1] = np.nan
        return loss, grads, h, diag

    monkeypatch.setattr(tr.model, "loss_and_grads", poisoned)
    run = Runner(tr)
    snap = run.wait(lambda s: s.state == "diverged")
    assert tr.step == 4
    assert "step 5" in snap.message and "non-finite gradient in w" in snap.message
    # the bad gradient is not applied, and the update that led to it is rolled back too
    assert "kept the parameters of step 3" in snap.message
    for k, p in tr.model.params.items():
        assert np.isfinite(p).all()
        np.testing.assert_array_equal(p, params_at[3][k])
    assert not np.any(tr.h)  # a fresh state for when training resumes
    threading.Event().wait(0.1)
    assert tr.step == 4  # it waits instead of training on

    tr.send(Set({"lr": 1e-3}))
    tr.send(Resume())
    run.wait(lambda s: s.state == "running" and s.step >= 8)
    assert tr.hyper.lr == 1e-3
    assert math.isfinite(tr.loss)
    assert all(np.isfinite(p).all() for p in tr.model.params.values())
    assert run.stop() == "stopped"


def _diverge_with_huge_lr(make_trainer):
    tr = make_trainer(optimizer="sgd", lr=1000, clip_mode="none", dtype="float32")
    for _ in range(50):
        if tr.train_step() is None:
            break
    return tr


@pytest.mark.filterwarnings("error::RuntimeWarning")  # no log(0), no overflow: the loss stays a number
def test_huge_learning_rate_diverges_with_finite_parameters(make_trainer):
    tr = _diverge_with_huge_lr(make_trainer)
    assert tr.state == "diverged"
    assert f"DIVERGED at step {tr.step + 1}" in tr.message
    assert all(np.isfinite(p).all() for p in tr.model.params.values())
    assert not np.any(tr.h)


@pytest.mark.filterwarnings("error::RuntimeWarning")
def test_training_continues_after_huge_lr_divergence(make_trainer):
    tr = _diverge_with_huge_lr(make_trainer)
    assert tr.state == "diverged"
    tr.apply(Set({"lr": 1e-3, "clip_mode": "global"}))
    tr.apply(Resume())
    assert tr.state == "running"
    for _ in range(5):
        assert tr.train_step() is not None, tr.message
        assert math.isfinite(tr.loss)


def test_non_finite_loss_diverges_and_rolls_back_the_last_update(make_trainer, monkeypatch):
    tr = make_trainer()
    initial = {k: p.copy() for k, p in tr.model.params.items()}
    tr.train_step()
    original = tr.model.loss_and_grads
    monkeypatch.setattr(tr.model, "loss_and_grads", lambda *a: (float("nan"),) + original(*a)[1:])
    assert tr.train_step() is None
    assert tr.state == "diverged" and "step 2: non-finite loss" in tr.message
    assert "kept the parameters of step 0" in tr.message
    for k, p in tr.model.params.items():  # the update that produced a non-finite loss is undone
        np.testing.assert_array_equal(p, initial[k])


def test_non_finite_update_is_undone(make_trainer, monkeypatch):
    tr = make_trainer(optimizer="sgd", lr=0.1)
    tr.train_step()
    before = {k: p.copy() for k, p in tr.model.params.items()}
    original = tr.optimizer.step

    def bad_step(params, grads):
        deltas = original(params, grads)
        params["v"][0, 0] = np.inf
        return deltas

    monkeypatch.setattr(tr.optimizer, "step", bad_step)
    assert tr.train_step() is None
    assert tr.state == "diverged" and "non-finite parameter v" in tr.message and "step 2" in tr.message
    for k, p in tr.model.params.items():
        np.testing.assert_array_equal(p, before[k])
    assert tr.step == 1


def test_exception_in_a_step_crashes_but_still_serves_commands(make_trainer, monkeypatch, tmp_path):
    tr = make_trainer(checkpoint_path=str(tmp_path / "c.npz"))

    def boom(*args, **kwargs):
        raise RuntimeError("kaboom")

    monkeypatch.setattr(tr.model, "loss_and_grads", boom)
    run = Runner(tr)
    snap = run.wait(lambda s: s.state == "crashed")
    assert "kaboom" in snap.message and "Traceback" in snap.error and "RuntimeError" in snap.error
    tr.send(SaveCheckpoint())
    run.wait(lambda s: s.saved_step == 0)
    assert run.stop() == "stopped"


# -- snapshots -----------------------------------------------------------------------------------------


def test_snapshot_is_immutable_and_holds_copies(make_trainer):
    tr = make_trainer()
    for _ in range(4):
        tr.train_step()
    snap = tr.snapshot()
    with pytest.raises(dataclasses.FrozenInstanceError):
        snap.step = 99
    with pytest.raises(dataclasses.FrozenInstanceError):
        snap.hyper.lr = 1.0
    steps, losses = snap.history["loss"]
    assert list(steps) == [1, 2, 3, 4] and losses[-1] == tr.loss
    steps[:] = -1
    losses[:] = -1
    assert tr.history["loss"].arrays()[1][0] != -1
    for _ in range(3):
        tr.train_step()
    assert len(snap.history["loss"][0]) == 4 and snap.step == 4  # an old snapshot does not change
    assert tr.snapshot().version == snap.version + 1
    assert snap.grad_stats.step == 4 and snap.vocab_size == tr.corpus.vocab.size


def test_sample_continues_the_first_stream(make_trainer):
    tr = make_trainer(hidden_size=8)
    for _ in range(5):
        tr.train_step()
    nxt = int(tr.corpus.train[tr.stream.position])  # the last target of stream 0, not yet fed to h
    expected = tr.model.sample(tr.model.state_of(tr.h, 0), nxt, 20, 0)
    assert tr.sample(20, temperature=0).text == expected
