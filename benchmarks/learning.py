"""How well each cell learns in a fixed number of steps: rnntui's trainer against PyTorch's nn.LSTM / nn.GRU / nn.RNN.

    python -m benchmarks.learning --corpus ../shared/corpora/tinyshakespeare.txt          # ≈ 5 minutes
    python -m benchmarks.learning --corpus ../shared/corpora/tinyshakespeare.txt --seeds 0,1,2 --json learning.json

Both sides train H = 128, T = 25, B = 32 on the same batch stream (the corpus's first 90 %, B contiguous
streams, the state carried from batch to batch without gradient) for ``--steps`` steps (600):

  ours   ``Trainer.train_step`` with rnntui's defaults (Adam lr 5e-3, global clip at ‖g‖ 30, PyTorch's uniform
         initialisation, the lstm's forget gate bias 1), float32; ``lstm:drawn`` is the lstm with its forget
         gate's bias drawn as PyTorch draws it (``TrainConfig(forget_bias=None)``), against the same torch runs
  torch  the module (nn.LSTM / nn.GRU / nn.RNN tanh) with nn.Linear on one-hot inputs, cross-entropy,
         torch.optim.Adam lr 5e-3, no clipping (benchmarks/torch_reference.py), float32, seeded by torch, 1 thread;
         initialised as ours is: for ``lstm`` PyTorch's draw with bias_ih's forget block set to 1 and bias_hh's
         to 0 (what ``--forget-bias 1`` does), for ``lstm:drawn`` and the other cells PyTorch's own draw

The figure is the loss EMA (per character, nats; the trainer's: EMA_DECAY = 0.98, started at the first step's
loss) at the last step, for each seed, and its mean over the seeds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from benchmarks import torch_reference
from benchmarks.common import DEFAULT_CORPUS, machine
from rnntui import Corpus, HyperParams, TrainConfig, Trainer
from rnntui.trainer import EMA_DECAY

H, T, B = 128, 25, 32


def ours(corpus: Corpus, cell: str, steps: int, seed: int) -> tuple[float, float]:
    """Loss EMA after ``steps`` steps of our trainer, and the seconds they took (``lstm:drawn``: forget_bias None)."""
    cell, _, variant = cell.partition(":")
    cfg = TrainConfig(hidden_size=H, seq_length=T, batch_size=B, seed=seed, cell=cell,
                      forget_bias=None if variant == "drawn" else 1.0, hyper=HyperParams(sample_every=0, val_every=0))
    trainer = Trainer(corpus, cfg)
    t0 = time.perf_counter()
    for _ in range(steps):
        if trainer.train_step() is None:
            return float("nan"), time.perf_counter() - t0
    return trainer.loss_ema, time.perf_counter() - t0


def torch(corpus: Corpus, cell: str, steps: int, seed: int, threads: int = 1) -> tuple[float, float]:
    """Loss EMA after ``steps`` steps of PyTorch's module with Adam 5e-3, and the seconds they took (``lstm``: its
    forget gate's bias set as ours is, b_if = 1 and b_hf = 0; ``lstm:drawn``: PyTorch's draw)."""
    cell, _, variant = cell.partition(":")
    ref = torch_reference.TorchCharRNN(corpus, H, T, B, threads=threads, lr=5e-3, clip=0.0, seed=seed, cell=cell,
                                       optimizer="adam")
    if cell == "lstm" and variant != "drawn":
        import torch as pt

        with pt.no_grad():
            ref.rnn.bias_ih_l0[H:2 * H] = 1.0
            ref.rnn.bias_hh_l0[H:2 * H] = 0.0
    ref.setup()
    ema = None
    t0 = time.perf_counter()
    for _ in range(steps):
        ref.step()
        ema = ref.loss if ema is None else EMA_DECAY * ema + (1 - EMA_DECAY) * ref.loss
    return ema, time.perf_counter() - t0


def table(rows: list[dict], steps: int) -> str:
    lines = [f"loss EMA (nats/char) at step {steps}, H={H} T={T} B={B}; mean over seeds (each seed)",
             f"{'cell':>10} {'ours':>22} {'torch, same init':>22} {'ours − torch':>13} {'s ours':>7} {'s torch':>7}"]
    for r in rows:
        def show(xs):
            return f"{statistics.mean(xs):.3f} (" + " ".join(f"{x:.3f}" for x in xs) + ")"
        diff = statistics.mean(r["ours"]) - statistics.mean(r["torch"]) if r["torch"] else float("nan")
        lines.append(f"{r['cell']:>10} {show(r['ours']):>22} {show(r['torch']) if r['torch'] else '-':>22} "
                     f"{diff:+13.3f} {statistics.mean(r['s_ours']):7.1f} "
                     f"{statistics.mean(r['s_torch']) if r['s_torch'] else float('nan'):7.1f}")
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS, help="training text (default persuasion.txt)")
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--cells", default="lstm,lstm:drawn,gru,rnn")
    ap.add_argument("--seeds", default="0", help="comma-separated seeds (default 0)")
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args(argv)
    corpus = Corpus.load(a.corpus)
    use_torch = not a.no_torch and torch_reference.available()
    info = machine()
    print(f"corpus {a.corpus}: {len(corpus):,} chars, V={corpus.vocab.size}; load {info['loadavg']}")
    seeds = [int(s) for s in a.seeds.split(",")]
    rows, done = [], {}
    for cell in a.cells.split(","):
        row = {"cell": cell, "ours": [], "torch": [], "s_ours": [], "s_torch": []}
        same = done.get(cell)  # (a cell given twice: the same torch runs)
        for k, seed in enumerate(seeds):
            loss, sec = ours(corpus, cell, a.steps, seed)
            row["ours"].append(loss)
            row["s_ours"].append(sec)
            line = f"{cell} seed {seed}: ours {loss:.3f} ({sec:.0f} s)"
            if same is not None:
                row["torch"].append(same["torch"][k])
                row["s_torch"].append(same["s_torch"][k])
            elif use_torch:
                loss, sec = torch(corpus, cell, a.steps, seed)
                row["torch"].append(loss)
                row["s_torch"].append(sec)
                line += f", torch {loss:.3f} ({sec:.0f} s)"
            print(line, flush=True)
        rows.append(row)
        done.setdefault(cell, row)
    print()
    print(table(rows, a.steps))
    if a.json:
        a.json.write_text(json.dumps({"machine": info, "corpus": str(a.corpus), "steps": a.steps, "rows": rows},
                                     indent=2, default=float))


if __name__ == "__main__":
    main()
