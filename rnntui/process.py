"""Run a :class:`Trainer` in a child process, so that a view never competes with training for the GIL.

A view in the same process as the trainer costs it more than the view's own CPU time: every
redraw holds the interpreter lock while the trainer waits between its small NumPy calls (the
live app, redrawing at 2 Hz, slowed a (128, 25, 32) run by 6–18 %). :class:`TrainerProcess`
wraps a built trainer and offers what a view uses — ``latest``, ``send`` and ``run`` — with the
training itself in a separate process:

* ``run`` starts the child with the trainer's whole state (``Trainer.state_dict()``: what a
  checkpoint holds, and this session's run state, messages, save marks and claims), forwards
  commands to it through a pipe, receives the snapshots it publishes and, when the child stops,
  loads the child's final state back into the wrapped trainer (``load_state_dict``); so after
  ``run`` returns, ``step``, ``saved_step``, ``save()`` … are those of the finished run.
* ``Inspect`` futures are answered across the pipe.
* If the view's process dies, the child notices the closed pipe, saves (to the trainer's
  checkpoint, else to ``rescue_path`` if there is unsaved progress) and exits: work is not lost.
  Like every save, it replaces no file of another run's: it goes to a free name beside it then
  (``Trainer.save``).
* If the child dies (killed, out of memory), ``latest`` turns into a ``crashed`` snapshot that
  says so; the wrapped trainer keeps the state it had when training started (nothing is saved
  over a newer checkpoint).

Every other attribute (``corpus``, ``checkpoint_path``, ``hyper`` …) is read from the wrapped trainer.
The child ignores SIGINT, SIGHUP and SIGTERM: the terminal sends those to both processes, and the
view decides what happens (stop, save) and tells the child.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from concurrent.futures import Future
from multiprocessing.connection import Connection
from pathlib import Path

from .trainer import CRASHED, Change, ChangeKind, Inspect, Snapshot, Trainer, stop_commands

#: How long ``run`` waits for a child told to stop (by ``stop_event``, or after handing back) before killing it.
STOP_GRACE = 60.0


class TrainerProcess:
    """``trainer``, trained in a child process; see the module docstring."""

    def __init__(self, trainer: Trainer, *, rescue_path: str | None = None):
        self.trainer = trainer
        self.latest: Snapshot | None = trainer.latest
        self.rescue_path = rescue_path  # where an orphaned child saves unsaved progress without a checkpoint
        self.exitcode: int | None = None
        self.pid: int | None = None  # the child's, once started
        self._conn = None
        self._lock = threading.Lock()
        self._pending: list[tuple] = []  # sent before the child runs
        self._futures: dict[int, Future] = {}
        self._ids = 0

    def __getattr__(self, name):
        if name == "trainer":  # not set yet (unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.trainer, name)

    # -- the control channel, across the pipe -------------------------------------
    def send(self, command) -> None:
        with self._lock:
            if isinstance(command, Inspect):
                self._ids += 1
                self._futures[self._ids] = command.future
                msg: tuple = ("inspect", self._ids)
            else:
                msg = ("command", command)
            if self._conn is None:
                if msg[0] == "inspect" and self.exitcode is not None:  # the run is over: nobody will answer
                    self._fail_futures("the training process has ended")
                else:
                    self._pending.append(msg)  # for the child about to start
                return
            try:
                self._conn.send(msg)
            except (OSError, ValueError):  # the child has gone; run() reports it
                self._fail_futures("the training process is not running")

    def _fail_futures(self, why: str) -> None:
        futures, self._futures = self._futures, {}
        for f in futures.values():
            if not f.done():
                f.set_exception(RuntimeError(why))

    # -- running ------------------------------------------------------------------------
    def run(self, *, max_steps: int | None = None, on_step=None, on_publish=None, start_paused: bool = False,
            stop_event: threading.Event | None = None, stay_alive: bool = False) -> str:
        """Like :meth:`Trainer.run`, in a child process (``on_step`` runs there and must pickle)."""
        t = self.trainer
        spec = {
            "corpus": t.corpus, "config": t.config,
            "kwargs": {"checkpoint_path": t.checkpoint_path, "checkpoint_every": t.checkpoint_every,
                       "checkpoint_seconds": t.checkpoint_seconds, "publish_interval": t.publish_interval},
            "state": t.state_dict(), "on_step": on_step, "rescue_path": self.rescue_path,
            "run": {"max_steps": max_steps, "start_paused": start_paused, "stay_alive": stay_alive},
        }
        self.exitcode = None
        here, proc, errors = _start_child()
        self.pid = proc.pid
        try:
            here.send(spec)
        except (OSError, ValueError) as e:  # it died at once (e.g. this Python cannot run it)
            here.close()
            self.exitcode = proc.wait(5.0)
            self._lost(f"the training process could not start: {_last_line(errors) or e}")
            errors.close()
            return CRASHED
        with self._lock:
            self._conn = here
            pending, self._pending = self._pending, []
        for msg in pending:
            self._post(msg)
        final = None
        stop_sent: float | None = None
        try:
            while True:
                if stop_event is not None and stop_event.is_set():
                    if stop_sent is None:
                        self._post(("stop",))
                        stop_sent = time.monotonic()
                    elif time.monotonic() - stop_sent > STOP_GRACE:  # stuck in a step: do not hang the app
                        proc.kill()
                        break
                try:
                    if not here.poll(0.05):
                        if proc.poll() is not None and not here.poll(0):
                            break
                        continue
                    msg = here.recv()
                except (EOFError, OSError):
                    break
                kind = msg[0]
                if kind == "snapshot":
                    self.latest = msg[1]
                    if on_publish:
                        on_publish(msg[1])
                elif kind == "inspected":
                    future = self._futures.pop(msg[1], None)
                    if future is not None and not future.done():
                        (future.set_exception if msg[2] == "error" else future.set_result)(msg[3])
                elif kind == "done":
                    final = msg[1]
                    break
                elif kind == "failed":  # could not even build the trainer
                    self._lost(msg[1])
                    break
        finally:
            with self._lock:
                self._conn = None
            here.close()
            try:
                proc.wait(STOP_GRACE if final is not None else 5.0)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            self.exitcode = proc.returncode
            self._fail_futures("the training process has ended")
        said = _last_line(errors)
        errors.close()
        if final is None:
            if self.latest is None or self.latest.state != CRASHED:
                self._lost(f"the training process ended unexpectedly ({_how(proc.returncode)}"
                           + (f": {said}" if said else "") + ")")
            return CRASHED
        t.load_state_dict(final)
        t.latest = self.latest
        return t.state

    def _post(self, msg: tuple) -> bool:
        with self._lock:
            try:
                if self._conn is not None:
                    self._conn.send(msg)
                    return True
            except (OSError, ValueError):
                pass
        return False

    def _lost(self, why: str) -> None:
        """The child is gone without handing its state back: say so in a crashed snapshot."""
        snap = self.latest
        step = snap.step if snap else self.trainer.step
        text = (f"CRASHED: {why}; the parameters since the last checkpoint"
                + (f" (step {snap.saved_step})" if snap and snap.saved_step is not None else "") + " are lost")
        change = Change(step, ChangeKind.CRASHED, text)
        if snap is None:
            snap = self.trainer.snapshot()
        self.latest = dataclasses.replace(snap, state=CRASHED, error=why, message=change.line,
                                          changes=snap.changes + (change,), version=snap.version + 1,
                                          time=time.monotonic())


def _start_child():
    """The child interpreter, with one end of a socket pair as its connection to us.

    A plain ``python -c`` rather than multiprocessing's spawn, which would re-run the user's main
    script in the child; stderr goes to a temporary file whose last line explains an early death.
    """
    ours, theirs = socket.socketpair()
    package_parent = str(Path(__file__).resolve().parent.parent)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_parent, env.get("PYTHONPATH", "")) if p)
    errors = tempfile.TemporaryFile()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-c", "import sys; from rnntui.process import child_main; child_main(int(sys.argv[1]))",
             str(theirs.fileno())],
            pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=errors,
            start_new_session=True, env=env)  # no controlling terminal: the screen stays the view's
    finally:
        theirs.close()
    return Connection(ours.detach()), proc, errors


def _last_line(f) -> str:
    try:
        f.seek(0)
        lines = [ln for ln in f.read().decode(errors="replace").splitlines() if ln.strip()]
        return lines[-1].strip()[:300] if lines else ""
    except (OSError, ValueError):
        return ""


def _how(code: int | None) -> str:
    if code is None:
        return "it did not exit"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


# -- the child ------------------------------------------------------------------------------


def child_main(fd: int) -> None:
    """The child's entry point: receive the trainer's spec on connection ``fd`` and train."""
    conn = Connection(fd)
    spec = conn.recv()
    _child_main(conn, spec)


def _child_main(conn, spec: dict) -> None:
    for sig in (signal.SIGINT, getattr(signal, "SIGHUP", None), signal.SIGTERM):
        if sig is not None:
            signal.signal(sig, signal.SIG_IGN)  # the view's process decides; see the module docstring
    sys.stdout = open(os.devnull, "w")  # noqa: SIM115 — for the life of the process (stderr: see _start_child)
    lock = threading.Lock()

    def post(msg: tuple) -> None:
        with lock:
            try:
                conn.send(msg)
            except (OSError, ValueError):
                pass  # the view has gone; the reader thread handles that

    try:
        trainer = Trainer(spec["corpus"], spec["config"], **spec["kwargs"])
        trainer.load_state_dict(spec["state"])
    except Exception as e:  # noqa: BLE001 — reported to the view
        post(("failed", f"the training process could not start: {type(e).__name__}: {e}"))
        return
    stop = threading.Event()
    running = threading.Event()
    running.set()

    def answer(future: Future, ident: int) -> None:
        e = future.exception()
        post(("inspected", ident, "error", e) if e is not None else ("inspected", ident, "ok", future.result()))

    def read() -> None:
        while True:
            try:
                msg = conn.recv()
            except (EOFError, OSError):
                if running.is_set():  # the view has gone: keep the work, then stop
                    for command in stop_commands(trainer, spec["rescue_path"]):
                        trainer.send(command)
                return
            kind = msg[0]
            if kind == "command":
                trainer.send(msg[1])
            elif kind == "inspect":
                f: Future = Future()
                f.add_done_callback(lambda f, ident=msg[1]: answer(f, ident))
                trainer.send(Inspect(f))
            elif kind == "stop":
                stop.set()

    threading.Thread(target=read, name="rnntui-commands", daemon=True).start()
    try:
        trainer.run(**spec["run"], on_step=spec["on_step"], stop_event=stop,
                    on_publish=lambda snap: post(("snapshot", snap)))
    except BaseException:  # noqa: BLE001 — run() keeps step errors itself; anything else still hands back
        trainer.error = traceback.format_exc()
    running.clear()
    post(("done", trainer.state_dict()))


__all__ = ["TrainerProcess"]
