"""RunServer and its clients (rnntui.runs.server, rnntui.runs.client): a real trainer in a thread, served on a
Unix socket to viewers that watch and steer it, and to connections that break the protocol (each is closed,
the others and the training go on)."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import stat
import struct
import tempfile
import threading
import time

import msgpack
import numpy as np
import pytest

from rnntui.runs import protocol as P
from rnntui.runs.client import InProcessClient, RunEnded, RunRefused, RunUnavailable, SocketRunClient, probe
from rnntui.runs.server import MAX_PENDING_INSPECTIONS, RunAlreadyServing, RunServer, peer_allowed, peer_uid
from rnntui.trainer import PAUSED, RUNNING, STOPPED, Pause, Resume, SampleNow, Set, Stop

from .conftest import wait_until as wait


@pytest.fixture
def short_dir():
    """A directory with a short path (pytest's own can be too long for a socket)."""
    d = tempfile.mkdtemp(prefix="rt-", dir="/tmp")
    yield d
    shutil.rmtree(d, ignore_errors=True)


@contextlib.contextmanager
def serving(trainer, path, *, start_paused=False, **server):
    """``trainer`` training in a thread (staying alive between commands), served at ``path``; stopped at the end."""
    thread = threading.Thread(target=trainer.run, kwargs={"start_paused": start_paused, "stay_alive": True},
                              daemon=True)
    thread.start()
    wait(lambda: trainer.latest is not None, what="the first snapshot")
    srv = RunServer(trainer, path, P.RunInfo.of(trainer, name="tiny"), **server).start()
    try:
        yield srv
    finally:
        trainer.send(Stop())
        thread.join(30)
        srv.close()


@pytest.fixture
def run(make_trainer, short_dir):
    trainer = make_trainer(hidden_size=8, batch_size=2, seq_length=6)
    with serving(trainer, os.path.join(short_dir, "run", "socket"), push_interval=0.05, frame_seconds=1.0,
                 hello_seconds=0.5) as srv:
        yield trainer, srv


def test_two_viewers_watch_at_once_and_one_pauses_the_run(run):
    trainer, srv = run
    a, b = SocketRunClient.connect(srv.path), SocketRunClient.connect(srv.path)
    with a, b:
        assert a.info.name == b.info.name == "tiny" and a.info.pid == os.getpid()
        assert a.info.vocab == trainer.corpus.vocab.chars and a.info.config == trainer.config
        wait(lambda: a.latest() is not None and b.latest() is not None, what="both viewers' first snapshots")
        step = a.latest().step
        wait(lambda: b.latest().step > step + 5, what="b seeing the run go on")
        a.send(Pause())
        wait(lambda: a.latest().state == PAUSED and b.latest().state == PAUSED, what="both seeing the pause")
        paused_at = trainer.step
        time.sleep(0.3)
        assert trainer.step == paused_at and b.latest().step == paused_at
        b.send(Set({"lr": np.float64(0.002)}))  # a NumPy number is sent as a plain one
        b.send(Resume())
        wait(lambda: a.latest().state == RUNNING and a.latest().hyper.lr == 0.002 and a.latest().step > paused_at,
             what="a seeing b's resume and setting")
        assert srv.viewers == 2
    wait(lambda: srv.viewers == 0, what="the viewers leaving")
    assert trainer.state == RUNNING  # detaching stops nothing


def test_an_inspection_over_the_socket_is_the_trainers_between_two_steps(run):
    trainer, srv = run
    with SocketRunClient.connect(srv.path) as client:
        client.send(Pause())
        wait(lambda: client.latest() is not None and client.latest().state == PAUSED, what="pause")
        ins = client.inspection(timeout=10)
        here = trainer.inspection()
        assert ins.step == here.step == trainer.step
        for k in here.model.params:
            np.testing.assert_array_equal(ins.model.params[k], here.model.params[k])
        np.testing.assert_array_equal(ins.inputs, here.inputs)
        np.testing.assert_array_equal(ins.h0, here.h0)
        # the app's way: an Inspect command carrying its future
        from concurrent.futures import Future

        from rnntui.trainer import Inspect

        f: Future = Future()
        assert client.send(Inspect(f))
        assert f.result(10).step == trainer.step


def test_inspections_waiting_at_once_are_bounded(make_trainer, short_dir):
    trainer = make_trainer(hidden_size=8, batch_size=2, seq_length=6)
    # a paused trainer that applies no command for now: inspections pile up, up to the bound
    blocked = threading.Event()
    real_send = trainer.send

    def slow_send(command):
        threading.Thread(target=lambda: (blocked.wait(10), real_send(command)), daemon=True).start()

    with serving(trainer, os.path.join(short_dir, "socket"), start_paused=True) as srv:
        trainer.send = slow_send
        with SocketRunClient.connect(srv.path) as client:
            futures = [client.inspect() for _ in range(MAX_PENDING_INSPECTIONS + 2)]
            refused = [f for f in futures[MAX_PENDING_INSPECTIONS:]]
            for f in refused:
                with pytest.raises(RuntimeError, match="already waiting"):
                    f.result(5)
            blocked.set()
            for f in futures[:MAX_PENDING_INSPECTIONS]:
                assert f.result(10).step == 0
            trainer.send = real_send


def test_commands_of_the_wrong_shape_are_refused_by_the_client_before_sending(run):
    _, srv = run
    with SocketRunClient.connect(srv.path) as client:
        for bad in ("pause", Set({"lr": [1]}), Set({1: 2}), Stop(save="yes"), None):
            with pytest.raises(TypeError):
                client.send(bad)
        assert client.send(SampleNow()) and not client.ended


# -- the protocol fuzz, against a live run ---------------------------------------------------------


def raw(path, *, hello=True):
    """A bare connection past the run's hello (and ours, with ``hello``)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(path)
    theirs = P.receive(s, P.MAX_FRAME)
    assert isinstance(theirs, P.Hello) and theirs.ok
    if hello:
        s.sendall(P.encode_message(P.Hello(P.PROTOCOL_VERSION)))
        assert isinstance(P.receive(s, P.MAX_FRAME), P.Info)
    return s


def goodbye(s) -> str:
    """The reason of the goodbye the run sends before it closes ``s`` (snapshots before it skipped), then EOF."""
    while True:
        msg = P.receive(s, P.MAX_FRAME, allowed=P.REPLY_TYPES)
        if isinstance(msg, P.Bye):
            with pytest.raises(P.ConnectionClosed):
                P.read_frame(s, P.MAX_FRAME)
            s.close()
            return msg.reason


def frame(body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + body


FUZZ = {
    "garbage": b"\x00\x00\x00\x10" + b"\xc1" * 16,
    "not even a frame": b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    "a huge length prefix": b"\xff\xff\xff\xff" + b"x" * 100,
    "a length over the request limit": struct.pack(">I", P.MAX_REQUEST + 1) + b"x" * 100,
    "an empty frame": b"\x00\x00\x00\x00",
    "a valid frame of an unknown type": frame(msgpack.packb({"t": "shutdown", "now": True})),
    "a valid frame of a reply type": frame(msgpack.packb({"t": "bye", "reason": "x", "ended": True})),
    "a second hello": P.encode_message(P.Hello(P.PROTOCOL_VERSION)),
    "a set that would crash the trainer": frame(msgpack.packb(
        {"t": "command", "command": [msgpack.ExtType(P.TAG, b"Set"), {"changes": {1: 2}}]})),
}


@pytest.mark.parametrize("case", sorted(FUZZ))
def test_a_bad_frame_closes_that_connection_only(run, case):
    trainer, srv = run
    with SocketRunClient.connect(srv.path) as watcher:
        wait(lambda: watcher.received > 0, what="the watcher's first snapshot")
        s = raw(srv.path)
        s.sendall(FUZZ[case])
        assert goodbye(s).startswith("protocol error")
        seen, step = watcher.received, trainer.step
        wait(lambda: watcher.received > seen + 2 and trainer.step > step + 5, what="the run going on for the others")
        assert not watcher.ended and srv.viewers == 1 and trainer.state == RUNNING
        wait(lambda: srv.rejected >= 1, what="the count of rejected connections")


def test_half_a_frame_then_silence_or_the_end_closes_that_connection_only(run):
    trainer, srv = run
    with SocketRunClient.connect(srv.path) as watcher:
        half = P.encode_message(P.CommandRequest(Pause()))[:7]
        s = raw(srv.path)
        s.sendall(half)  # and nothing more: cut after frame_seconds (1 s here)
        assert "cut short" in goodbye(s)
        s = raw(srv.path)
        s.sendall(half)
        s.close()  # the half frame, then the end
        before = trainer.step
        wait(lambda: trainer.step > before + 5 and srv.viewers == 1, what="the run going on")
        s = raw(srv.path, hello=False)  # no hello at all: the run waits hello_seconds, then closes
        assert goodbye(s) == "no hello in time"
        assert not watcher.ended and trainer.state == RUNNING


def test_a_viewer_of_another_version_is_told_so(run):
    _, srv = run
    s = raw(srv.path, hello=False)
    s.sendall(P.encode_message(P.Hello(P.PROTOCOL_VERSION + 1, software="9.9")))
    reason = goodbye(s)
    assert f"this run speaks protocol {P.PROTOCOL_VERSION}, this viewer {P.PROTOCOL_VERSION + 1}" in reason


def test_a_run_of_another_version_is_named_by_the_client(short_dir):
    path = os.path.join(short_dir, "socket")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)

    def later_run():
        conn, _ = listener.accept()
        conn.sendall(frame(msgpack.packb({"t": "hello", "version": 2, "software": "0.9.0", "ok": True,
                                          "error": None, "compression": "zstd"})))
        conn.recv(100)
        conn.close()

    t = threading.Thread(target=later_run, daemon=True)
    t.start()
    with pytest.raises(RunRefused, match=f"this run speaks protocol 2, this rnntui {P.PROTOCOL_VERSION}: .*0.9.0"):
        SocketRunClient.connect(path, timeout=5)
    t.join(5)
    listener.close()


# -- slow and stuck viewers ---------------------------------------------------------------------------


def test_a_stuck_viewer_gets_no_backlog_and_holds_up_nobody(make_trainer, short_dir):
    trainer = make_trainer(hidden_size=8, batch_size=2, seq_length=6)
    for name in ("loss", "loss_ema", "lr"):  # long histories: snapshots of ~100 kB, beyond a socket's buffer
        for i in range(2048):
            trainer.history[name].append(i, 1.0)
    with serving(trainer, os.path.join(short_dir, "socket"), push_interval=0.02) as srv:
        stuck = raw(srv.path)
        stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # and it never reads
        with SocketRunClient.connect(srv.path) as healthy:
            wait(lambda: srv.stats() and srv.stats()[0]["sending_for"] > 0.3, what="the stuck viewer to block")
            seen, step = healthy.received, trainer.step
            time.sleep(1.0)
            assert healthy.received >= seen + 10  # 50 Hz for the healthy one, although the other is stuck
            assert trainer.step > step + 20
            stuck_stats = srv.stats()[0]
            frame_size = len(srv._frame[1])
            assert stuck_stats["coalesced"] > 10  # new snapshots replaced unsent ones …
            assert stuck_stats["queued_bytes"] <= frame_size  # … so at most one waits: no backlog
            assert stuck_stats["queued"] <= 1
        stuck.close()
        wait(lambda: srv.viewers == 0, what="the stuck viewer's connection to be cleaned up")


def test_snapshots_are_pushed_at_a_bounded_rate(make_trainer, short_dir):
    trainer = make_trainer(hidden_size=8, batch_size=2, seq_length=6, publish_interval=0.005)
    with serving(trainer, os.path.join(short_dir, "socket"), push_interval=0.25) as srv:
        with SocketRunClient.connect(srv.path) as client:
            wait(lambda: client.received > 0, what="the first snapshot")
            first = client.received
            time.sleep(2.0)
            got = client.received - first
            assert 3 <= got <= 2.0 / 0.25 + 2  # ~8, though the trainer published ~400 times
            assert srv.pushed <= client.received + 1


def test_nobody_watching_costs_no_encoding(run):
    trainer, srv = run
    time.sleep(0.3)
    assert srv.pushed == 0 and srv.encode_seconds == 0.0
    with SocketRunClient.connect(srv.path) as client:
        wait(lambda: client.received > 2, what="snapshots")
    assert srv.pushed > 0


# -- the run's end -----------------------------------------------------------------------------------


def test_a_viewer_of_a_run_that_ends_keeps_its_final_snapshot_and_says_so(make_trainer, short_dir):
    trainer = make_trainer(hidden_size=8, batch_size=2, seq_length=6)
    thread = threading.Thread(target=trainer.run, kwargs={"stay_alive": True}, daemon=True)
    thread.start()
    wait(lambda: trainer.latest is not None, what="the first snapshot")
    srv = RunServer(trainer, os.path.join(short_dir, "socket"), P.RunInfo.of(trainer, name="ending")).start()
    client = SocketRunClient.connect(srv.path)
    wait(lambda: client.received > 0, what="a snapshot")
    pending = None
    client.send(Stop())
    thread.join(10)
    srv.close("the run has stopped")
    wait(lambda: client.ended, what="the viewer to see the end")
    assert client.end_reason == "the run has stopped" and client.run_ended
    assert client.latest().state == STOPPED and client.latest().step == trainer.step
    pending = client.inspect()
    with pytest.raises(RunEnded):
        pending.result(1)
    assert not client.send(Pause())
    client.close()
    assert not os.path.exists(srv.path)
    with pytest.raises(RunUnavailable, match="no run serves"):
        SocketRunClient.connect(srv.path)


def test_inspections_waiting_when_the_connection_ends_fail(run):
    trainer, srv = run
    client = SocketRunClient.connect(srv.path)
    gate = threading.Event()
    real_send = trainer.send
    trainer.send = lambda c: threading.Thread(target=lambda: (gate.wait(5), real_send(c)), daemon=True).start()
    f = client.inspect()
    time.sleep(0.2)
    client.close()
    with pytest.raises(RunEnded):
        f.result(5)
    gate.set()
    trainer.send = real_send


# -- access -----------------------------------------------------------------------------------------


def test_peer_allowed_only_for_the_same_user():
    assert peer_allowed(1000, 1000)
    assert not peer_allowed(1001, 1000)
    assert not peer_allowed(0, 1000)  # root, too, is another user for a run
    assert peer_allowed(0, 0)
    assert not peer_allowed(None, 1000)  # credentials unknown
    assert not peer_allowed(-1, 1000)


def test_peer_uid_reads_the_credentials_of_the_other_end():
    a, b = socket.socketpair(socket.AF_UNIX)
    with a, b:
        assert peer_uid(a) == peer_uid(b) == os.getuid()
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    with tcp:
        assert peer_uid(tcp) is None  # not connected: nothing to read


def test_another_user_is_refused_with_the_reason(make_trainer, short_dir):
    trainer = make_trainer(hidden_size=8, batch_size=2, seq_length=6)
    # the run believes it belongs to another uid: this process is then "another user"
    with serving(trainer, os.path.join(short_dir, "socket"), own_uid=os.getuid() + 1) as srv:
        with pytest.raises(RunRefused, match=f"uid {os.getuid()} may not watch it"):
            SocketRunClient.connect(srv.path)
        assert srv.refused == 1 and srv.viewers == 0


def test_the_socket_is_0600_in_a_0700_directory_and_no_tcp(run):
    _, srv = run
    assert stat.S_IMODE(os.stat(srv.path).st_mode) == 0o600
    assert stat.S_ISSOCK(os.stat(srv.path).st_mode)
    assert stat.S_IMODE(os.stat(os.path.dirname(srv.path)).st_mode) == 0o700
    inet = [fd for fd in os.listdir("/proc/self/fd") if _is_inet(int(fd))]
    assert inet == []


def _is_inet(fd: int) -> bool:
    try:
        s = socket.socket(fileno=os.dup(fd))
    except OSError:
        return False
    with s:
        return s.family in (socket.AF_INET, socket.AF_INET6)


def test_a_stale_socket_file_is_replaced_and_a_live_one_refused(make_trainer, short_dir):
    path = os.path.join(short_dir, "socket")
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(path)  # a run that crashed: its socket file stays, nobody listens
    dead.close()
    assert os.path.exists(path)
    with pytest.raises(RunUnavailable):
        SocketRunClient.connect(path)
    trainer = make_trainer(hidden_size=8, batch_size=2, seq_length=6)
    with serving(trainer, path) as srv:
        with SocketRunClient.connect(path) as client:
            assert client.wait_snapshot(timeout=5) is not None
        second = RunServer(trainer, path, P.RunInfo.of(trainer, name="tiny"))
        with pytest.raises(RunAlreadyServing, match="a run named tiny is already running"):
            second.start()
        with SocketRunClient.connect(path) as client:  # the first still serves
            assert client.wait_snapshot(timeout=5) is not None
        wait(lambda: srv.viewers == 0, what="the viewers to leave")
    with open(path, "w") as f:  # a file that is not a socket is not taken for one
        f.write("x")
    with pytest.raises(RunAlreadyServing, match="not a socket"):
        RunServer(trainer, path, P.RunInfo.of(trainer, name="tiny")).start()


def test_probe_gives_the_info_and_the_newest_snapshot(run):
    trainer, srv = run
    info, snap = probe(srv.path)
    assert info.name == "tiny" and snap is not None and snap.step <= trainer.step
    wait(lambda: srv.viewers == 0, what="the probe to leave")


# -- the in-process client ----------------------------------------------------------------------------


def test_the_in_process_client_is_the_same_interface(make_trainer):
    trainer = make_trainer(hidden_size=8, batch_size=2, seq_length=6)
    client = InProcessClient.start(trainer, start_paused=True, stay_alive=True)
    assert client.info.name == "in-process" and client.info.vocab == trainer.corpus.vocab.chars
    wait(lambda: client.latest() is not None and client.latest().state == PAUSED, what="paused start")
    assert client.inspection(5).step == 0
    client.send(Resume())
    wait(lambda: client.latest().step > 5, what="training")
    with pytest.raises(TypeError):
        client.send(Set({"lr": [1]}))
    assert client.send(Stop())
    client.join(10)
    assert client.ended and client.end_reason.startswith(f"the run has stopped at step {trainer.step}; not saved")
    with pytest.raises(RunEnded):
        client.inspect().result(1)
