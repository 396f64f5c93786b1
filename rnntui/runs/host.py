"""A run's own process: its trainer trained in the main thread and served on its socket until it ends.

:func:`serve` is what ``rnntui CORPUS`` (in the background), ``rnntui CORPUS --detach`` and ``rnntui
CORPUS --headless`` run in the process that trains. It

* writes the run folder's ``run.json`` (:meth:`RunFolder.start`), then serves the trainer on the folder's
  socket (:class:`~rnntui.runs.server.RunServer`) for as many viewers as connect;
* keeps ``status`` in run.json at every save (what ``rnntui runs`` shows if the process dies later);
* stops between steps and saves on SIGTERM or SIGINT (``trainer.stop_commands``); a hang-up (SIGHUP) is
  ignored unless ``hangup_stops``: a run in the background has no terminal to lose;
* at the end marks run.json with how it ended (:meth:`RunFolder.mark_end`), sends every viewer the final
  snapshot and a goodbye saying so, and removes its socket.

A failed write of run.json (a full disk) never ends the run: the training and its checkpoint matter more.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable

from ..trainer import Trainer, stop_commands
from .folders import RunFolder
from .protocol import RunInfo
from .server import PUSH_INTERVAL, RunServer


def end_words(state: str, step: int) -> str:
    """What a viewer is told when the run ends: ``"the run has stopped at step 120"``."""
    return f"the run has {state} at step {step}"


def serve(trainer: Trainer, folder: RunFolder, *, max_steps: int | None = None, start_paused: bool = False,
          stay_alive: bool = False, on_step: Callable[[Trainer], None] | None = None,
          on_publish: Callable | None = None, on_ready: Callable[[RunServer], None] | None = None,
          hangup_stops: bool = False, push_interval: float = PUSH_INTERVAL) -> str:
    """Train ``trainer`` in this thread, served from ``folder``, until it ends; returns its final state.

    ``on_ready(server)`` runs once the socket is up (e.g. to print the run's name and how to watch it);
    ``max_steps``, ``start_paused``, ``stay_alive``, ``on_step`` and ``on_publish`` are
    :meth:`Trainer.run`'s. Signal handlers are installed only when this is the main thread."""
    folder.start(trainer.corpus.path, trainer.config)
    info = RunInfo.of(trainer, name=folder.name, run_dir=str(folder.path),
                      started=folder.record().get("started"))
    server = RunServer(trainer, folder.socket_path, info, push_interval=push_interval).start()
    saved = [trainer.saved_step]

    def published(snap) -> None:
        if snap.saved_step != saved[0]:
            saved[0] = snap.saved_step
            with contextlib.suppress(OSError):
                folder.note_status(snap)
        server.poke()
        if on_publish is not None:
            on_publish(snap)

    def stop(signum, frame) -> None:
        for command in stop_commands(trainer.latest or trainer):
            trainer.send(command)

    previous = _install({signal.SIGTERM: stop, signal.SIGINT: stop,
                         signal.SIGHUP: stop if hangup_stops else signal.SIG_IGN})
    try:
        if on_ready is not None:
            on_ready(server)
        state = trainer.run(max_steps=max_steps, start_paused=start_paused, stay_alive=stay_alive, on_step=on_step,
                            on_publish=published)
    finally:
        _install(previous)
        snap = trainer.latest or trainer.publish()
        with contextlib.suppress(OSError):
            folder.mark_end(snap)
        server.close(end_words(str(snap.state), snap.step))
    return state


def _install(handlers: dict) -> dict:
    """Set these signal handlers (in the main thread only); returns the ones they replace."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {sig: signal.signal(sig, handler) for sig, handler in handlers.items() if handler is not None}


__all__ = ["end_words", "serve"]
