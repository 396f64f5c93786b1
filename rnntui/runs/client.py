"""What a view knows of a run: the :class:`RunClient` interface, in process and over a run's socket.

A view (the app, a headless reporter, ``rnntui runs``) depends on this interface only:

``latest()``      the newest snapshot (None before the first)
``send(cmd)``     queue one of the trainer's commands (Pause, Resume, Set, SampleNow, SaveCheckpoint, Stop);
                  an ``Inspect(future)`` is answered through ``inspect`` as well
``inspect()``     a Future of a :class:`~rnntui.derivation.Inspection`, answered between two steps
``info``          the run's :class:`~rnntui.runs.protocol.RunInfo`: name, pid, corpus, vocabulary, checkpoint
``ended``         whether the run (or the connection to it) is over; ``end_reason`` says how
``attach()``      a view's first act (an in-process run starts training then)
``close()``       let go of the run (detach): the run goes on

:class:`InProcessClient` wraps a :class:`~rnntui.trainer.Trainer` of this process (tests, a library user);
:class:`SocketRunClient` talks to a run's :class:`~rnntui.runs.server.RunServer`.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from concurrent.futures import Future

from ..trainer import Inspect, Snapshot
from . import protocol as P
from .protocol import ProtocolError, RunInfo


class RunUnavailable(RuntimeError):
    """No run answers at that address (it has ended, or died), or it did not answer in time."""


class RunRefused(RuntimeError):
    """The run would not be watched by this viewer (another user, another protocol version); the message says why."""


class RunEnded(RuntimeError):
    """The run has ended, or the connection to it is lost, before an answer came."""


def checked(command):
    """``command`` if it is one of the trainer's commands with fields of the types the protocol carries (NumPy
    scalars in a ``Set`` become Python numbers); else TypeError. Both clients send only what the other would."""
    if isinstance(command, P.Set) and isinstance(command.changes, dict):
        command = P.Set({k: v.item() if hasattr(v, "item") and not isinstance(v, str) else v
                         for k, v in command.changes.items()})
    try:
        P.check_command(command)
    except ProtocolError as e:
        raise TypeError(str(e)) from None
    return command


class RunClient(ABC):
    """One run, as a view sees it; see the module docstring."""

    @property
    @abstractmethod
    def info(self) -> RunInfo: ...

    @abstractmethod
    def latest(self) -> Snapshot | None: ...

    @abstractmethod
    def send(self, command) -> bool:
        """Queue ``command`` for the trainer (applied between steps, confirmed in a later snapshot). False when
        the run is over and nothing was sent. A value that is not a command raises TypeError."""

    @abstractmethod
    def inspect(self) -> Future:
        """A Future of the run's :class:`~rnntui.derivation.Inspection` (it fails with RunEnded if the run ends)."""

    @property
    def ended(self) -> bool:
        return False

    @property
    def end_reason(self) -> str | None:
        return None

    def attach(self) -> None:  # noqa: B027 — nothing to do by default
        """A view's first act, once it is ready to show the run (an in-process run starts training here)."""

    @property
    def run_ended(self) -> bool:
        """Whether the run itself has ended (not only this connection to it)."""
        return self.ended

    def close(self) -> None:  # noqa: B027 — nothing to let go of by default
        """Let go of the run; it goes on."""

    def inspection(self, timeout: float = 30.0):
        """:meth:`inspect`, waited for (TimeoutError after ``timeout`` seconds)."""
        return self.inspect().result(timeout)

    def wait_snapshot(self, after: int | None = None, timeout: float = 5.0) -> Snapshot | None:
        """The newest snapshot once there is one of a version above ``after`` (None: any), or None after
        ``timeout`` seconds or when the run has ended without one."""
        deadline = time.monotonic() + timeout
        while True:
            snap = self.latest()
            if snap is not None and (after is None or snap.version > after):
                return snap
            if self.ended or time.monotonic() >= deadline:
                return None
            time.sleep(0.01)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class InProcessClient(RunClient):
    """A :class:`~rnntui.trainer.Trainer` of this process, as a run (tests, a library user).

    ``InProcessClient(trainer, run={...})`` trains it (``trainer.run(**run)``, then the run's end as a served
    run has it: :func:`rnntui.runs.host.finish`) in a thread of its own, started by :meth:`attach` (a view's
    first act) and stopped by :meth:`close`; ``start`` makes one and attaches at once. Without ``run``
    (and ``thread``) the trainer is one that something else trains: this only views it."""

    def __init__(self, trainer, *, info: RunInfo | None = None, name: str = "in-process",
                 thread: threading.Thread | None = None, run: dict | None = None):
        self.trainer = trainer
        self._info = info or RunInfo.of(trainer, name=name)
        self.thread = thread
        self._run = run
        self._stop = threading.Event()
        self.end = None  # the run's RunEnd, once its thread has finished it

    @classmethod
    def start(cls, trainer, *, name: str = "in-process", **run) -> InProcessClient:
        """``trainer.run(**run)`` in a daemon thread, started now, and a client of it."""
        client = cls(trainer, name=name, run=run)
        client.attach()
        return client

    def attach(self) -> None:
        if self._run is not None and self.thread is None:
            self.thread = threading.Thread(target=self._train, name="rnntui-trainer", daemon=True)
            self.thread.start()

    def _train(self) -> None:
        from .host import finish

        state = self.trainer.run(stop_event=self._stop, **self._run)
        self.end = finish(self.trainer, state)

    @property
    def info(self) -> RunInfo:
        return self._info

    def latest(self) -> Snapshot | None:
        return self.trainer.latest

    def send(self, command) -> bool:
        if isinstance(command, Inspect):
            self.trainer.send(command)
        else:
            self.trainer.send(checked(command))
        return not self.ended

    def inspect(self) -> Future:
        future: Future = Future()
        if self.ended:
            future.set_exception(RunEnded("the run has ended"))
        else:
            self.trainer.send(Inspect(future))
        return future

    @property
    def ended(self) -> bool:
        return self.thread is not None and not self.thread.is_alive()

    @property
    def end_reason(self) -> str | None:
        if not self.ended:
            return None
        return self.end.words if self.end is not None else "the run has ended"

    def close(self) -> None:
        """A run this client trains stops (between steps, as at a Stop) and its thread is waited for."""
        if self._run is not None and self.thread is not None:
            self._stop.set()
            self.join(30)

    def join(self, timeout: float | None = None) -> None:
        if self.thread is not None:
            self.thread.join(timeout)


class SocketRunClient(RunClient):
    """A run served by a :class:`~rnntui.runs.server.RunServer`, over its Unix socket. Use :meth:`connect`.

    A thread of its own reads what the run pushes: ``latest()`` is the newest snapshot received, and
    ``on_snapshot`` (optional) is called in that thread with each one. When the connection ends (the run
    ended, died, or closed it for a reason it gives), ``ended`` turns True, ``end_reason`` says why, the
    last snapshot stays, and the inspections still waiting fail with :class:`RunEnded`."""

    def __init__(self, sock: socket.socket, info: RunInfo, *, on_snapshot: Callable[[Snapshot], None] | None = None):
        self._sock, self._info, self.on_snapshot = sock, info, on_snapshot
        self._latest: Snapshot | None = None
        self._send_lock = threading.Lock()
        self._lock = threading.Lock()
        self._futures: dict[int, Future] = {}
        self._ids = 0
        self._ended = threading.Event()
        self._reason: str | None = None
        self._run_ended = False  # the run said it has ended (not only this connection)
        self.received = 0  # snapshots received
        self._reader = threading.Thread(target=self._read_loop, name="rnntui-run-client", daemon=True)
        self._reader.start()

    @classmethod
    def connect(cls, path: str, *, timeout: float = 5.0,
                on_snapshot: Callable[[Snapshot], None] | None = None) -> SocketRunClient:
        """Connect to the run serving at ``path`` and say hello. Raises :class:`RunUnavailable` (nobody serves
        there, or no answer within ``timeout`` seconds) or :class:`RunRefused` (with the run's reason)."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            try:
                sock.connect(path)
            except (FileNotFoundError, ConnectionRefusedError):
                raise RunUnavailable(f"no run serves at {path}: it has ended or died") from None
            except OSError as e:
                raise RunUnavailable(f"cannot connect to the run at {path}: {e.strerror or e}") from None
            info = cls._handshake(sock, path, timeout)
            sock.settimeout(None)
        except BaseException:
            sock.close()
            raise
        return cls(sock, info, on_snapshot=on_snapshot)

    @staticmethod
    def _handshake(sock: socket.socket, path: str, timeout: float) -> RunInfo:
        try:
            hello = P.receive(sock, P.MAX_REQUEST, allowed=frozenset({"Hello"}), idle=timeout, within=timeout)
            if hello.version != P.PROTOCOL_VERSION:
                raise RunRefused(P.version_mismatch(hello.version, hello.software))
            if not hello.ok:
                raise RunRefused(f"the run refused this viewer: {hello.error}")
            sock.sendall(P.encode_message(P.Hello(P.PROTOCOL_VERSION)))
            msg = P.receive(sock, P.MAX_FRAME, allowed=P.REPLY_TYPES, idle=timeout, within=timeout)
        except (TimeoutError, P.ConnectionClosed):
            raise RunUnavailable(f"the run at {path} did not answer") from None
        except ProtocolError as e:
            raise RunUnavailable(f"the run at {path} answered in a way this rnntui cannot read: {e}") from None
        except OSError as e:
            raise RunUnavailable(f"lost the connection to the run at {path}: {e.strerror or e}") from None
        if isinstance(msg, P.Bye):
            raise RunRefused(f"the run refused this viewer: {msg.reason}")
        if not isinstance(msg, P.Info):
            raise RunUnavailable(f"the run at {path} sent a {type(msg).__name__} before its info")
        return msg.info

    # -- the interface -------------------------------------------------------------
    @property
    def info(self) -> RunInfo:
        return self._info

    def latest(self) -> Snapshot | None:
        return self._latest

    @property
    def ended(self) -> bool:
        return self._ended.is_set()

    @property
    def end_reason(self) -> str | None:
        return self._reason

    @property
    def run_ended(self) -> bool:
        return self._run_ended

    def send(self, command) -> bool:
        if isinstance(command, Inspect):
            self.inspect(command.future)
            return not self.ended
        return self._post(P.CommandRequest(checked(command)))

    def inspect(self, future: Future | None = None) -> Future:
        future = future or Future()
        with self._lock:
            if self.ended:
                future.set_exception(RunEnded(self._reason or "the run has ended"))
                return future
            self._ids += 1
            ident = self._ids
            self._futures[ident] = future
        if not self._post(P.InspectRequest(ident)):
            self._fail(ident)
        return future

    def close(self) -> None:
        """Detach: the run goes on."""
        self._finish("this viewer closed the connection")
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        if threading.current_thread() is not self._reader:
            self._reader.join(2.0)
        self._sock.close()

    # -- the connection ----------------------------------------------------------------
    def _post(self, msg) -> bool:
        if self.ended:
            return False
        frame = P.encode_message(msg)
        try:
            with self._send_lock:
                self._sock.sendall(frame)
        except OSError:
            return False  # the reader sees the connection end and says why
        return True

    def _read_loop(self) -> None:
        reason = "the connection to the run was lost"
        try:
            while True:
                msg = P.receive(self._sock, P.MAX_FRAME, allowed=P.REPLY_TYPES)
                if isinstance(msg, P.SnapshotPush):
                    self._latest = msg.snapshot
                    self.received += 1
                    if self.on_snapshot is not None:
                        self.on_snapshot(msg.snapshot)
                elif isinstance(msg, P.InspectReply):
                    self._answer(msg)
                elif isinstance(msg, P.Bye):
                    reason, self._run_ended = msg.reason, msg.ended
                    break
                else:
                    raise ProtocolError(f"a {type(msg).__name__} is not expected now")
        except ProtocolError as e:
            reason = f"the run sent something this viewer cannot read: {e}"
        except (P.ConnectionClosed, OSError):
            pass
        except Exception as e:  # noqa: BLE001 — on_snapshot failed: the connection ends, and says why
            reason = f"this viewer failed on a snapshot: {type(e).__name__}: {e}"
        self._finish(reason)
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)

    def _answer(self, msg: P.InspectReply) -> None:
        with self._lock:
            future = self._futures.pop(msg.id, None)
        if future is None or future.done():
            return
        if msg.error is not None or msg.inspection is None:
            future.set_exception(RuntimeError(msg.error or "the run sent no inspection"))
        else:
            future.set_result(msg.inspection)

    def _fail(self, ident: int) -> None:
        with self._lock:
            future = self._futures.pop(ident, None)
        if future is not None and not future.done():
            future.set_exception(RunEnded(self._reason or "the run has ended"))

    def _finish(self, reason: str) -> None:
        with self._lock:
            if self._ended.is_set():
                return
            self._reason = reason
            self._ended.set()
            futures, self._futures = self._futures, {}
        for f in futures.values():
            if not f.done():
                f.set_exception(RunEnded(reason))


def probe(path: str, *, timeout: float = 2.0) -> tuple[RunInfo, Snapshot | None]:
    """The info and the newest snapshot of the run serving at ``path`` (for ``rnntui runs``); raises as
    :meth:`SocketRunClient.connect` does."""
    with SocketRunClient.connect(path, timeout=timeout) as client:
        return client.info, client.wait_snapshot(timeout=timeout)


__all__ = ["InProcessClient", "RunClient", "RunEnded", "RunRefused", "RunUnavailable", "SocketRunClient", "checked",
           "probe"]
