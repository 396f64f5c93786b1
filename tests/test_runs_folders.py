"""Run folders (rnntui.runs.folders): names, the lock that says a run lives, run.json, where the socket goes,
and how a listing tells running, ended and died runs apart."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from rnntui.runs import folders as F
from rnntui.runs import protocol as P
from rnntui.runs.client import SocketRunClient
from rnntui.runs.folders import RunEntry, RunFolder, RunFolderError
from rnntui.runs.server import RunServer
from rnntui.trainer import STOPPED, Stop

from .conftest import wait_until as wait


@pytest.fixture
def base(tmp_path, monkeypatch):
    monkeypatch.setenv("RNNTUI_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_home_is_rnntui_home_else_the_xdg_state_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("RNNTUI_HOME", str(tmp_path / "h"))
    assert F.home() == tmp_path / "h" and F.runs_root() == tmp_path / "h" / "runs"
    monkeypatch.delenv("RNNTUI_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("XDG_STATE_HOME", raising=False)
    assert F.home() == tmp_path / ".local" / "state" / "rnntui"


def test_default_names_are_the_corpus_stem_and_a_counter(base):
    a = RunFolder.create("/data/persuasion.txt")
    b = RunFolder.create("/elsewhere/persuasion.txt")
    c = RunFolder.create("Pride & Prejudice (1813).txt")
    d = RunFolder.create("...")
    assert [a.name, b.name, c.name, d.name] == ["persuasion-1", "persuasion-2", "Pride-Prejudice-1813-1", "run-1"]
    a.release()
    os.rename(a.path, a.path.with_name("persuasion-7"))  # numbers are not reused below the highest
    assert RunFolder.create("persuasion.txt").name == "persuasion-8"
    for f in (b, c, d):
        f.release()
    assert stat.S_IMODE(os.stat(b.path).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(F.runs_root()).st_mode) == 0o700


def test_bad_names_are_refused_with_the_rule():
    for bad in ("", "../x", ".hidden", "a/b", "x" * 65, "-x", "sp ace", "é"):
        with pytest.raises(RunFolderError, match="not a run name"):
            F.check_name(bad)
    assert F.check_name("persuasion-2.lr_0.01") == "persuasion-2.lr_0.01"


def test_a_name_taken_by_a_live_run_is_refused_and_by_an_ended_one_too(base):
    first = RunFolder.create("c.txt", name="exp")
    first.start("c.txt", {"hidden_size": 8})
    with pytest.raises(RunFolderError, match=r"a run named exp is already running \(pid \d+\).*rnntui watch exp"):
        RunFolder.create("c.txt", name="exp")
    with pytest.raises(RunFolderError, match="already running"):
        RunFolder.reopen("exp")  # nor may it be resumed while it runs
    first.release()
    with pytest.raises(RunFolderError, match=r"a run named exp already exists \(died\).*--resume exp"):
        RunFolder.create("c.txt", name="exp")
    again = RunFolder.reopen("exp")  # --resume exp: the same folder, held again
    assert again.path == first.path and F.lock_held(again.path)
    again.release()
    with pytest.raises(RunFolderError, match="no run named nope"):
        RunFolder.reopen("nope")


def test_two_runs_started_with_the_same_name_at_once_one_is_refused(base):
    results: list = []
    barrier = threading.Barrier(4)

    def start():
        barrier.wait()
        try:
            results.append(RunFolder.create("c.txt", name="same"))
        except RunFolderError as e:
            results.append(e)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    held = [r for r in results if isinstance(r, RunFolder)]
    assert len(held) == 1 and len(results) == 4
    held[0].release()


def test_run_json_is_written_whole_and_kept_up_to_date(base, make_trainer):
    trainer = make_trainer()
    folder = RunFolder.create("/data/corpus.txt")
    rec = folder.start("/data/corpus.txt", trainer.config)
    on_disk = json.loads(folder.record_path.read_text())
    assert on_disk == rec
    assert rec["format"] == F.FORMAT and rec["name"] == "corpus-1" and rec["pid"] == os.getpid()
    assert rec["corpus"] == "/data/corpus.txt" and rec["config"]["hidden_size"] == trainer.config.hidden_size
    assert rec["socket"] == str(folder.path / "socket") and rec["checkpoint"] == str(folder.path / "checkpoint.npz")
    assert rec["protocol"] == P.PROTOCOL_VERSION and rec["end"] is None and rec["resumed"] == []
    assert [p.name for p in folder.path.iterdir()] and not [p for p in folder.path.iterdir() if ".tmp" in p.name]
    trainer.run(max_steps=3)
    folder.note_status(trainer.latest)
    assert F.read_record(folder.path)["status"]["step"] == 3
    folder.mark_end(trainer.latest)
    folder.release()
    entry = F.find_run("corpus-1")
    assert entry.state == "finished" and not entry.alive
    # going on with it keeps its first start and records the new one
    again = RunFolder.reopen("corpus-1")
    rec2 = again.start("/data/corpus.txt", trainer.config)
    assert rec2["started"] == rec["started"] and len(rec2["resumed"]) == 1 and rec2["end"] is None
    assert F.find_run("corpus-1").state == "running"
    again.release()


def test_a_run_killed_with_sigkill_is_listed_as_died_with_its_last_save(base):
    folder = RunFolder.create("c.txt", name="victim")
    folder.start("c.txt", {}, pid=None)
    fd = folder.hand_over()
    # the run's own process: it adopts the lock, notes a save, and sleeps until killed
    code = ("import sys, time, types; from rnntui.runs.folders import RunFolder; "
            "f = RunFolder.adopt(sys.argv[1], int(sys.argv[2])); f.update(pid=__import__('os').getpid()); "
            "f.note_status(types.SimpleNamespace(state='running', step=42, loss=1.5, val_loss=None, "
            "chars_per_sec=10.0, saved_step=40, saved_path=sys.argv[1] + '/checkpoint.npz', checkpoint_path=None)); "
            "print('ready', flush=True); time.sleep(60)")
    child = subprocess.Popen([sys.executable, "-c", code, str(folder.path), str(fd)], pass_fds=(fd,),
                             stdout=subprocess.PIPE, text=True)
    folder.release()  # the lock goes on in the child
    assert child.stdout.readline().strip() == "ready"
    entry = F.find_run("victim")
    assert entry.alive and entry.state == "running" and entry.record["pid"] == child.pid
    assert F.latest_live().name == "victim"
    child.send_signal(signal.SIGKILL)
    child.wait(10)
    child.stdout.close()
    entry = F.find_run("victim")
    assert not entry.alive and entry.state == "died"
    row = entry.row()
    assert row["state"] == "died" and row["step"] == 42 and row["saved_step"] == 40
    assert row["checkpoint"].endswith("victim/checkpoint.npz")
    assert F.latest_live() is None


def test_listing_orders_by_start_and_rows_come_from_the_live_snapshot(base, make_trainer):
    trainer = make_trainer()
    held = []
    for name in ("b", "a", "c"):
        f = RunFolder.create("x.txt", name=name)
        f.start("x.txt", trainer.config)
        held.append(f)
    trainer.run(max_steps=2)
    held[1].mark_end(trainer.latest)
    held[1].release()
    held[2].release()
    entries = F.list_runs()
    assert [e.name for e in entries] == ["b", "a", "c"]
    assert [e.state for e in entries] == ["running", "finished", "died"]
    live = entries[0].row(trainer.latest, now=entries[0].started + 5)
    assert live["state"] == "finished" and live["step"] == 2 and live["age"] == 5 and live["corpus"].endswith("x.txt")
    assert F.latest_live().name == "b"
    (F.runs_root() / "not-a-run").mkdir()  # a folder without run.json (made by hand, or half made): died
    assert RunEntry.of(F.runs_root() / "not-a-run").state == "died"
    held[0].release()


def test_a_long_rnntui_home_puts_the_socket_in_a_short_runtime_directory(tmp_path, monkeypatch, make_trainer):
    deep = tmp_path / ("very-long-folder-name-" * 6)
    monkeypatch.setenv("RNNTUI_HOME", str(deep))
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    folder = RunFolder.create("persuasion.txt")
    sock = folder.socket_path
    assert len(os.fsencode(folder.path / "socket")) > 107
    assert len(os.fsencode(sock)) <= F.SOCKET_PATH_MAX and sock.parent == Path(f"/tmp/rnntui-{os.getuid()}")
    assert stat.S_IMODE(os.stat(sock.parent).st_mode) == 0o700
    assert folder.socket_path == sock  # the same every time for this folder
    rec = folder.start("persuasion.txt", {})
    trainer = make_trainer()
    thread = threading.Thread(target=trainer.run, kwargs={"stay_alive": True}, daemon=True)
    thread.start()
    wait(lambda: trainer.latest is not None, what="the first snapshot")
    srv = RunServer(trainer, rec["socket"], P.RunInfo.of(trainer, name=folder.name)).start()
    try:
        with SocketRunClient.connect(F.find_run(folder.name).socket_path) as client:
            assert client.info.name == folder.name and client.wait_snapshot(timeout=5) is not None
    finally:
        trainer.send(Stop())
        thread.join(10)
        srv.close()
        folder.release()
    assert trainer.state == STOPPED and not os.path.exists(rec["socket"])


def test_the_runtime_directory_is_xdg_runtime_dir_when_it_is_ours(tmp_path, monkeypatch):
    rt = tmp_path / "rt"
    rt.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(rt))
    if len(os.fsencode(rt)) < 60:
        assert F.runtime_dir() == rt / "rnntui"
        assert stat.S_IMODE(os.stat(rt / "rnntui").st_mode) == 0o700
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "missing"))
    assert F.runtime_dir() == Path(f"/tmp/rnntui-{os.getuid()}")


def test_secure_dir_tightens_a_loose_directory_and_refuses_a_link_or_a_file(tmp_path):
    loose = tmp_path / "loose"
    loose.mkdir(mode=0o755)
    os.chmod(loose, 0o755)
    assert F.secure_dir(loose) == loose and stat.S_IMODE(os.stat(loose).st_mode) == 0o700
    link = tmp_path / "link"
    link.symlink_to(loose)
    with pytest.raises(RunFolderError, match="not a directory"):
        F.secure_dir(link)
    (tmp_path / "file").write_text("x")
    with pytest.raises(RunFolderError):
        F.secure_dir(tmp_path / "file")


def test_write_json_leaves_the_old_file_when_it_cannot_write(tmp_path):
    path = tmp_path / "run.json"
    F.write_json(path, {"a": 1})
    with pytest.raises(TypeError):
        F.write_json(path, {"a": object()})
    assert json.loads(path.read_text()) == {"a": 1} and sorted(p.name for p in tmp_path.iterdir()) == ["run.json"]
