"""Starting a run in the background: a process of its own, in its own session, that outlives the terminal.

``rnntui CORPUS`` and ``rnntui CORPUS --detach`` start ``python -m rnntui _serve --ready-fd N -- ARGS``
(ARGS: the training options as given) and wait for it to be ready:

* the run's process builds its trainer from the same options (every refusal is its, word for word: it
  prints the one line and exits 2 before anything is made), makes its run folder, and serves;
* once its socket answers it writes ``{"name", "socket", "pid", "step", "checkpoint"}`` (JSON) to the ready
  pipe and closes it, then sends its own output to the run's ``log.txt``;
* what it printed before that (a refusal, a note) is passed on by the starting process, so a refused run
  looks exactly like a refused ``--headless`` one.

The run's process has no terminal (its own session, stdin from /dev/null), so a dropped SSH connection
does not reach it: only ``rnntui stop``, a viewer's "stop", SIGTERM or the end of its training end it.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

#: How long a run may take to be ready (it loads its corpus and builds its model first).
READY_TIMEOUT = 300.0


class LaunchFailed(RuntimeError):
    """The run's process ended (or hung) before it was ready. ``output`` is what it printed, ``code`` its exit
    code (2: a usage error, said in ``output``)."""

    def __init__(self, message: str, output: str = "", code: int = 1):
        super().__init__(message)
        self.output, self.code = output, code


@dataclass(frozen=True)
class Started:
    """A run started in the background and ready to be watched."""

    name: str
    socket: str
    pid: int
    step: int
    checkpoint: str | None
    notes: str  # what it printed while starting (notes and warnings), to pass on


def start(args: list[str], *, timeout: float = READY_TIMEOUT, env: dict | None = None) -> Started:
    """Start the run of the training options ``args`` in the background; return once it serves.

    Raises :class:`LaunchFailed` when it does not get there (its output says why)."""
    r, w = os.pipe()
    cmd = [sys.executable, "-m", "rnntui", "_serve", "--ready-fd", str(w), "--", *args]
    try:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                pass_fds=(w,), start_new_session=True, env=env)
    except OSError as e:
        os.close(r)
        os.close(w)
        raise LaunchFailed(f"cannot start the run's process: {e.strerror or e}") from None
    os.close(w)
    output = bytearray()
    try:
        ready = _read_ready(r, proc, timeout, output)
    except BaseException:  # Ctrl+C while it starts, a timeout: it must not train on unseen
        with contextlib.suppress(OSError):
            os.killpg(proc.pid, signal.SIGTERM)
        raise
    finally:
        os.close(r)
    if ready is None:
        code = proc.wait()
        text = (bytes(output) + proc.stderr.read()).decode("utf-8", "replace")
        proc.stderr.close()
        last = text.strip().splitlines()[-1] if text.strip() else ""
        raise LaunchFailed(last or f"the run's process ended before it was ready (exit code {code})", text,
                           code if code else 1)
    # the pipe closes when the run turns its output to its log
    notes = (bytes(output) + proc.stderr.read()).decode("utf-8", "replace")
    proc.stderr.close()
    return Started(ready["name"], ready["socket"], int(ready["pid"]), int(ready.get("step") or 0),
                   ready.get("checkpoint"), notes)


def _read_ready(fd: int, proc: subprocess.Popen, timeout: float, output: bytearray) -> dict | None:
    """The run's ready message, or None when it ended without one. What the process prints meanwhile is
    gathered into ``output`` (lest a long output fill its pipe and stop it before it is ready)."""
    deadline = time.monotonic() + timeout
    err = proc.stderr.fileno()
    data = b""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise LaunchFailed(f"the run did not get ready within {timeout:.0f} s; its process was stopped")
        readable, _, _ = select.select([fd, err] if err is not None else [fd], [], [], min(left, 1.0))
        if err in readable:
            chunk = os.read(err, 65536)
            output += chunk
            if not chunk:
                err = None  # (its output closed: the ready pipe says the rest)
        if fd not in readable:
            continue
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        data += chunk
    if not data:
        return None
    try:
        ready = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    return ready if isinstance(ready, dict) and "name" in ready and "socket" in ready else None


def tell_ready(fd: int, **fields) -> None:
    """In the run's process: say it is ready (``fields`` as :class:`Started` has them) and close the pipe."""
    with contextlib.suppress(OSError):
        os.write(fd, json.dumps(fields).encode("utf-8"))
    with contextlib.suppress(OSError):
        os.close(fd)


def to_log(path: str) -> None:
    """In the run's process: from now on, what it prints goes to its log (append), not to whoever started it."""
    sys.stdout.flush()
    sys.stderr.flush()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


__all__ = ["READY_TIMEOUT", "LaunchFailed", "Started", "start", "tell_ready", "to_log"]
