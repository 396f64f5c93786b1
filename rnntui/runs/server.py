"""Serve a running trainer to any number of viewers on a Unix-domain socket (no TCP, ever).

:class:`RunServer` owns a *source*: anything with ``send(command)`` and a ``latest`` snapshot (a
:class:`~rnntui.trainer.Trainer` running in another thread of this process). It never calls into the
trainer otherwise: commands go to its control queue, inspections as an ``Inspect`` command (answered
between two steps), and snapshots are read from ``latest``.

* **Access.** The socket file is mode 0600 in a directory of mode 0700 that this user owns
  (``folders.secure_dir``); each peer's uid is read with SO_PEERCRED (:func:`peer_uid`) and only this
  user's processes are served (:func:`peer_allowed`).
* **Snapshots** are pushed by one thread, at most every ``push_interval`` seconds and only when there
  is a new one and a viewer to see it: each snapshot is encoded once, whatever the number of viewers.
  Each viewer has a sender thread and a one-slot mailbox: a new snapshot replaces one not yet sent, so
  a slow or stuck viewer gets the newest, never a backlog, and holds up nobody (its sender waits in
  ``sendall`` without the GIL). Besides the slot, a viewer's queue holds its few answers (its hello,
  at most :data:`MAX_PENDING_INSPECTIONS` inspections, a goodbye).
* **Requests** (commands, inspections) are read by each viewer's reader thread, checked
  (:mod:`rnntui.runs.protocol`) and queued to the trainer. A malformed, oversized, truncated or slow
  frame ends that viewer's connection with a goodbye saying why, and nothing else.
* **One server per socket**: a socket file that still answers is a live run (:class:`RunAlreadyServing`);
  one that refuses connections was left by a run that died, and is replaced.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import stat
import struct
import threading
import time
from collections import deque
from concurrent.futures import Future

from ..trainer import Inspect
from . import protocol as P
from .folders import SOCKET_PATH_MAX, secure_dir

#: How often at most a viewer is sent a new snapshot (the app redraws at 2–4 Hz).
PUSH_INTERVAL = 0.2
#: Inspections one viewer may have waiting at once (each answer is the float64 weights).
MAX_PENDING_INSPECTIONS = 2
MAX_VIEWERS = 64
#: A viewer must say hello within this many seconds of connecting, and finish each frame it begins within
#: FRAME_SECONDS.
HELLO_SECONDS = 5.0
FRAME_SECONDS = 10.0
#: How long a goodbye may take to go out before the connection is cut.
BYE_SECONDS = 1.0


class RunAlreadyServing(RuntimeError):
    """Another live process serves on this socket."""


def peer_allowed(peer: int | None, own: int) -> bool:
    """Whether a process of uid ``peer`` may watch and control a run of uid ``own``: only the same user
    (not even root: a run answers nobody else). ``peer`` None: the credentials could not be read."""
    return peer is not None and peer >= 0 and peer == own


_UCRED = struct.Struct("i2I")  # struct ucred: pid, uid, gid (Linux)
#: The uid the kernel gives for "none" ((uid_t) -1: e.g. a socket not connected).
NO_UID = 0xFFFFFFFF


def peer_uid(sock: socket.socket) -> int | None:
    """The uid of the process at the other end of the Unix socket ``sock``, None when the system does not tell."""
    if hasattr(socket, "SO_PEERCRED"):  # Linux
        try:
            _pid, uid, _gid = _UCRED.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size))
            return None if uid == NO_UID else uid
        except OSError:
            return None
    if hasattr(socket, "LOCAL_PEERCRED"):  # the BSDs, macOS: struct xucred {u_int version; uid_t uid; …}
        try:
            data = sock.getsockopt(0, socket.LOCAL_PEERCRED, 76)
            uid = struct.unpack_from("2I", data)[1]
            return None if uid == NO_UID else uid
        except (OSError, struct.error):
            return None
    return None


def peer_pid(sock: socket.socket) -> int | None:
    if not hasattr(socket, "SO_PEERCRED"):
        return None
    try:
        pid = _UCRED.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size))[0]
    except OSError:
        return None
    return pid if pid > 0 else None


def bind_socket(path: str | os.PathLike, *, name: str = "") -> socket.socket:
    """A listening Unix socket at ``path`` (mode 0600, its directory made private: ``folders.secure_dir``).

    A socket file already there that accepts a connection belongs to a live run: :class:`RunAlreadyServing`
    (``name`` in its message). One that refuses is stale (its run died) and is replaced."""
    path = os.fspath(path)
    if len(os.fsencode(path)) > SOCKET_PATH_MAX:
        raise ValueError(f"the socket path {path} is longer than {SOCKET_PATH_MAX} bytes")
    secure_dir(os.path.dirname(path) or ".")
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        st = None
    if st is not None:
        if not stat.S_ISSOCK(st.st_mode):
            raise RunAlreadyServing(f"{path} exists and is not a socket; remove it")
        if _answers(path):
            what = f"a run named {name}" if name else "a run"
            raise RunAlreadyServing(f"{what} is already running (its socket {path} answers)")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # left by a run that died
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        os.chmod(path, 0o600)  # the directory (0700) already keeps everyone else out meanwhile
        sock.listen(16)
    except OSError:
        sock.close()
        raise
    return sock


def _answers(path: str) -> bool:
    """Whether a process accepts connections on the socket ``path`` (False: it was left by a run that died)."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(path)
        return True
    except (ConnectionRefusedError, FileNotFoundError):
        return False
    except (TimeoutError, BlockingIOError):  # a live run, too busy to accept at once
        return True
    except OSError as e:
        raise RunAlreadyServing(f"cannot tell whether a run serves on {path} ({e.strerror or e}); remove the file "
                                "if no run does") from None
    finally:
        probe.close()


class _Viewer:
    """One connection: its reader thread (requests in), its sender thread (frames out), its mailbox."""

    def __init__(self, server: RunServer, sock: socket.socket, ident: int):
        self.server, self.sock, self.ident = server, sock, ident
        self.pid = peer_pid(sock)
        self.cond = threading.Condition()
        self.slot: bytes | None = None  # the newest snapshot not yet sent
        self.offered: bytes | None = None  # the last snapshot put in the slot (not offered twice)
        self.queue: deque[bytes | tuple] = deque()  # frames (and inspection futures) to send before it
        self.closing = False  # send what is queued, then the goodbye, then close
        self.goodbye: bytes | None = None
        self.done = False
        self.pending = 0  # inspections asked and not yet answered
        self.sent = self.coalesced = 0
        self.joined = False  # past the hello: snapshots go to it
        self.sending = 0.0  # monotonic time when the current sendall began (0: not in one)
        self.reason = ""
        self.sender = threading.Thread(target=self._send_loop, name=f"rnntui-viewer-{ident}-out", daemon=True)
        self.reader = threading.Thread(target=self._read_loop, name=f"rnntui-viewer-{ident}-in", daemon=True)

    # -- out -------------------------------------------------------------------------
    def offer(self, frame: bytes) -> None:
        """The newest snapshot's frame: it takes the slot (a frame still there is dropped, never queued)."""
        with self.cond:
            if self.done or self.closing or frame is self.offered:
                return
            if self.slot is not None:
                self.coalesced += 1
            self.slot = self.offered = frame
            self.cond.notify()

    def put(self, item: bytes | tuple) -> None:
        """A frame to send before the next snapshot, or ``(id, future)``: an inspection's answer."""
        with self.cond:
            if self.done or self.closing:
                return
            self.queue.append(item)
            self.cond.notify()

    def bye(self, reason: str, *, ended: bool = False, final: bytes | None = None) -> None:
        """Send what is queued, ``final`` (a last snapshot, when there is one), a goodbye, then close."""
        with self.cond:
            if self.done or self.closing:
                return
            if final is not None and final is not self.offered:
                self.slot = self.offered = final
            self.goodbye = P.encode_message(P.Bye(reason, ended=ended))
            self.closing = True
            self.reason = reason
            self.cond.notify()

    def _next(self) -> bytes | tuple | None:
        """What to send next: the queue, then the snapshot in the slot, then (closing) the goodbye; None: stop."""
        with self.cond:
            while not self.done:
                if self.queue:
                    return self.queue.popleft()
                if self.slot is not None:
                    frame, self.slot = self.slot, None
                    return frame
                if self.closing:
                    goodbye, self.goodbye = self.goodbye, None
                    return goodbye
                self.cond.wait()
            return None

    def _answer(self, ident: int, future: Future) -> bytes:
        """An inspection's answer, encoded here (in this viewer's thread, not the trainer's)."""
        with self.cond:
            self.pending -= 1
        error = future.exception()
        if error is None:
            msg = P.InspectReply(ident, inspection=future.result())
        else:
            msg = P.InspectReply(ident, error=f"{type(error).__name__}: {error}")
        try:
            return P.encode_message(msg)
        except (TypeError, ValueError) as e:
            return P.encode_message(P.InspectReply(ident, error=f"the inspection cannot be sent: {e}"))

    def _send_loop(self) -> None:
        said_bye = False
        try:
            while (item := self._next()) is not None:
                frame = item if isinstance(item, bytes) else self._answer(*item)
                self.sending = time.monotonic()
                self.sock.sendall(frame)
                self.sending = 0.0
                self.sent += 1
            said_bye = self.closing
        except OSError:
            pass
        finally:
            self.sending = 0.0
            if said_bye:  # the goodbye is out: end this side; the reader drains theirs, then closes
                with contextlib.suppress(OSError):
                    self.sock.shutdown(socket.SHUT_WR)
            else:
                self.shutdown()

    # -- in --------------------------------------------------------------------------
    def _read_loop(self) -> None:
        server = self.server
        try:
            self.put(P.encode_message(P.Hello(P.PROTOCOL_VERSION)))
            hello = P.receive(self.sock, P.MAX_REQUEST, allowed=P.REQUEST_TYPES, idle=server.hello_seconds,
                              within=server.frame_seconds)
            if not isinstance(hello, P.Hello):
                raise P.ProtocolError(f"the first message must be a hello, not a {type(hello).__name__}")
            if hello.version != P.PROTOCOL_VERSION:
                self.bye(f"this run speaks protocol {P.PROTOCOL_VERSION}, this viewer {hello.version} "
                         f"(rnntui {hello.software}): watch it with the rnntui that started it")
                return
            self.put(P.encode_message(P.Info(server.info)))
            server._join(self)
            while True:
                msg = P.receive(self.sock, P.MAX_REQUEST, allowed=P.REQUEST_TYPES, within=server.frame_seconds)
                if isinstance(msg, P.CommandRequest):
                    server.source.send(msg.command)
                    server.poke()
                elif isinstance(msg, P.InspectRequest):
                    self._inspect(msg.id)
                else:
                    raise P.ProtocolError(f"a {type(msg).__name__} is not expected now")
        except P.ProtocolError as e:
            server.rejected += 1
            self.bye(f"protocol error: {e}")
        except TimeoutError:
            self.bye("no hello in time")
        except (P.ConnectionClosed, OSError):
            pass
        finally:
            self._close()

    def _inspect(self, ident: int) -> None:
        with self.cond:
            if self.pending >= MAX_PENDING_INSPECTIONS:
                refused = True
            else:
                refused = False
                self.pending += 1
        if refused:
            self.put(P.encode_message(P.InspectReply(ident, error=f"{MAX_PENDING_INSPECTIONS} inspections are "
                                                                  "already waiting; wait for their answers")))
            return
        future: Future = Future()
        # answered in the trainer's thread, between steps: only queue it there (encoded by the sender)
        future.add_done_callback(lambda f: self.put((ident, f)))
        self.server.source.send(Inspect(future))

    # -- the end ---------------------------------------------------------------------
    def shutdown(self) -> None:
        """Cut the connection (both threads then end)."""
        with self.cond:
            self.done = True
            self.cond.notify_all()
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)

    def _close(self) -> None:
        """The reader's way out: let a goodbye go, cut, wait for the sender, close, leave the server."""
        with self.cond:
            closing = self.closing and not self.done
        if closing:
            self.sender.join(BYE_SECONDS)
            self._drain(BYE_SECONDS)
        self.shutdown()
        self.sender.join(BYE_SECONDS)
        self.sock.close()
        self.server._leave(self)

    def _drain(self, seconds: float, most: int = 1 << 20) -> None:
        """Read and drop what the viewer still sends, until it closes (or for ``seconds``, or ``most`` bytes): a
        socket closed with unread bytes in it resets the connection, and the goodbye might not be read."""
        deadline = time.monotonic() + seconds
        dropped = 0
        with contextlib.suppress(OSError, ValueError):
            while dropped < most and (left := deadline - time.monotonic()) > 0:
                ready, _, _ = select.select([self.sock], [], [], left)
                data = self.sock.recv(65536) if ready else b""
                if not data:
                    return
                dropped += len(data)

    def stats(self) -> dict:
        with self.cond:
            queued = sum(len(x) for x in self.queue if isinstance(x, bytes)) + len(self.slot or b"")
            return {"id": self.ident, "pid": self.pid, "sent": self.sent, "coalesced": self.coalesced,
                    "queued_bytes": queued, "queued": len(self.queue) + (self.slot is not None),
                    "sending_for": time.monotonic() - self.sending if self.sending else 0.0}


class RunServer:
    """Serve ``source`` (``send(command)``, ``latest``) on the Unix socket ``path``; see the module docstring.

    ``info`` (a :class:`~rnntui.runs.protocol.RunInfo`) is what each viewer is told of the run first.
    ``start()`` binds and serves from threads of its own; ``close(reason)`` sends each viewer the final
    snapshot and a goodbye, and removes the socket file."""

    def __init__(self, source, path: str | os.PathLike, info: P.RunInfo, *, push_interval: float = PUSH_INTERVAL,
                 max_viewers: int = MAX_VIEWERS, hello_seconds: float = HELLO_SECONDS,
                 frame_seconds: float = FRAME_SECONDS, own_uid: int | None = None):
        self.source, self.path, self.info = source, os.fspath(path), info
        self.push_interval = push_interval
        self.max_viewers = max_viewers
        self.hello_seconds, self.frame_seconds = hello_seconds, frame_seconds
        self.own_uid = os.getuid() if own_uid is None else own_uid
        self.pushed = 0  # snapshots encoded and offered
        self.rejected = 0  # connections closed for a protocol error
        self.refused = 0  # connections refused (another user, too many viewers)
        self._listener: socket.socket | None = None
        self._ino: int | None = None
        self._lock = threading.Lock()
        self._viewers: set[_Viewer] = set()
        self._all: list[_Viewer] = []  # every connection not yet finished, joined or not
        self._ids = 0
        self._wake = threading.Event()
        self._closed = threading.Event()
        self._frame: tuple[object, bytes] | None = None  # (snapshot, its frame): the newest encoded
        self._threads: list[threading.Thread] = []
        self.encode_seconds = 0.0  # time spent encoding snapshots (the pusher's share of the GIL)

    # -- life ------------------------------------------------------------------------
    def start(self) -> RunServer:
        self._listener = bind_socket(self.path, name=self.info.name)
        self._ino = os.stat(self.path).st_ino
        for target, name in ((self._accept_loop, "rnntui-accept"), (self._push_loop, "rnntui-push")):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def __enter__(self) -> RunServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self, reason: str = "the run has ended", *, wait: float = 2.0) -> None:
        """Stop accepting; send every viewer the newest snapshot and a goodbye (``reason``); remove the socket.
        Waits up to ``wait`` seconds for the goodbyes to go out, then cuts the connections that are left."""
        if self._closed.is_set():
            return
        self._closed.set()
        self._wake.set()
        listener, self._listener = self._listener, None
        if listener is not None:
            self._unlink()
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        for t in self._threads:
            t.join(2.0)
        final = self._encode_latest()
        with self._lock:
            everyone = list(self._all)
        for v in everyone:
            v.bye(reason, ended=True, final=final if v.joined else None)
        deadline = time.monotonic() + wait
        for v in everyone:  # goodbyes out, and each viewer gone having read its own (EOF at the reader)
            v.sender.join(max(0.0, deadline - time.monotonic()))
        for v in everyone:
            v.reader.join(max(0.0, deadline - time.monotonic()))
        for v in everyone:  # those that did not read it in time (stuck)
            v.shutdown()
        for v in everyone:
            v.reader.join(1.0)

    def _unlink(self) -> None:
        """Remove the socket file, if it is still ours (a later run may have replaced a stale one)."""
        try:
            if os.stat(self.path).st_ino == self._ino:
                os.unlink(self.path)
        except OSError:
            pass

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    @property
    def viewers(self) -> int:
        with self._lock:
            return len(self._viewers)

    def stats(self) -> list[dict]:
        with self._lock:
            viewers = sorted(self._viewers, key=lambda v: v.ident)
        return [v.stats() for v in viewers]

    def poke(self) -> None:
        """A snapshot may be due sooner (a command was queued): the pusher looks again (within its rate)."""
        self._wake.set()

    # -- connections -----------------------------------------------------------------
    def _accept_loop(self) -> None:
        listener = self._listener
        while not self._closed.is_set():
            try:
                sock, _ = listener.accept()
            except OSError:
                if self._closed.is_set():
                    return
                time.sleep(0.05)  # e.g. out of file descriptors: do not spin
                continue
            self._admit(sock)

    def _admit(self, sock: socket.socket) -> None:
        uid = peer_uid(sock)
        why = None
        if not peer_allowed(uid, self.own_uid):
            why = (f"this run belongs to uid {self.own_uid}; uid {uid} may not watch it" if uid is not None
                   else "this system does not tell who connects, so nobody may")
        with self._lock:
            if why is None and len(self._all) >= self.max_viewers:
                why = f"this run has {self.max_viewers} viewers already"
            if why is None:
                self._ids += 1
                viewer = _Viewer(self, sock, self._ids)
                self._all.append(viewer)
        if why is not None:
            self.refused += 1
            sock.settimeout(BYE_SECONDS)
            with contextlib.suppress(OSError):
                sock.sendall(P.encode_message(P.Hello(P.PROTOCOL_VERSION, ok=False, error=why)))
            sock.close()
            return
        viewer.sender.start()
        viewer.reader.start()

    def _join(self, viewer: _Viewer) -> None:
        """Past its hello: the viewer gets the newest snapshot now and every new one from now on."""
        with self._lock:
            if self._closed.is_set():
                return
            self._viewers.add(viewer)
            viewer.joined = True
            frame = self._frame
        if frame is not None and frame[0] is self.source.latest:
            viewer.offer(frame[1])  # the newest is encoded already: at once
        else:
            self._wake.set()  # the pusher encodes it (within its rate)

    def _leave(self, viewer: _Viewer) -> None:
        with self._lock:
            self._viewers.discard(viewer)
            if viewer in self._all:
                self._all.remove(viewer)

    # -- snapshots -------------------------------------------------------------------
    def _encode_latest(self) -> bytes | None:
        snap = self.source.latest
        if snap is None:
            return None
        frame = self._frame
        if frame is not None and frame[0] is snap:
            return frame[1]
        t0 = time.perf_counter()
        data = P.encode_message(P.SnapshotPush(snap))
        self.encode_seconds += time.perf_counter() - t0
        self._frame = (snap, data)
        return data

    def _push_loop(self) -> None:
        last = 0.0
        while not self._closed.is_set():
            self._wake.wait(self.push_interval)
            self._wake.clear()
            wait = last + self.push_interval - time.monotonic()
            if wait > 0 and self._closed.wait(wait):  # at most one new snapshot every push_interval
                return
            with self._lock:
                viewers = list(self._viewers)
            if not viewers:
                continue  # nobody watches: nothing to encode
            before = self._frame
            frame = self._encode_latest()
            if frame is None:
                continue
            if before is None or frame is not before[1]:
                last = time.monotonic()
                self.pushed += 1
            for v in viewers:
                v.offer(frame)  # (a frame a viewer was offered already is not sent again)


__all__ = ["MAX_PENDING_INSPECTIONS", "PUSH_INTERVAL", "RunAlreadyServing", "RunServer", "bind_socket",
           "peer_allowed", "peer_uid"]
