"""A run's figures as JSON Lines: one line every ``--log-every`` steps (and at a divergence or a crash).

Every run writes them into its folder (``runs/NAME/metrics.jsonl``), and to ``--metrics PATH`` as well when
given; ``rnntui runs`` and scripts read them.
"""

from __future__ import annotations

import json

from ..trainer import CRASHED, DIVERGED, ChangeKind, Trainer


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


__all__ = ["MetricsLog", "metrics_record"]
