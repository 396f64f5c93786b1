"""A run as a process of its own (rnntui.runs.host.serve), as real subprocesses: watched, stopped by SIGTERM
or by two viewers at once, killed with SIGKILL (listed as died, its last periodic checkpoint intact), and
going on when a viewer is killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading

import pytest

from rnntui import checkpoint
from rnntui.runs import folders as F
from rnntui.runs.client import SocketRunClient
from rnntui.trainer import PAUSED, Resume, Stop

from .conftest import wait_until as wait

RUN = """
import sys
from rnntui import Corpus, HyperParams, TrainConfig, Trainer
from rnntui.runs.folders import RunFolder
from rnntui.runs.host import serve
folder = RunFolder.create(sys.argv[1], name=sys.argv[2])
cfg = TrainConfig(hidden_size=8, batch_size=2, seq_length=6, hyper=HyperParams(sample_every=0, val_every=0))
trainer = Trainer(Corpus.load(sys.argv[1]), cfg, checkpoint_path=str(folder.checkpoint_path), checkpoint_every=25,
                  publish_interval=0.02)
state = serve(trainer, folder, on_ready=lambda server: print("serving", server.path, flush=True),
              push_interval=0.05)
print("ended", state.state, trainer.step, trainer.saved_step, flush=True)
"""


@pytest.fixture
def start_run(corpus_file, tmp_path, monkeypatch):
    monkeypatch.setenv("RNNTUI_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "1")
    procs = []

    def start(name="r"):
        p = subprocess.Popen([sys.executable, "-c", RUN, str(corpus_file), name], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, start_new_session=True)
        procs.append(p)
        line = p.stdout.readline().split()
        assert line[:1] == ["serving"], p.stderr.read()
        return p, line[1]

    yield start
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait(10)
        p.stdout.close()
        p.stderr.close()


def ended(p) -> list[str]:
    out = p.stdout.readline().split()
    assert p.wait(30) == 0, p.stderr.read()
    return out


def test_sigterm_saves_and_ends_and_says_so_to_its_viewer(start_run):
    p, path = start_run("t")
    assert F.find_run("t").state == "running" and F.find_run("t").record["socket"] == path
    with SocketRunClient.connect(path) as client:
        wait(lambda: client.latest() is not None and client.latest().step > 30, what="training")
        p.send_signal(signal.SIGTERM)
        wait(lambda: client.ended, what="the viewer to hear the end")
        final = client.latest()
    out = ended(p)
    assert out[:2] == ["ended", "stopped"] and out[2] == out[3] == str(final.step)  # saved at its last step
    ckpt = F.runs_root() / "t" / "checkpoint.npz"
    assert client.run_ended and client.end_reason == (f"the run has stopped at step {final.step}; checkpoint: "
                                                      f"{ckpt} (step {final.step})")
    entry = F.find_run("t")
    assert entry.state == "stopped" and entry.record["end"]["saved_step"] == final.step
    assert checkpoint.load(F.runs_root() / "t" / "checkpoint.npz").step == final.step
    assert not os.path.exists(path)


def test_two_stops_at_once_end_it_once(start_run):
    p, path = start_run("two")
    a, b = SocketRunClient.connect(path), SocketRunClient.connect(path)
    wait(lambda: a.latest() is not None and a.latest().step > 5, what="training")
    go = threading.Barrier(2)
    threads = [threading.Thread(target=lambda c=c: (go.wait(), c.send(Stop(save=True)))) for c in (a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wait(lambda: a.ended and b.ended, what="both viewers to hear the end")
    out = ended(p)
    assert out[:2] == ["ended", "stopped"] and out[2] == out[3]
    assert a.latest().step == b.latest().step == int(out[2])
    a.close()
    b.close()
    assert F.find_run("two").state == "stopped"


def test_sigkill_leaves_a_died_run_and_its_last_periodic_checkpoint(start_run):
    p, path = start_run("k")
    with SocketRunClient.connect(path) as client:
        wait(lambda: client.latest() is not None and (client.latest().saved_step or 0) >= 50, what="two saves")
        wait(lambda: (F.find_run("k").record.get("status") or {}).get("saved_step", 0) >= 50,
             what="run.json to keep the save")
        os.kill(p.pid, signal.SIGKILL)
        wait(lambda: client.ended, what="the viewer to lose the run")
        assert not client.run_ended and "lost" in client.end_reason
    p.wait(10)
    entry = F.find_run("k")
    assert entry.state == "died" and not entry.alive
    row = entry.row()
    ck = checkpoint.load(row["checkpoint"])  # intact: saves are atomic
    # run.json's figures are those of a save already made (the checkpoint may be a save newer: the kill can
    # fall between a save and its note)
    assert ck.step >= row["saved_step"] >= 50 and ck.step % 25 == 0 and row["saved_step"] % 25 == 0
    # the socket file it left is stale: a new run of that name takes its place
    assert os.path.exists(path)


def test_a_viewer_killed_with_sigkill_leaves_the_run_going(start_run):
    p, path = start_run("v")
    viewer = subprocess.Popen([sys.executable, "-c", "import sys, time; from rnntui.runs.client import "
                               "SocketRunClient; c = SocketRunClient.connect(sys.argv[1]); c.send("
                               "__import__('rnntui.trainer', fromlist=['Pause']).Pause()); print('in', flush=True); "
                               "time.sleep(60)", path], stdout=subprocess.PIPE, text=True)
    assert viewer.stdout.readline().strip() == "in"
    with SocketRunClient.connect(path) as client:
        wait(lambda: client.latest() is not None and client.latest().state == PAUSED, what="the viewer's pause")
        viewer.kill()
        viewer.wait(10)
        viewer.stdout.close()
        client.send(Resume())
        step = client.latest().step
        wait(lambda: client.latest().step > step + 20, what="the run going on")
        client.send(Stop(save=True))
        wait(lambda: client.ended, what="the end")
    assert ended(p)[:2] == ["ended", "stopped"]
