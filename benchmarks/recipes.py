"""Why the lecture's recipe stalls at batch 32, seen through rnntui's own monitoring.

Runs the lecture's recipe (N(0, 0.01²) init, Adagrad lr 0.1, element clip ±5) at batch 32 and
at batch 1, and the defaults (U(±1/√H) init, Adam lr 5e-3, global clip 5) at batch 32, printing
the loss, update/weight ratios, tanh saturation, σmax(w) and the gradient reach's per-step factor
at chosen steps.

    python -m benchmarks.recipes [--corpus PATH] [--steps 600]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rnntui import Corpus, HyperParams, TrainConfig, Trainer

REPORT_AT = (1, 2, 3, 5, 10, 20, 50, 100, 200, 300, 400, 500, 600, 800, 1000)


def run(corpus: Corpus, name: str, steps: int, batch_size: int, **settings) -> dict:
    init = settings.pop("init", "scaled")
    hyper = HyperParams(sample_every=0, val_every=0, **settings)
    cfg = TrainConfig(hidden_size=128, seq_length=25, batch_size=batch_size, init=init, hyper=hyper)
    t = Trainer(corpus, cfg)
    t.reach_every = 1  # the reach at every reported step
    print(f"\n{name}: B={batch_size}, init {init}, {hyper.optimizer} lr {hyper.lr:g}, "
          f"clip {hyper.clip_mode} {hyper.clip:g}")
    print(f"{'step':>6} {'loss':>7} {'ema':>7} {'Δw/w':>8} {'Δu/u':>8} {'Δv/v':>8} {'sat':>6} {'σmax(w)':>8} "
          f"{'×/step':>7} {'‖g‖pre':>8}")
    for _ in range(steps):
        s = t.train_step()
        if s is None:
            print("diverged:", t.message)
            break
        if t.step in REPORT_AT or t.step == steps:
            print(f"{t.step:6d} {t.loss:7.3f} {t.loss_ema:7.3f} {s.param('w').update_ratio:8.2e} "
                  f"{s.param('u').update_ratio:8.2e} {s.param('v').update_ratio:8.2e} {s.saturation:6.1%} "
                  f"{s.sigma_max:8.2f} {t.reach.factor:7.3f} {s.total.norm_pre:8.3g}")
    return {"name": name, "loss_ema": t.loss_ema, "val": t.validate()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = Path("../shared/corpora/tinyshakespeare.txt")
    ap.add_argument("--corpus", default=str(default if default.exists() else "sample_data/persuasion.txt"))
    ap.add_argument("--steps", type=int, default=600)
    a = ap.parse_args()
    corpus = Corpus.load(a.corpus)
    print(f"corpus {a.corpus}: {len(corpus):,} chars, V={corpus.vocab.size}, H=128, T=25")
    lecture = dict(optimizer="adagrad", lr=0.1, clip_mode="element", clip=5.0, init="lecture")
    results = [
        run(corpus, "lecture recipe", a.steps, 32, **lecture),
        run(corpus, "lecture recipe", a.steps, 1, **lecture),
        run(corpus, "defaults", a.steps, 32),
    ]
    print()
    for r in results:
        print(f"{r['name']:>16}: train loss (ema) {r['loss_ema']:.3f}, val {r['val']:.3f} nats/char")


if __name__ == "__main__":
    main()
