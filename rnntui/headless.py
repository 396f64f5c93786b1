"""Headless mode: the trainer with a plain console reporter instead of the app.

The trainer runs in a worker thread; the main thread only waits and turns Ctrl+C,
SIGTERM and SIGHUP into a ``Stop`` command, so training always stops between
steps and the checkpoint (when configured) is written from a consistent state.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
from typing import TextIO

from .trainer import CRASHED, DIVERGED, Stop, Trainer

EXIT_OK, EXIT_FAILED = 0, 1


def format_progress(t: Trainer) -> str:
    g = t.grad
    parts = [f"step {t.step:6d}", f"loss {t.loss:.3f} (ema {t.loss_ema:.3f})" if t.loss is not None else "loss -"]
    parts.append(f"val {t.val_loss:.3f}" if t.val_loss is not None else "val -")
    if g is not None:
        parts.append(f"|g| {g.total.norm_pre:.3g}→{g.total.norm_post:.3g} ({g.clip_mode} {g.clip:g})")
    parts.append(f"{t.chars_per_sec() / 1000:.1f}k chars/s")
    parts.append(f"epoch {t.stream.epoch} {100 * t.stream.progress:.0f}%")
    return "  ".join(parts)


def metrics_record(t: Trainer) -> dict:
    g = t.grad
    rec = {"step": t.step, "chars": t.chars_seen, "elapsed": round(t.elapsed, 4), "loss": t.loss,
           "loss_ema": t.loss_ema, "val_loss": t.val_loss, "lr": t.hyper.lr, "optimizer": t.hyper.optimizer,
           "clip_mode": t.hyper.clip_mode, "clip": t.hyper.clip, "chars_per_sec": round(t.chars_per_sec(), 1)}
    if g is not None:
        rec["grad"] = {p.name: {"pre": p.norm_pre, "post": p.norm_post, "max_abs": p.max_abs,
                                "clip_frac": p.clip_frac, "update_ratio": p.update_ratio}
                       for p in g.params + (g.total,)}
        rec.update(sigma_max=g.sigma_max, saturation=g.saturation, transmission=g.transmission_gmean,
                   dh_norms=[float(x) for x in g.dh_norms])
    return rec


def run_headless(trainer: Trainer, *, max_steps: int | None, log_every: int = 100, metrics_path: str | None = None,
                 out: TextIO | None = None, install_signals: bool = True) -> int:
    """Train with progress lines on ``out``; return the process exit code."""
    out = out or sys.stdout
    metrics = open(metrics_path, "a", encoding="utf-8") if metrics_path else None
    shown_samples = [len(trainer.samples)]
    shown_changes = [len(trainer.changes)]
    ended = {}

    def on_step(t: Trainer) -> None:
        if t.state in (DIVERGED, CRASHED) and not ended:
            # Nobody can resume a headless run: without this the loop would wait for commands forever.
            ended["state"] = t.state
            t.send(Stop())
        if t.step % log_every == 0 or t.state != "running":
            print(format_progress(t), file=out, flush=True)
            if metrics:
                metrics.write(json.dumps(metrics_record(t)) + "\n")
                metrics.flush()
        if len(t.samples) != shown_samples[0]:
            s = t.samples[-1]
            shown_samples[0] = len(t.samples)
            print(f"--- sample at step {s.step} (temperature {s.temperature:g}) ---\n{s.text}\n---",
                  file=out, flush=True)
        _print_changes(t)

    def _print_changes(t: Trainer) -> None:
        changes = list(t.changes)
        for c in changes[shown_changes[0]:] if len(changes) >= shown_changes[0] else changes[-1:]:
            if c.text not in ("started", "resumed", "paused"):
                print(f"[step {c.step}] {c.text}", file=out, flush=True)
        shown_changes[0] = len(changes)

    stop = {"signal": None}
    result = {}

    def worker():
        result["state"] = trainer.run(max_steps=max_steps, on_step=on_step)

    thread = threading.Thread(target=worker, name="rnntui-trainer", daemon=True)
    old = {}

    def handler(signum, frame):
        if stop["signal"] is None:
            stop["signal"] = signal.Signals(signum).name
            print(f"\n{stop['signal']}: stopping after this step"
                  + (f", saving {trainer.checkpoint_path}" if trainer.checkpoint_path else ""), file=out, flush=True)
            trainer.send(Stop(save=True))

    if install_signals and threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", None)):
            if sig is not None:
                old[sig] = signal.signal(sig, handler)
    print(f"training {trainer.corpus.path or 'text'}: {len(trainer.corpus.train):,} train / "
          f"{len(trainer.corpus.val):,} val chars, vocab {trainer.corpus.vocab.size}, "
          f"{trainer.model.num_params():,} parameters, {trainer.hyper.optimizer} lr {trainer.hyper.lr:g}, "
          f"clip {trainer.hyper.clip_mode} {trainer.hyper.clip:g}"
          + (f", from step {trainer.step}" if trainer.step else ""), file=out, flush=True)
    try:
        thread.start()
        while thread.is_alive():
            thread.join(0.2)
    finally:
        for sig, h in old.items():
            signal.signal(sig, h)
        if metrics:
            metrics.close()
    _print_changes(trainer)
    state = ended.get("state") or result.get("state", trainer.state)
    why = trainer.message  # saving below replaces trainer.message
    if state == DIVERGED:
        saved = trainer.save() if trainer.checkpoint_path else None
        print(f"rnntui: training diverged: {why}"
              + (f"; last finite parameters saved to {saved}" if saved else ""), file=sys.stderr, flush=True)
        return EXIT_FAILED
    if state == CRASHED:
        print(trainer.error or "", file=sys.stderr)
        saved = trainer.save() if trainer.checkpoint_path else None
        print(f"rnntui: the trainer crashed: {why}" + (f"; checkpoint saved to {saved}" if saved else ""),
              file=sys.stderr, flush=True)
        return EXIT_FAILED
    if trainer.checkpoint_path and trainer.saved_step != trainer.step:
        trainer.save()
    if trainer.saved_step is not None and trainer.checkpoint_path:
        print(f"checkpoint: {trainer.checkpoint_path} (step {trainer.saved_step})", file=out)
    print(f"done: {trainer.step} steps, loss {trainer.loss_ema:.3f} nats/char (ema)" if trainer.loss_ema is not None
          else f"done: {trainer.step} steps", file=out, flush=True)
    return EXIT_OK

