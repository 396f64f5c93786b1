"""Faults: keep working, lose nothing.

kill -9 in the middle of a checkpoint write, periodic checkpoints by steps and by time, divergence
end to end (headless), SIGINT/SIGHUP against a real process, exceptions in the trainer thread,
a closed stdout, a full disk for checkpoints and metrics.
"""

from __future__ import annotations

import io
import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

from rnntui import checkpoint
from rnntui.checkpoint import load as load_checkpoint
from rnntui.cli import run
from rnntui.headless import run_headless
from rnntui.runs.metrics import MetricsLog
from rnntui.trainer import CRASHED, SampleNow, Stop

from .conftest import wait_until as _wait_for

SMALL = ["--hidden-size", "16", "--batch-size", "2", "--seq-length", "10"]
POSIX = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


def _env():
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env.pop("PYTHONWARNINGS", None)
    return env


def _params_finite(ck) -> bool:
    return all(np.isfinite(ck.arrays[f"param.{k}"]).all() for k in ("u", "w", "v", "bh", "by"))


# -- kill -9 during a save ------------------------------------------------------------------------------------

CHILD = textwrap.dedent("""
    import os, sys, time
    from rnntui import checkpoint
    from rnntui.config import HyperParams, TrainConfig
    from rnntui.corpus import Corpus
    from rnntui.trainer import Trainer

    corpus_path, ck, ready = sys.argv[1:4]
    tr = Trainer(Corpus.load(corpus_path), TrainConfig(hidden_size=16, batch_size=2, seq_length=10,
                 hyper=HyperParams(sample_every=0, val_every=0)), checkpoint_path=ck)
    for _ in range(3):
        tr.train_step()
    assert tr.save() == ck                     # the previous, good checkpoint: step 3
    for _ in range(4):
        tr.train_step()

    def hang(tmp):                             # the new file is complete but not yet renamed
        open(ready, "w").write(tmp)
        time.sleep(600)

    checkpoint._before_replace = hang
    tr.save()
""")


@POSIX
def test_kill_9_during_a_save_keeps_the_previous_checkpoint(corpus_file, tmp_path):
    ck, ready = tmp_path / "run.npz", tmp_path / "ready"
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(corpus_file), str(ck), str(ready)], env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(lambda: ready.exists() and ready.read_text() or proc.poll() is not None, what="the save to start")
        assert proc.poll() is None, proc.stderr.read()
        before = ck.read_bytes()
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert ck.read_bytes() == before  # untouched by the interrupted save
    ckpt = load_checkpoint(ck)
    assert ckpt.step == 3 and _params_finite(ckpt)
    # the half-done save left only its own temporary file (hidden, named after the checkpoint)
    leftovers = sorted(p.name for p in tmp_path.iterdir() if p.name not in ("run.npz", "ready", corpus_file.name))
    assert len(leftovers) == 1 and leftovers[0].startswith(".run.npz.") and leftovers[0].endswith(".tmp")
    # and training resumes from it; the next save clears the leftover once it is clearly stale
    old = time.time() - 3600
    os.utime(tmp_path / leftovers[0], (old, old))
    assert run([str(corpus_file), "--headless", "--resume", str(ck), "--max-steps", "5"]) == 0
    assert load_checkpoint(ck).step == 5
    assert not (tmp_path / leftovers[0]).exists()


@POSIX
def test_kill_9_at_random_moments_of_a_run_saving_every_step(corpus_file, tmp_path):
    """No hook: a real run writing a checkpoint after every step is killed at random times; the
    checkpoint on disk is always a complete, loadable one."""
    ck = tmp_path / "run.npz"
    rng = np.random.default_rng(5)
    steps = []
    for _ in range(4):
        proc = subprocess.Popen([sys.executable, "-m", "rnntui", str(corpus_file), "--headless", "--hidden-size",
                                 "96", "--batch-size", "4", "--seq-length", "10", "--checkpoint", str(ck),
                                 "--checkpoint-every", "1", "--log-every", "1000",
                                 *(["--resume", str(ck)] if ck.exists() else [])],
                                env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=tmp_path)
        try:
            mtime = ck.stat().st_mtime_ns if ck.exists() else 0
            _wait_for(lambda m=mtime, p=proc: (ck.exists() and ck.stat().st_mtime_ns != m) or p.poll() is not None,
                      what="a first save")
            time.sleep(float(rng.uniform(0.05, 0.4)))
            proc.send_signal(signal.SIGKILL)
            proc.wait(30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        ckpt = load_checkpoint(ck)
        assert _params_finite(ckpt)
        steps.append(ckpt.step)
    assert steps == sorted(steps) and steps[-1] > steps[0], steps  # every resume went on from the last save


# -- periodic checkpoints ---------------------------------------------------------------------------------------


def test_checkpoint_every_n_steps(corpus_file, tmp_path, monkeypatch, capsys):
    saved = []
    real = checkpoint.save
    monkeypatch.setattr(checkpoint, "save", lambda path, tr: (saved.append(tr.step), real(path, tr))[1])
    ck = tmp_path / "c.npz"
    assert run([str(corpus_file), "--headless", "--max-steps", "12", *SMALL, "--checkpoint", str(ck),
                "--checkpoint-every", "5"]) == 0
    assert saved == [5, 10, 12]  # every 5 steps, and the end
    assert load_checkpoint(ck).step == 12


def test_checkpoint_every_n_seconds(make_trainer, tmp_path, monkeypatch):
    """By the clock, not by the step count: with a save due every 30 s and steps 7 s apart,
    saves land at the first step 30 s after the previous save."""
    import rnntui.trainer as trainer_module

    saved = []
    real = checkpoint.save
    monkeypatch.setattr(checkpoint, "save", lambda path, tr: (saved.append(tr.step), real(path, tr))[1])
    now = [1000.0]
    monkeypatch.setattr(trainer_module.time, "monotonic", lambda: now[0])
    tr = make_trainer(checkpoint_path=str(tmp_path / "c.npz"))
    tr.checkpoint_seconds = 30.0
    tr._last_save_time = now[0]
    for _ in range(12):
        now[0] += 7.0
        tr.train_step()
    assert saved == [5, 10]  # 35 s after the start, then 35 s after that save
    assert load_checkpoint(tmp_path / "c.npz").step == 10


def test_checkpoint_every_seconds_from_the_command_line(corpus_file, tmp_path, monkeypatch):
    import rnntui.trainer as trainer_module

    built = {}
    real_init = trainer_module.Trainer.__init__

    def spy(self, *a, **k):
        real_init(self, *a, **k)
        built["seconds"], built["steps"] = self.checkpoint_seconds, self.checkpoint_every

    monkeypatch.setattr(trainer_module.Trainer, "__init__", spy)
    assert run([str(corpus_file), "--headless", "--max-steps", "1", *SMALL, "--checkpoint", str(tmp_path / "c.npz"),
                "--checkpoint-every", "2m"]) == 0
    assert built == {"seconds": 120.0, "steps": 0}


def test_failed_periodic_save_does_not_stop_training_and_is_retried(make_trainer, tmp_path, monkeypatch):
    tr = make_trainer(checkpoint_path=str(tmp_path / "c.npz"))
    tr.checkpoint_every = 2

    def disk_full(tmp):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoint, "_before_replace", disk_full)
    for _ in range(4):
        assert tr.train_step() is not None
    assert sum("NOT saved" in c.text for c in tr.changes) == 2 and tr.saved_step is None
    assert os.listdir(tmp_path) == []  # no temporary file left behind either
    monkeypatch.setattr(checkpoint, "_before_replace", None)
    for _ in range(2):
        tr.train_step()
    assert tr.saved_step == 6 and load_checkpoint(tmp_path / "c.npz").step == 6


# -- divergence, headless, end to end --------------------------------------------------------------------------


def test_divergence_headless_then_lower_lr_and_resume(corpus_file, tmp_path, capsys):
    ck = tmp_path / "c.npz"
    rc = run([str(corpus_file), "--headless", *SMALL, "--lr", "1000", "--optimizer", "sgd", "--clip-mode", "none",
              "--checkpoint", str(ck), "--max-steps", "100", "--log-every", "1"])
    cap = capsys.readouterr()
    assert rc == 1
    line = next(line for line in cap.err.splitlines() if line.startswith("rnntui: training diverged"))
    assert "DIVERGED at step" in line and "largest gradient in " in line  # the step and the tensor
    assert "lower lr" in line and f"saved to {ck}" in line
    assert "Traceback" not in cap.err
    diverged = load_checkpoint(ck)
    assert _params_finite(diverged)
    # the user lowers lr (and turns clipping on) and resumes: training goes on, figures finite
    metrics = tmp_path / "m.jsonl"
    rc = run([str(corpus_file), "--headless", "--resume", str(ck), "--lr", "0.01", "--clip-mode", "global",
              "--max-steps", str(diverged.step + 20), "--log-every", "5", "--metrics", str(metrics)])
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    records = [json.loads(line) for line in metrics.read_text().splitlines()]
    assert records and all(math.isfinite(r["loss"]) for r in records)
    assert load_checkpoint(ck).step == diverged.step + 20


# -- signals against a real headless process -------------------------------------------------------------------


def signal_headless_run(corpus_file, tmp_path, ck, sig, meanwhile=None) -> tuple[int, str, str]:
    """Start ``rnntui CORPUS --headless --checkpoint ck``, wait for its first progress line, call
    ``meanwhile()``, send ``sig``; returns the exit code, stdout and stderr."""
    proc = subprocess.Popen([sys.executable, "-m", "rnntui", str(corpus_file), "--headless", *SMALL,
                             "--log-every", "1", "--checkpoint", str(ck)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(), cwd=tmp_path)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()
    try:
        _wait_for(lambda: any(x.startswith("step") for x in lines) or proc.poll() is not None, what="a step")
        if meanwhile is not None:
            meanwhile()
        proc.send_signal(sig)
        rc = proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(10)
    return rc, "".join(lines), proc.stderr.read()


@POSIX
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGHUP], ids=["SIGINT", "SIGHUP"])
def test_headless_signal_saves_and_exits_0(corpus_file, tmp_path, sig):
    ck = tmp_path / "sig.npz"
    rc, out, err = signal_headless_run(corpus_file, tmp_path, ck, sig)
    assert rc == 0, err
    assert f"{sig.name}: stopping" in out and "Traceback" not in err
    ckpt = load_checkpoint(ck)
    assert ckpt.step >= 1 and f"done: {ckpt.step} steps" in out


@POSIX
def test_closed_stdout_stops_saves_and_exits_1(corpus_file, tmp_path):
    """`rnntui … --headless | head -3`: the pipe closes; training stops, the checkpoint is saved, no traceback."""
    ck = tmp_path / "c.npz"
    proc = subprocess.Popen([sys.executable, "-m", "rnntui", str(corpus_file), "--headless", *SMALL,
                             "--log-every", "1", "--checkpoint", str(ck)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env(), cwd=tmp_path)
    try:
        for _ in range(3):
            proc.stdout.readline()
        proc.stdout.close()
        rc = proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    err = proc.stderr.read().decode()
    assert rc == 1, err
    assert "output closed" in err and "checkpoint saved" in err and "Traceback" not in err
    assert "Exception ignored" not in err
    assert load_checkpoint(ck).step >= 1


# -- exceptions inside the trainer thread -------------------------------------------------------------------


def _headless(trainer, **kw):
    out = io.StringIO()
    result = {}
    t = threading.Thread(target=lambda: result.setdefault(
        "rc", run_headless(trainer, out=out, install_signals=False, **kw)), daemon=True)
    t.start()
    t.join(30)
    assert not t.is_alive()
    return result["rc"], out.getvalue()


def test_headless_crash_saves_then_exits_1(make_trainer, tmp_path, monkeypatch, capsys):
    ck = tmp_path / "c.npz"
    tr = make_trainer(checkpoint_path=str(ck))
    real = tr.model.loss_and_grads

    def fails_at_step_4(*a):
        if tr.step == 3:
            raise RuntimeError("injected failure in step 4")
        return real(*a)

    monkeypatch.setattr(tr.model, "loss_and_grads", fails_at_step_4)
    rc, out = _headless(tr, max_steps=50)
    err = capsys.readouterr().err
    assert rc == 1
    assert "Traceback" in err and "injected failure in step 4" in err  # the trace, for a bug report
    assert err.strip().splitlines()[-1].startswith("rnntui: the trainer crashed")
    assert f"checkpoint saved to {ck}" in err
    assert load_checkpoint(ck).step == 3


def test_crash_halfway_through_an_update_rolls_the_parameters_back(make_trainer, monkeypatch):
    tr = make_trainer()
    for _ in range(2):
        tr.train_step()
    before = {k: p.copy() for k, p in tr.model.params.items()}

    def half_update(params, grads):
        params["u"] += 1.0  # one tensor changed, then the failure
        raise FloatingPointError("injected failure inside the update")

    monkeypatch.setattr(tr.optimizer, "step", half_update)
    th = threading.Thread(target=tr.run, kwargs={"max_steps": 5}, daemon=True)
    th.start()
    _wait_for(lambda: tr.state == CRASHED, what="the crash")
    tr.send(Stop())
    th.join(10)
    assert "injected failure inside the update" in tr.message and tr.step == 2
    for k, p in tr.model.params.items():
        assert np.array_equal(p, before[k]), k


def test_exception_in_a_command_or_an_observer_crashes_cleanly(make_trainer, monkeypatch):
    tr = make_trainer()

    def broken_sample(*a, **k):
        raise ValueError("injected failure in sample")

    monkeypatch.setattr(tr, "sample", broken_sample)
    tr.send(SampleNow())
    tr.send(Stop())
    assert tr.run(max_steps=100, start_paused=True) == "stopped"  # the loop kept serving commands
    assert any(c.text == "CRASHED: ValueError: injected failure in sample" for c in tr.changes)
    assert "Traceback" in tr.error

    tr2 = make_trainer()
    calls = []

    def observer(t):
        calls.append(t.step)
        if t.step == 2:
            raise OSError(5, "Input/output error")

    def stop_later():
        _wait_for(lambda: tr2.state == CRASHED, what="crash")
        tr2.send(Stop())

    threading.Thread(target=stop_later, daemon=True).start()
    assert tr2.run(max_steps=100, on_step=observer) == "stopped"
    assert calls == [1, 2] and tr2.step == 2 and "Input/output error" in (tr2.error or "")


def test_final_save_failure_is_retried_then_rescued(make_trainer, tmp_path, monkeypatch, capsys):
    folder, rescue = tmp_path / "ck", tmp_path / "rescue"
    folder.mkdir()
    rescue.mkdir()
    tr = make_trainer(checkpoint_path=str(folder / "c.npz"))

    def disk_full_in_the_checkpoint_folder(tmp):
        if os.path.dirname(tmp) == str(folder):
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoint, "_before_replace", disk_full_in_the_checkpoint_folder)
    monkeypatch.setattr("tempfile.gettempdir", lambda: str(rescue))
    rc, out = _headless(tr, max_steps=3)
    err = capsys.readouterr().err
    assert rc == 1
    assert "stopped at step 3" in err and "NOT saved" in err and "No space left" in err and "instead" in err
    assert os.listdir(folder) == []  # no temporary file left behind
    (saved,) = rescue.iterdir()
    assert load_checkpoint(saved).step == 3

    # nowhere to save at all: said plainly, still exit code 1, no traceback
    monkeypatch.setattr(checkpoint, "_before_replace", lambda tmp: (_ for _ in ()).throw(OSError(28, "Disk full")))
    tr2 = make_trainer(checkpoint_path=str(folder / "c.npz"))
    rc, out = _headless(tr2, max_steps=2)
    err = capsys.readouterr().err
    assert rc == 1 and "the training since the last save is lost" in err and "Traceback" not in err


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_metrics_on_a_full_disk_do_not_stop_training(corpus_file, tmp_path, capsys):
    rc = run([str(corpus_file), "--headless", "--max-steps", "6", *SMALL, "--log-every", "2", "--metrics",
              "/dev/full", "--checkpoint", str(tmp_path / "c.npz")])
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    assert cap.out.count("metrics NOT saved to /dev/full") == 1 and "done: 6 steps" in cap.out
    assert load_checkpoint(tmp_path / "c.npz").step == 6


def test_metrics_log_writes_every_n_steps_and_creates_nothing_before(make_trainer, tmp_path):
    path = tmp_path / "m.jsonl"
    log = MetricsLog(str(path), every=2)
    tr = make_trainer()
    assert not path.exists()
    for _ in range(5):
        tr.train_step()
        log(tr)
    log.close()
    assert [json.loads(x)["step"] for x in path.read_text().splitlines()] == [2, 4]


def test_stop_still_stops_when_its_save_raises(make_trainer, tmp_path, monkeypatch):
    tr = make_trainer(checkpoint_path=str(tmp_path / "c.npz"))

    def unexpected(path, trainer):
        raise MemoryError("injected failure while saving")

    monkeypatch.setattr(checkpoint, "save", unexpected)
    tr.send(Stop(save=True))
    assert tr.run(max_steps=100, start_paused=True) == CRASHED  # ended (a view waiting on it can exit)
    assert "injected failure while saving" in tr.message
