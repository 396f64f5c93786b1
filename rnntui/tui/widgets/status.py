"""StatusBar: state, step, progress, speed, time, and the current settings."""

from __future__ import annotations

from textual.widgets import Static

from ...trainer import Snapshot
from .text import duration

STATE_STYLE = {"running": "$success", "paused": "$warning", "diverged": "$error", "crashed": "$error",
               "finished": "$primary", "stopped": "$secondary"}


class StatusBar(Static):
    def show(self, snap: Snapshot) -> None:
        hp = snap.hyper
        style = STATE_STYLE.get(snap.state, "$foreground")
        clip = "off" if hp.clip_mode == "none" else f"{hp.clip_mode} {hp.clip:g}"
        parts = [
            f"[b {style} reverse] {snap.state.upper()} [/]",
            f"step {snap.step}",
            f"ep {snap.epoch} {100 * snap.epoch_progress:.0f}%",
            f"{snap.chars_per_sec / 1000:.1f}k ch/s",
            duration(snap.elapsed),
            f"{hp.optimizer} lr {hp.lr:.3g}",
            f"clip {clip}",
            f"T {hp.temperature:g}",
        ]
        if snap.checkpoint_path:
            saved = f"@{snap.saved_step}" if snap.saved_step is not None else "unsaved"
            parts.append(f"ckpt {snap.checkpoint_path} {saved}")
        self.update(" ".join(parts), layout=False)  # fixed height: no relayout
