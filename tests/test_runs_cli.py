"""The runs on the command line: rnntui CORPUS --detach, runs [--json], stop [--no-save], --resume NAME, names,
refusals; and a served run that meets a full disk at a periodic save."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading

import numpy as np
import pytest

from rnntui import checkpoint
from rnntui.checkpoint import load as load_checkpoint
from rnntui.cli import run
from rnntui.runs import folders as F

from .conftest import wait_until
from .test_saves import _one_line_error

SMALL = ["--hidden-size", "16", "--batch-size", "2", "--seq-length", "10", "--sample-every", "0"]


def _rnntui(*args, cwd):
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "rnntui", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120, stdin=subprocess.DEVNULL, env=env)


@pytest.fixture
def detached(corpus_file, tmp_path):
    """Start runs in the background (as a user would, with the real command); kill what is left at the end."""
    names = []

    def start(*args, name="bg"):
        p = _rnntui(str(corpus_file), *SMALL, "--detach", "--name", name, *args, cwd=tmp_path)
        assert p.returncode == 0, p.stderr
        names.append(name)
        return p

    yield start
    for name in names:
        pid = (F.find_run(name).record or {}).get("pid")
        if F.find_run(name).alive and pid:
            os.kill(pid, signal.SIGKILL)


def _step(name: str) -> int:
    rows = {r["name"]: r for r in json.loads(_rnntui("runs", "--json", cwd=".").stdout)}
    return rows[name]["step"] or 0


def test_detach_prints_how_to_watch_and_stop_and_runs_lists_it(detached, tmp_path, runs_home):
    p = detached("--log-every", "5")
    lines = p.stdout.splitlines()
    assert lines[0].startswith("run bg started in the background (pid ")
    assert "rnntui watch bg" in lines[1] and f"rnntui stop bg     stop it, saving {runs_home}/runs/bg/checkpoint.npz" \
        in lines[2] and "rnntui runs" in lines[3]
    wait_until(lambda: _step("bg") > 5, what="the background run to train")
    table = _rnntui("runs", cwd=tmp_path).stdout.splitlines()
    assert table[0].split() == ["NAME", "STATE", "STEP", "LOSS", "VAL", "CHARS/S", "AGE", "CORPUS", "CHECKPOINT"]
    assert table[1].split()[:2] == ["bg", "running"] and "corpus.txt" in table[1]
    assert table[1].endswith("  none yet")  # not saved yet (every 5 minutes by default): no checkpoint to name
    rec = F.find_run("bg").record
    assert rec["corpus"] == str(tmp_path / "corpus.txt") and rec["config"]["hidden_size"] == 16
    stop = _rnntui("stop", "bg", cwd=tmp_path)
    assert stop.returncode == 0, stop.stderr
    step = load_checkpoint(runs_home / "runs" / "bg" / "checkpoint.npz").step
    assert stop.stdout == f"the run has stopped at step {step}; checkpoint: {runs_home}/runs/bg/checkpoint.npz " \
                          f"(step {step})\n"
    row = json.loads(_rnntui("runs", "--json", cwd=tmp_path).stdout)[0]
    assert row["state"] == "stopped" and row["step"] == row["saved_step"] == step
    assert _rnntui("runs", cwd=tmp_path).stdout.splitlines()[1].endswith(f"  {runs_home}/runs/bg/checkpoint.npz")
    assert "the run has stopped" in (runs_home / "runs" / "bg" / "log.txt").read_text()
    metrics = [json.loads(line) for line in (runs_home / "runs" / "bg" / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == list(range(5, step + 1, 5))  # always written, every --log-every steps
    again = _rnntui("stop", "bg", cwd=tmp_path)  # a second stop: nothing left to do, and it says so
    assert again.returncode == 0 and again.stdout.startswith(f"run bg is not running: it has stopped at step {step}")


def test_two_stops_at_once_both_end_well_and_lose_nothing(detached, tmp_path, runs_home):
    detached("--log-every", "5")
    wait_until(lambda: _step("bg") > 5, what="training")
    procs = [subprocess.Popen([sys.executable, "-m", "rnntui", "stop", "bg"], cwd=tmp_path, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    step = load_checkpoint(runs_home / "runs" / "bg" / "checkpoint.npz").step
    assert all(f"step {step}" in out for out, _ in outs), outs
    assert F.find_run("bg").state == "stopped"


def test_stop_no_save_discards_and_says_so(detached, tmp_path, runs_home):
    detached("--checkpoint-every", "0")
    wait_until(lambda: _step("bg") > 5, what="training")
    p = _rnntui("stop", "bg", "--no-save", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert "discarded (stopped without saving, as asked)" in p.stdout
    assert not (runs_home / "runs" / "bg" / "checkpoint.npz").exists()


def test_a_name_in_use_is_refused_and_so_is_watching_a_run_that_is_not_running(detached, corpus_file, tmp_path,
                                                                              capsys):
    detached()
    p = _rnntui(str(corpus_file), *SMALL, "--detach", "--name", "bg", cwd=tmp_path)
    assert p.returncode == 2 and p.stderr.strip().splitlines() == [
        p.stderr.strip()] and "a run named bg is already running" in p.stderr and "rnntui watch bg" in p.stderr
    assert _rnntui("stop", "bg", cwd=tmp_path).returncode == 0
    p = _rnntui(str(corpus_file), *SMALL, "--detach", "--name", "bg", cwd=tmp_path)
    assert p.returncode == 2 and "a run named bg already exists (stopped); go on with it with --resume bg" in p.stderr
    _one_line_error(capsys, run(["watch", "bg"]), "run bg is not running, so there is nothing to watch",
                    "--resume bg")
    _one_line_error(capsys, run(["watch", "nosuch"]), "there is no run named nosuch")
    _one_line_error(capsys, run(["watch"]), "no run is running")
    _one_line_error(capsys, run([str(corpus_file), "--name", "bad/name", "--headless"]), "--name", "is not a run name")
    _one_line_error(capsys, run([str(corpus_file), "--detach", "--headless"]), "give one of them")


def test_a_refused_background_run_is_refused_in_one_line_and_leaves_no_folder(corpus_file, tmp_path, runs_home):
    p = _rnntui(str(corpus_file), "--hidden-size", "0", "--detach", cwd=tmp_path)
    assert p.returncode == 2 and p.stderr == "rnntui: error: hidden size must be between 1 and 8192, got 0\n"
    assert not (runs_home / "runs").exists() or not any((runs_home / "runs").iterdir())


def test_watch_needs_a_terminal(detached, capsys):
    detached()
    _one_line_error(capsys, run(["watch", "bg"]), "rnntui watch needs a terminal")  # (pytest's stdin is no tty)


def test_resume_name_continues_the_run_in_its_folder_bit_for_bit(corpus_file, runs_home, capsys):
    assert run([str(corpus_file), *SMALL, "--headless", "--max-steps", "20", "--name", "a"]) == 0
    assert run([str(corpus_file), *SMALL, "--headless", "--max-steps", "40", "--resume", "a"]) == 0
    assert run([str(corpus_file), *SMALL, "--headless", "--max-steps", "40", "--name", "straight"]) == 0
    out = capsys.readouterr().out
    assert "from step 20" in out and "run a (rnntui watch a" in out
    resumed = load_checkpoint(runs_home / "runs" / "a" / "checkpoint.npz")
    straight = load_checkpoint(runs_home / "runs" / "straight" / "checkpoint.npz")
    assert resumed.step == straight.step == 40
    assert straight.arrays.keys() == resumed.arrays.keys()
    # (the reach is measured afresh on a resumed run's first step: its history has one more point)
    same = [k for k in straight.arrays if not k.startswith("hist.reach")]
    assert "hist.loss.values" in same and len(same) > 10
    for k in same:
        assert np.array_equal(resumed.arrays[k], straight.arrays[k]), k
    rec = F.find_run("a").record
    assert len(rec["resumed"]) == 1 and rec["end"]["step"] == 40
    assert sorted(p.name for p in (runs_home / "runs").iterdir()) == ["a", "straight"]  # no third folder


def test_resume_name_refusals(corpus_file, tmp_path, capsys):
    assert run([str(corpus_file), *SMALL, "--headless", "--max-steps", "3", "--name", "a",
                "--checkpoint-every", "0"]) == 0
    capsys.readouterr()
    _one_line_error(capsys, run([str(corpus_file), *SMALL, "--headless", "--resume", "a", "--name", "b"]),
                    "--resume a goes on with the run a under its name")
    _one_line_error(capsys, run([str(corpus_file), *SMALL, "--headless", "--resume", "nosuch"]), "nosuch")


def test_a_full_disk_at_a_periodic_save_is_reported_and_the_run_goes_on(make_trainer, tmp_path, monkeypatch):
    from rnntui.runs.folders import RunFolder
    from rnntui.runs.host import serve
    from rnntui.trainer import Stop

    path = tmp_path / "run.npz"
    trainer = make_trainer(checkpoint_path=str(path))
    trainer.checkpoint_every = 5
    folder = RunFolder.create("tiny.txt", name="full")
    ended = {}
    th = threading.Thread(target=lambda: ended.setdefault("end", serve(trainer, folder, signals=False)), daemon=True)
    th.start()
    try:
        wait_until(lambda: trainer.saved_step is not None and trainer.saved_step >= 5, what="a periodic save")
        full = {"on": True}

        def disk_full(tmp):
            if full["on"]:
                raise OSError(28, "No space left on device")

        monkeypatch.setattr(checkpoint, "_before_replace", disk_full)
        wait_until(lambda: any("No space left on device" in c.text for c in trainer.changes), what="the failure told")
        # from here on every save fails (one may have been under way when the disk filled): the file and the
        # saved step are the last good save's
        saved, before = trainer.saved_step, path.read_bytes()
        assert load_checkpoint(path).step == saved
        wait_until(lambda: trainer.step > saved + 12, what="training to go on")
        assert trainer.state == "running" and trainer.saved_step == saved
        assert path.read_bytes() == before  # the previous checkpoint intact
        full["on"] = False  # space again: the next periodic save works
        wait_until(lambda: trainer.saved_step > saved, what="a save once there is room")
        trainer.send(Stop(save=True))
        th.join(30)
    finally:
        if th.is_alive():  # (a failed check must not leave the run training behind the later tests)
            trainer.send(Stop(discard=True))
            th.join(30)
        folder.release()
    assert ended["end"].failure is None and load_checkpoint(path).step == trainer.step


@pytest.mark.parametrize(("state", "words", "code"), [
    ("running", "it goes on training", 0),
    ("paused", "it is paused; rnntui watch r, then p, goes on", 0),
    ("diverged", "it has diverged and waits; rnntui watch r to lower the learning rate", 0),
    ("crashed", "its training has crashed (ZeroDivisionError: boom) and it waits; rnntui stop r saves", 1),
])
def test_a_viewer_that_detaches_says_what_the_run_it_leaves_is_doing(state, words, code):
    """Detaching leaves the run as it is: training, paused, diverged (waiting for a fix) or crashed (waiting to be
    stopped, exit 1); the line says which, at the step the viewer saw last."""
    from types import SimpleNamespace

    from rnntui.cli import detached_words

    error = "Traceback (most recent call last):\n  ...\nZeroDivisionError: boom\n" if state == "crashed" else None
    lines, rc = detached_words("r", SimpleNamespace(step=42, state=state, error=error))
    assert rc == code
    assert lines[0].startswith(("rnntui: " if code else "") + "detached from run r at step 42: ")
    assert words in lines[0], lines[0]
    assert ("goes on training" in lines[0]) == (state == "running")
