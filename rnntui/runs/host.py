"""A run's own process: its trainer trained in the main thread and served on its socket until it ends.

This is the one run controller: what happens when a run starts, saves, is told to stop, and ends.
:func:`serve` is what ``rnntui CORPUS`` (in the background), ``rnntui CORPUS --detach`` and ``rnntui
CORPUS --headless`` (in the foreground) run in the process that trains. It

* writes the run folder's ``run.json`` (:meth:`RunFolder.start`), then serves the trainer on the folder's
  socket (:class:`~rnntui.runs.server.RunServer`) for as many viewers as connect;
* writes the run's figures to its folder's ``metrics.jsonl`` (and to ``--metrics PATH`` too);
* keeps ``status`` in run.json at every save (what ``rnntui runs`` shows if the process dies later);
* stops between steps and saves on SIGTERM or SIGINT (``trainer.stop_commands``); a hang-up (SIGHUP) is
  ignored unless ``hangup_stops``: a run in the background has no terminal to lose;
* at the end saves what no file holds yet (:func:`save_at_end`), marks run.json with how it ended
  (:meth:`RunFolder.mark_end`), sends every viewer the final snapshot and a goodbye that says where the run
  was saved, and removes its socket.

A failed write of run.json or of the metrics (a full disk) never ends the run: the training and its
checkpoint matter more.
"""

from __future__ import annotations

import contextlib
import os
import signal
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..trainer import CRASHED, DIVERGED, STOPPED, ChangeKind, RunState, Trainer, stop_commands, unsaved
from .folders import RunFolder
from .metrics import MetricsLog
from .protocol import RunInfo
from .server import PUSH_INTERVAL, RunServer


@dataclass(frozen=True)
class RunEnd:
    """How a served run ended: its state, and the line that says where its training is kept."""

    state: RunState
    step: int
    note: str  # "checkpoint: PATH (step N)" / "not saved: …" / why the last save failed
    failure: str | None = None  # why the last save did not happen (then ``note`` says where it went instead)

    @property
    def words(self) -> str:
        """What a viewer is told: ``"the run has stopped at step 120; checkpoint: … (step 120)"``."""
        return f"{end_words(str(self.state), self.step)}; {self.note}"


def end_words(state: str, step: int) -> str:
    """``"the run has stopped at step 120"``."""
    return f"the run has {state} at step {step}"


def serve(trainer: Trainer, folder: RunFolder, *, max_steps: int | None = None, start_paused: bool = False,
          stay_alive: bool = False, on_step: Callable[[Trainer], None] | None = None,
          on_publish: Callable | None = None, on_ready: Callable[[RunServer], None] | None = None,
          hangup_stops: bool = False, push_interval: float = PUSH_INTERVAL, log_every: int = 100,
          metrics_paths: tuple[str, ...] = (), signals: bool = True) -> RunEnd:
    """Train ``trainer`` in this thread, served from ``folder``, until it ends; returns how it ended.

    ``on_ready(server)`` runs once the socket is up (e.g. to print the run's name and how to watch it);
    ``max_steps``, ``start_paused``, ``stay_alive``, ``on_step`` and ``on_publish`` are
    :meth:`Trainer.run`'s. The figures go to the folder's metrics.jsonl and to each of ``metrics_paths``
    every ``log_every`` steps. Signal handlers are installed only when this is the main thread (and
    ``signals``)."""
    folder.start(trainer.corpus.path, trainer.config, checkpoint=trainer.checkpoint_path)
    info = RunInfo.of(trainer, name=folder.name, run_dir=str(folder.path),
                      started=folder.record().get("started"))
    logs = [MetricsLog(str(p), log_every) for p in (folder.metrics_path, *metrics_paths)]
    server = RunServer(trainer, folder.socket_path, info, push_interval=push_interval).start()
    saved = [trainer.saved_step]

    def stepped(t: Trainer) -> None:
        for log in logs:
            log(t)
        if on_step is not None:
            on_step(t)

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

    handlers = {signal.SIGTERM: stop, signal.SIGINT: stop, signal.SIGHUP: stop if hangup_stops else signal.SIG_IGN}
    previous = _install(handlers) if signals else {}
    end: RunEnd | None = None
    try:
        if on_ready is not None:
            on_ready(server)
        state = trainer.run(max_steps=max_steps, start_paused=start_paused, stay_alive=stay_alive, on_step=stepped,
                            on_publish=published)
        end = finish(trainer, state)
    finally:
        _install(previous)
        for log in logs:
            log.close()
        snap = trainer.publish()
        with contextlib.suppress(OSError):
            folder.mark_end(snap)
        server.close(end.words if end is not None else end_words(str(snap.state), snap.step))
    return end


def finish(trainer: Trainer, state: RunState) -> RunEnd:
    """The end of a run whose loop has returned ``state``: what no file holds yet is saved (to the run's
    checkpoint; when that fails, to a rescue file), unless the Stop said to discard them; and how it ended is
    told in one line."""
    if trainer.discarding:
        return RunEnd(state, trainer.step, save_note(trainer, "stopped without saving, as asked"))
    # a run stopped while diverged or crashed (headless stops it so) ended as that, for its last save
    ended = trainer.stopped_from if state == STOPPED and trainer.stopped_from in (DIVERGED, CRASHED) else state
    _, failure = save_at_end(trainer, ended=ended)
    if failure:
        note = failure_note(trainer.saved_path if trainer.saved_step == trainer.step else None, failure)
    else:
        note = save_note(trainer, "" if trainer.checkpoint_path else NO_CHECKPOINT)
    return RunEnd(state, trainer.step, note, failure)


def _install(handlers: dict) -> dict:
    """Set these signal handlers (in the main thread only); returns the ones they replace."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {sig: signal.signal(sig, handler) for sig, handler in handlers.items() if handler is not None}


# -- the last save ----------------------------------------------------------------------------------


def save_or_rescue(trainer: Trainer, path: str | None = None) -> tuple[str | None, str | None]:
    """Save to ``path`` (default: the trainer's checkpoint); when that fails, to the temporary folder.

    Returns ``(where it was saved or None, why the first save failed or None)``. For the end of a
    run, when the trainer thread has stopped: whatever can be kept is kept.
    """
    path = path or trainer.checkpoint_path
    before = trainer.changes[-1] if trainer.changes else None
    saved = trainer.save(path)  # (to a free name beside path when that file is another run's)
    if saved:
        return saved, None
    last = trainer.changes[-1] if trainer.changes else None  # the save's own report of why, if it made one
    told = last is not None and last is not before and last.kind == ChangeKind.SAVE_FAILED
    why = last.text if told else f"checkpoint NOT saved to {path}"
    rescue = str(Path(tempfile.gettempdir()) / f"{Path(path).stem}.rescue-{os.getpid()}.npz")
    return trainer.save(rescue), why


def save_at_end(trainer: Trainer, fallback: str | None = None, *,
                ended: RunState | None = None) -> tuple[str | None, str | None]:
    """The last save of a run that has stopped (its thread has ended), however it stopped: whatever no file
    holds yet is saved to the checkpoint path, or without one to ``fallback`` (None: nowhere), through
    :func:`save_or_rescue`; returns what that returns, ``(None, None)`` when nothing needed saving.

    A run that ``ended`` diverged or crashed is saved to its checkpoint path even when its step is: it goes
    on from the parameters it kept, which the last save may not hold.
    """
    path = trainer.checkpoint_path or fallback
    if path and (unsaved(trainer) or (trainer.checkpoint_path and ended in (DIVERGED, CRASHED))):
        return save_or_rescue(trainer, path)
    return None, None


#: What :func:`save_note` adds headless, where only ``--checkpoint`` (or ``--resume``) saves.
NO_CHECKPOINT = "no --checkpoint PATH given"


def save_note(trainer: Trainer, unsaved_because: str = "") -> str:
    """The line that ends a run: where its training was saved, "checkpoint: PATH (step N)", and what was not,
    "not saved: N steps discarded" (``unsaved_because`` in brackets after it)."""
    snap = trainer.latest  # a view's trainer may be behind its snapshots (a training process that died)
    step = max(trainer.step, snap.step if snap else 0)
    saved_step, saved_path = trainer.saved_step, trainer.saved_path
    if snap is not None and snap.saved_step is not None and (saved_step is None or snap.saved_step > saved_step):
        saved_step, saved_path = snap.saved_step, snap.saved_path
    because = f" ({unsaved_because})" if unsaved_because else ""
    if saved_step is None or saved_path is None:
        return f"not saved: {_steps(step)} discarded{because}" if step else "not saved: no step was trained"
    note = f"checkpoint: {saved_path} (step {saved_step})"
    return note + (f"; not saved: the last {_steps(step - saved_step)} discarded{because}" if step > saved_step
                   else "")


def _steps(n: int) -> str:
    return f"{n} step" + ("" if n == 1 else "s")


def failure_note(saved: str | None, failure: str) -> str:
    """``failure`` (why the save did not happen), and where the training went instead (``saved``), if anywhere."""
    return failure + (f"; saved to {saved} instead" if saved else "; the training since the last save is lost")


__all__ = ["NO_CHECKPOINT", "RunEnd", "end_words", "failure_note", "finish", "save_at_end", "save_note",
           "save_or_rescue", "serve"]
