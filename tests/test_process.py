"""The trainer in a child process (rnntui.process): same results, same commands, nothing lost."""

from __future__ import annotations

import json
import os
import signal
import threading
from concurrent.futures import Future

import numpy as np
import pytest

from rnntui import checkpoint
from rnntui.headless import MetricsLog
from rnntui.process import TrainerProcess, _start_child
from rnntui.trainer import CRASHED, FINISHED, PAUSED, STOPPED, Inspect, Pause, Resume, SaveCheckpoint, Set, Stop

from .conftest import wait_until as wait
from .test_checkpoint import assert_same_state


def run_in_thread(runner, **kw):
    out: dict = {}
    th = threading.Thread(target=lambda: out.setdefault("state", runner.run(**kw)), daemon=True)
    th.start()
    return th, out


def test_training_in_the_child_is_the_same_as_in_process(make_trainer):
    kw = dict(optimizer="adam", clip_mode="global", clip=3.0, sample_every=7, sample_length=6, val_every=5)
    here, there = make_trainer(**kw), make_trainer(**kw)
    for t in (here, there):
        t.train_step()  # a step in this process first: the child starts from the state it is handed
        t.claimed.update({"/elsewhere.npz": (1, 2, 3)})
    assert here.run(max_steps=25) == FINISHED
    runner = TrainerProcess(there)
    assert runner.run(max_steps=25) == FINISHED
    assert there.step == here.step == 25 and there.chars_seen == here.chars_seen
    for k in here.model.params:  # the child's parameters came back, bit for bit
        np.testing.assert_array_equal(there.model.params[k], here.model.params[k])
    # and so did every other part: optimizer, monitor, stream, RNG, histories, samples, change log, session
    assert_same_state(there.state_dict(), here.state_dict(), leave_out=("elapsed", "run_id", "grad_stats", "reach"))
    assert there.grad_stats.sigma_max == here.grad_stats.sigma_max
    assert there.grad_stats.clip_rate == here.grad_stats.clip_rate
    assert there.reach.step == here.reach.step and there.reach.factor == here.reach.factor
    assert there.claimed == {"/elsewhere.npz": (1, 2, 3)} and there.samples and there.val_step == 25
    assert runner.latest.step == 25 and runner.latest.state == FINISHED
    # and the parameters the optimizer updates are still the ones the model uses (packing intact)
    there.train_step()
    here.train_step()
    for k in here.model.params:
        np.testing.assert_array_equal(there.model.params[k], here.model.params[k])


def test_commands_cross_the_pipe_and_the_final_state_comes_back(make_trainer, tmp_path):
    trainer = make_trainer(checkpoint_path=str(tmp_path / "run.npz"))
    runner = TrainerProcess(trainer)
    runner.send(Set({"lr": 0.002}))  # queued before the child exists
    th, out = run_in_thread(runner, start_paused=True, stay_alive=True)
    wait(lambda: runner.latest is not None and runner.latest.hyper.lr == 0.002, what="the queued Set")
    assert runner.latest.state == PAUSED and runner.latest.step == 0
    runner.send(Resume())
    wait(lambda: runner.latest.step >= 20, what="training in the child")
    runner.send(Pause())
    wait(lambda: runner.latest.state == PAUSED, what="pause")
    runner.send(SaveCheckpoint())
    wait(lambda: runner.latest.saved_step == runner.latest.step, what="save")
    runner.send(Set({"optimizer": "rmsprop"}))
    runner.send(Stop())
    th.join(30)
    assert out["state"] == STOPPED and trainer.state == STOPPED
    assert trainer.step == runner.latest.step and trainer.saved_step == trainer.step
    assert trainer.hyper.lr == 0.002 and trainer.hyper.optimizer == "rmsprop"
    assert trainer.optimizer.name == "rmsprop"
    assert any("resumed" in c.text for c in trainer.changes)
    assert checkpoint.load(tmp_path / "run.npz").step == trainer.step  # written by the child


def test_stop_event_stops_the_child_without_saving(make_trainer, tmp_path):
    trainer = make_trainer(checkpoint_path=str(tmp_path / "run.npz"))
    runner = TrainerProcess(trainer)
    stop = threading.Event()
    th, out = run_in_thread(runner, stop_event=stop)
    wait(lambda: runner.latest is not None and runner.latest.step > 5, what="steps")
    stop.set()
    th.join(30)
    assert out["state"] == STOPPED and trainer.step > 5
    assert not (tmp_path / "run.npz").exists()


def test_inspect_is_answered_across_the_pipe(make_trainer):
    trainer = make_trainer()
    runner = TrainerProcess(trainer)
    th, _ = run_in_thread(runner, start_paused=True, stay_alive=True)
    future: Future = Future()
    runner.send(Inspect(future))
    ins = future.result(timeout=30)
    local = trainer.inspection()
    assert ins.step == 0 and ins.model.params["w"].dtype == np.float64
    np.testing.assert_array_equal(ins.model.params["w"], local.model.params["w"])
    np.testing.assert_array_equal(ins.inputs, local.inputs)
    # the model that came through the pipe computes what the local one does (the derivation screen uses it)
    there = ins.model.loss_and_grads(ins.inputs, ins.targets, ins.h0)
    here = local.model.loss_and_grads(local.inputs, local.targets, local.h0)
    assert there[0] == pytest.approx(here[0], rel=1e-12)
    for k in here[1]:
        np.testing.assert_allclose(there[1][k], here[1][k], rtol=1e-10, atol=1e-14)
    runner.send(Stop())
    th.join(30)
    late: Future = Future()
    runner.send(Inspect(late))  # nobody is there to answer: an error, not a hang
    with pytest.raises(RuntimeError):
        late.result(timeout=5)


def test_metrics_are_written_by_the_child(make_trainer, tmp_path):
    trainer = make_trainer()
    path = tmp_path / "m.jsonl"
    assert TrainerProcess(trainer).run(max_steps=20, on_step=MetricsLog(str(path), every=5)) == FINISHED
    steps = [json.loads(line)["step"] for line in path.read_text().splitlines()]
    assert steps == [5, 10, 15, 20]


def test_a_killed_child_is_reported_and_nothing_is_saved_over(make_trainer, tmp_path):
    trainer = make_trainer(checkpoint_path=str(tmp_path / "run.npz"))
    runner = TrainerProcess(trainer)
    th, out = run_in_thread(runner)
    wait(lambda: runner.latest is not None and runner.latest.step > 5, what="steps")
    os.kill(runner.pid, signal.SIGKILL)
    th.join(30)
    assert out["state"] == CRASHED
    snap = runner.latest
    assert snap.state == CRASHED and "killed by SIGKILL" in snap.error
    assert "ended unexpectedly" in snap.message and "CRASHED" in snap.changes[-1].text
    assert trainer.step == 0 and trainer.saved_step is None  # the view's copy was not advanced
    assert runner.exitcode == -signal.SIGKILL


def test_an_orphaned_child_saves_and_exits(make_trainer, tmp_path):
    """The view's process dies (kill -9, a crash): the child sees the pipe close, saves and ends."""
    trainer = make_trainer(checkpoint_path=str(tmp_path / "run.npz"))
    conn, proc, errors = _start_child()
    conn.send({"corpus": trainer.corpus, "config": trainer.config,
               "kwargs": {"checkpoint_path": trainer.checkpoint_path, "checkpoint_every": 0,
                          "checkpoint_seconds": 0.0, "publish_interval": 0.01},
               "state": trainer.state_dict(), "on_step": None, "rescue_path": None,
               "run": {"max_steps": None, "start_paused": False, "stay_alive": True}})
    step = 0
    while step < 10:
        kind, *rest = conn.recv()
        if kind == "snapshot":
            step = rest[0].step
    conn.close()
    assert proc.wait(30) == 0
    errors.close()
    saved = checkpoint.load(tmp_path / "run.npz")
    assert saved.step >= 10


def test_an_orphaned_child_without_a_checkpoint_saves_to_the_rescue_path(make_trainer, tmp_path):
    trainer = make_trainer()
    rescue = tmp_path / "rescue.npz"
    conn, proc, errors = _start_child()
    conn.send({"corpus": trainer.corpus, "config": trainer.config,
               "kwargs": {"checkpoint_path": None, "checkpoint_every": 0, "checkpoint_seconds": 0.0,
                          "publish_interval": 0.01},
               "state": trainer.state_dict(), "on_step": None, "rescue_path": str(rescue),
               "run": {"max_steps": None, "start_paused": False, "stay_alive": True}})
    while (msg := conn.recv())[0] != "snapshot" or msg[1].step < 5:
        pass
    conn.close()
    assert proc.wait(30) == 0
    errors.close()
    assert checkpoint.load(rescue).step >= 5


def test_other_attributes_are_the_wrapped_trainers(make_trainer):
    trainer = make_trainer()
    runner = TrainerProcess(trainer)
    assert runner.corpus is trainer.corpus and runner.checkpoint_path is None and runner.hyper is trainer.hyper
    assert runner.latest is None  # until the child publishes
