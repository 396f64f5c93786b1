"""Headless mode: a run in the foreground that prints progress lines instead of opening the app.

It is a run like any other (:func:`rnntui.runs.host.serve`: a run folder, its checkpoint, its metrics,
its socket), so a second terminal can ``rnntui watch`` it; this process trains in its main thread and
prints. Ctrl+C, SIGTERM and SIGHUP stop it between steps and save; a divergence or a crash ends it (a
watcher could resume it, but nobody is asked to).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import traceback
from typing import TextIO

from .runs.folders import RunFolder
from .runs.host import finish, serve
from .trainer import CRASHED, DIVERGED, RUNNING, ChangeKind, RunState, Stop, Trainer

EXIT_OK, EXIT_FAILED = 0, 1
#: Changes not printed as they happen: the progress lines show them.
QUIET = frozenset({ChangeKind.STARTED, ChangeKind.RESUMED, ChangeKind.PAUSED})


def format_progress(t: Trainer) -> str:
    g = t.grad_stats
    parts = [f"step {t.step:6d}", f"loss {t.loss:.3f} (ema {t.loss_ema:.3f})" if t.loss is not None else "loss -"]
    parts.append(f"val {t.val_loss:.3f}" if t.val_loss is not None else "val -")
    if g is not None:
        parts.append(f"|g| {g.total.norm_pre:.3g}→{g.total.norm_post:.3g} ({g.clip_mode} {g.clip:g})")
    parts.append(f"{t.chars_per_sec() / 1000:.1f}k chars/s")
    parts.append(f"epoch {t.stream.epoch} {100 * t.stream.progress:.0f}%")
    return "  ".join(parts)


class _Reporter:
    """What a headless run has shown and what has happened to it, for :func:`run_headless`'s observers."""

    def __init__(self, trainer: Trainer, out: TextIO, log_every: int):
        self.trainer, self.out, self.log_every = trainer, out, log_every
        self.shown_sample = trainer.samples[-1] if trainer.samples else None  # the last sample already shown
        self.shown_change = trainer.changes[-1] if trainer.changes else None  # the last change already shown
        self.ended: RunState | None = None  # diverged or crashed: nobody is asked to resume a headless run
        self.lost: str | None = None  # why the output cannot be written any more
        self.signal: str | None = None  # the signal that stopped the run
        self.why: str | None = None  # what the trainer said when it diverged or crashed

    def say(self, text: str) -> None:
        if self.lost:
            return
        try:
            print(text, file=self.out, flush=True)
        except (OSError, ValueError, RuntimeError) as e:
            self.lost = getattr(e, "strerror", None) or str(e) or type(e).__name__
            self.trainer.send(Stop(save=True))

    def on_step(self, t: Trainer) -> None:
        if t.state in (DIVERGED, CRASHED) and self.ended is None:
            # Nobody is asked to resume a headless run: without this the loop would wait for commands forever.
            self.ended, self.why = t.state, t.message
            t.send(Stop())
        if t.step % self.log_every == 0 or t.state != RUNNING:
            self.say(format_progress(t))
        if t.samples and t.samples[-1] is not self.shown_sample:  # (a bounded deque: its length stops growing)
            s = self.shown_sample = t.samples[-1]
            self.say(f"--- sample at step {s.step} (temperature {s.temperature:g}) ---\n{s.text}\n---")
        self.print_changes(t)

    def print_changes(self, t: Trainer) -> None:
        changes = list(t.changes)  # (a bounded log: once full, its length stays the same)
        after = next((i + 1 for i in range(len(changes) - 1, -1, -1) if changes[i] is self.shown_change), 0)
        for c in changes[after:]:
            if c.kind not in QUIET:
                self.say(f"[step {c.step}] {c.text}")
        self.shown_change = changes[-1] if changes else None

    def on_signal(self, signum, frame) -> None:
        if self.signal is None:
            self.signal = signal.Signals(signum).name
            self.trainer.send(Stop(save=True))
            self.say(f"\n{self.signal}: stopping after this step"
                     + (f", saving {self.trainer.checkpoint_path}" if self.trainer.checkpoint_path else ""))


def run_headless(trainer: Trainer, *, max_steps: int | None, log_every: int = 100, metrics_path: str | None = None,
                 out: TextIO | None = None, install_signals: bool = True, folder: RunFolder | None = None,
                 name: str | None = None) -> int:
    """Train with progress lines on ``out``, served from ``folder`` (default: a new run folder, named ``name``
    or after the corpus); return the process exit code.

    Output that cannot be written any more (a closed pipe, a terminal gone with its SSH session)
    stops training like a signal does: the checkpoint is saved and the exit code is 1.
    """
    out = out or sys.stdout
    run = _Reporter(trainer, out, log_every)
    say = run.say
    folder = folder or RunFolder.create(trainer.corpus.path or "run", name=name)
    old = {}
    if install_signals and threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", None)):
            if sig is not None:
                old[sig] = signal.signal(sig, run.on_signal)
    say(f"training {trainer.corpus.path or 'text'}: {len(trainer.corpus.train):,} train / "
        f"{len(trainer.corpus.val):,} val chars, vocab {trainer.corpus.vocab.size}, "
        f"{trainer.model.num_params():,} parameters, {trainer.hyper.optimizer} lr {trainer.hyper.lr:g}, "
        f"clip {trainer.hyper.clip_mode} {trainer.hyper.clip:g}"
        + (f", from step {trainer.step}" if trainer.step else ""))
    say(f"run {folder.name} (rnntui watch {folder.name} from another terminal)")
    end = None
    try:
        end = serve(trainer, folder, max_steps=max_steps, on_step=run.on_step, log_every=log_every,
                    metrics_paths=(metrics_path,) if metrics_path else (), signals=False)
    except BaseException as e:  # noqa: BLE001 — an error outside a step (the trainer catches those): saved below
        trainer.state = CRASHED
        trainer.error = "".join(traceback.format_exception(e))
        trainer.message = f"{type(e).__name__}: {e}"
    finally:
        for sig, h in old.items():
            signal.signal(sig, h)
        folder.release()
    run.print_changes(trainer)
    state = run.ended or trainer.state
    why = run.why or trainer.message
    if run.lost and out is sys.stdout:
        _silence_stdout()
    if end is None:  # (serve did not get to its end: an error outside a step)
        end = finish(trainer, state)
    if trainer.checkpoint_path and not end.failure:
        run.print_changes(trainer)  # where it went, and why when that is not the checkpoint path

    def where(saved_as: str) -> str:
        """Where the training is kept, or that it is not, as the end of the last line."""
        if not end.failure and trainer.saved_path and trainer.saved_step == trainer.step:
            return f"; {saved_as} {trainer.saved_path}"
        return f"; {end.note}"

    if state == DIVERGED:
        _warn(f"rnntui: training diverged: {why}{where('last finite parameters saved to')}")
        return EXIT_FAILED
    if state == CRASHED:
        _warn(trainer.error or "")
        _warn(f"rnntui: the trainer crashed: {why}{where('checkpoint saved to')}")
        return EXIT_FAILED
    if run.lost:
        _warn(f"rnntui: output closed ({run.lost}): stopped at step {trainer.step}{where('checkpoint saved to')}")
        return EXIT_FAILED
    if end.failure:
        _warn(f"rnntui: error: stopped at step {trainer.step}; {end.note}")
        return EXIT_FAILED
    say(end.note)
    say(f"done: {trainer.step} steps, loss {trainer.loss_ema:.3f} nats/char (ema)" if trainer.loss_ema is not None
        else f"done: {trainer.step} steps")
    return EXIT_OK


def _warn(text: str) -> None:
    """Print to stderr; a stderr that is gone too (a dropped SSH session) is not an error."""
    try:
        print(text, file=sys.stderr, flush=True)
    except (OSError, ValueError, RuntimeError):
        pass


def _silence_stdout() -> None:
    """Point a dead stdout at /dev/null, so the interpreter's final flush does not fail loudly."""
    try:
        fd = os.open(os.devnull, os.O_WRONLY)
        os.dup2(fd, sys.stdout.fileno())
        os.close(fd)
    except (OSError, ValueError, AttributeError):
        pass

