"""Headless mode: the trainer with a plain console reporter instead of the app.

The trainer runs in a worker thread; the main thread only waits and turns Ctrl+C,
SIGTERM and SIGHUP into a ``Stop`` command, so training always stops between
steps and the checkpoint (when configured) is written from a consistent state.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import tempfile
import threading
import traceback
from pathlib import Path
from typing import TextIO

from .trainer import CRASHED, DIVERGED, RUNNING, ChangeKind, RunState, Stop, Trainer, unsaved

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


def metrics_record(t: Trainer) -> dict:
    g = t.grad_stats
    rec = {"step": t.step, "chars": t.chars_seen, "elapsed": round(t.elapsed, 4), "loss": t.loss,
           "loss_ema": t.loss_ema, "val_loss": t.val_loss, "lr": t.hyper.lr, "optimizer": t.hyper.optimizer,
           "clip_mode": t.hyper.clip_mode, "clip": t.hyper.clip, "chars_per_sec": round(t.chars_per_sec(), 1)}
    if g is not None:
        rec["grad"] = {p.name: {"pre": p.norm_pre, "post": p.norm_post, "max_abs": p.max_abs,
                                "clip_frac": p.clip_frac, "update_ratio": p.update_ratio}
                       for p in g.params + (g.total,)}
        rec.update(sigma_max=g.sigma_max, saturation=g.saturation, clip_rate=g.clip_rate,
                   dh_norms=[float(x) for x in g.dh_norms])
    r = t.reach
    if r is not None:
        rec["reach"] = {"step": r.step, "lag": r.lag, "factor": r.factor, "ratios": [float(x) for x in r.ratios]}
    figures = t.recall.latest if t.recall is not None else None
    if figures is not None:  # copy loss per distance k, for corpora in recall.txt's format
        rec["recall"] = figures.to_dict()
    return rec


class MetricsLog:
    """``on_step`` callback appending one JSON line of figures every ``every`` steps (and at divergence or a crash).

    Opened on the first line written (so nothing is created when training never starts) and kept
    open; a write error (a full disk) is noted once in the trainer's change log and ends the log,
    never the training.
    """

    def __init__(self, path: str, every: int = 100):
        self.path = path
        self.every = max(1, int(every))
        self.error: str | None = None
        self._f = None

    def __call__(self, t: Trainer) -> None:
        if self.error is None and (t.step % self.every == 0 or t.state in (DIVERGED, CRASHED)):
            self.write(t)

    def write(self, t: Trainer) -> None:
        try:
            if self._f is None:
                self._f = open(self.path, "a", encoding="utf-8")
            self._f.write(json.dumps(metrics_record(t)) + "\n")
            self._f.flush()
        except (OSError, ValueError) as e:
            self.error = f"{getattr(e, 'strerror', None) or e}"
            t.note(ChangeKind.METRICS_FAILED, f"metrics NOT saved to {self.path} any more: {self.error}; "
                                              "training goes on")
            self.close()

    def close(self) -> None:
        f, self._f = self._f, None
        if f is not None:
            try:
                f.close()
            except OSError:
                pass


class _Reporter:
    """What a headless run has shown and what has happened to it, for :func:`run_headless`'s observers."""

    def __init__(self, trainer: Trainer, out: TextIO, log_every: int, metrics: MetricsLog | None):
        self.trainer, self.out, self.log_every, self.metrics = trainer, out, log_every, metrics
        self.shown_sample = trainer.samples[-1] if trainer.samples else None  # the last sample already shown
        self.shown_change = trainer.changes[-1] if trainer.changes else None  # the last change already shown
        self.ended: RunState | None = None  # diverged or crashed: nobody can resume a headless run
        self.lost: str | None = None  # why the output cannot be written any more
        self.signal: str | None = None  # the signal that stopped the run
        self.state: RunState | None = None  # what Trainer.run returned
        self.exception: BaseException | None = None  # an error outside a step, raised by Trainer.run

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
            # Nobody can resume a headless run: without this the loop would wait for commands forever.
            self.ended = t.state
            t.send(Stop())
        if t.step % self.log_every == 0 or t.state != RUNNING:
            self.say(format_progress(t))
        if self.metrics:
            self.metrics(t)
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

    def train(self, max_steps: int | None) -> None:
        """The trainer's loop (in a thread of its own, so the main thread can take signals)."""
        try:
            self.state = self.trainer.run(max_steps=max_steps, on_step=self.on_step)
        except BaseException as e:  # noqa: BLE001 — reported below, after saving
            self.exception = e

    def on_signal(self, signum, frame) -> None:
        if self.signal is None:
            self.signal = signal.Signals(signum).name
            self.trainer.send(Stop(save=True))
            self.say(f"\n{self.signal}: stopping after this step"
                     + (f", saving {self.trainer.checkpoint_path}" if self.trainer.checkpoint_path else ""))


def run_headless(trainer: Trainer, *, max_steps: int | None, log_every: int = 100, metrics_path: str | None = None,
                 out: TextIO | None = None, install_signals: bool = True) -> int:
    """Train with progress lines on ``out``; return the process exit code.

    Output that cannot be written any more (a closed pipe, a terminal gone with its SSH session)
    stops training like a signal does: the checkpoint is saved and the exit code is 1.
    """
    out = out or sys.stdout
    metrics = MetricsLog(metrics_path, log_every) if metrics_path else None
    run = _Reporter(trainer, out, log_every, metrics)
    say = run.say
    thread = threading.Thread(target=run.train, args=(max_steps,), name="rnntui-trainer", daemon=True)
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
    try:
        thread.start()
        while thread.is_alive():
            thread.join(0.2)
    finally:
        for sig, h in old.items():
            signal.signal(sig, h)
        if metrics:
            metrics.close()
    run.print_changes(trainer)
    if run.exception is not None:  # an error outside a step (steps and observers are caught by the trainer)
        e = run.exception
        trainer.state = CRASHED
        trainer.error = "".join(traceback.format_exception(e))
        trainer.message = f"{type(e).__name__}: {e}"
    state = run.ended or run.state or trainer.state
    why = trainer.message  # saving below replaces trainer.message
    if run.lost and out is sys.stdout:
        _silence_stdout()
    unsaved_because = "" if trainer.checkpoint_path else NO_CHECKPOINT
    _, failure = save_at_end(trainer, ended=state)  # failure: why the configured save did not happen
    if trainer.checkpoint_path and not failure:
        run.print_changes(trainer)  # where it went, and why when that is not the checkpoint path

    def where(saved_as: str) -> str:
        """Where the training is kept, or that it is not, as the end of the last line."""
        if failure:
            return "; " + failure_note(trainer.saved_path if trainer.saved_step == trainer.step else None, failure)
        if trainer.saved_path and trainer.saved_step == trainer.step:
            return f"; {saved_as} {trainer.saved_path}"
        return f"; {save_note(trainer, unsaved_because)}"

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
    if failure:
        _warn(f"rnntui: error: stopped at step {trainer.step}{where('')}")
        return EXIT_FAILED
    say(save_note(trainer, unsaved_because))
    say(f"done: {trainer.step} steps, loss {trainer.loss_ema:.3f} nats/char (ema)" if trainer.loss_ema is not None
        else f"done: {trainer.step} steps")
    return EXIT_FAILED if run.lost else EXIT_OK


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

