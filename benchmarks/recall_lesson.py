"""The long-memory lesson: rnn, lstm and gru on sample_data/recall.txt, the copy loss per distance k and what the
gradient's reach showed for each cell.

    python -m benchmarks.recall_lesson                                  # --steps 3000: ≈ 10 minutes here
    python -m benchmarks.recall_lesson --steps 1000 --cells rnn,lstm    # shorter
    python -m benchmarks.recall_lesson --json recall.json
    python -m benchmarks.recall_lesson --from-json recall.json     # the tables again, from a run's numbers

Each cell trains with rnntui's defaults (H 128, B 32, Adam lr 5e-3, global clip 30, seed 0) at
``--seq-length`` 50 for the same number of steps, as ``rnntui sample_data/recall.txt --cell CELL
--seq-length 50 --headless --max-steps N`` does. The copy loss per distance k is the trainer's recall probe
(rnntui/recall.py: the held-out lines, the state carried, measured at a validation at most every 300 steps):
ln 4 ≈ 1.39 nats for a copy not recalled. The reach is the snapshot's (the last loss followed back through
time, measured every REACH_EVERY steps): for the top layer's h and, for the lstm, its cell state c; the
lag at which the gradient fell below 1 % of its start ("beyond" T: never within the window) and the
factor per step back, as the medians over the last third of the run. The forget gate (lstm) and update
gate (gru) figures are the mean and the share above 0.9 at the last measurement.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from benchmarks.common import machine
from rnntui import Corpus, HyperParams, TrainConfig, Trainer
from rnntui.recall import window_share

RECALL = Path(__file__).resolve().parent.parent / "sample_data" / "recall.txt"
GATE = {"lstm": "f", "gru": "z"}


def train(corpus: Corpus, cell: str, steps: int, seq_length: int, progress) -> dict:
    cfg = TrainConfig(seq_length=seq_length, cell=cell, hyper=HyperParams(sample_every=0))
    trainer = Trainer(corpus, cfg)
    reaches, measured = [], []
    t0 = time.perf_counter()
    while trainer.step < steps:
        if trainer.train_step() is None:
            raise SystemExit(f"{cell} diverged at step {trainer.step + 1}: {trainer.message}")
        if trainer.reach is not None and trainer.reach.step == trainer.step:
            top = trainer.reaches[-1]
            reaches.append({"step": trainer.step, "h_lag": top.h.lag, "h_factor": top.h.factor,
                            "c_lag": top.c.lag if top.c is not None else None,
                            "c_factor": top.c.factor if top.c is not None else None})
        figures = trainer.recall.latest
        if figures is not None and (not measured or measured[-1]["step"] != figures.step):
            measured.append({"step": figures.step, "rows": [{"k": r.k, "loss": r.loss, "accuracy": r.accuracy}
                                                            for r in figures.rows]})
            progress(f"{cell} step {figures.step}: " + "  ".join(f"k={r.k} {r.loss:.2f}" for r in figures.rows))
    seconds = time.perf_counter() - t0
    gate = None
    if cell in GATE:
        g = {s.name: s for s in trainer.gates[-1]}[GATE[cell]]
        gate = {"name": GATE[cell], "mean": g.mean, "high": g.high, "low": g.low}
    return {"cell": cell, "steps": steps, "seconds": seconds, "loss_ema": trainer.loss_ema,
            "val_loss": trainer.val_loss, "recall": measured, "reaches": reaches, "gate": gate}


def _lag(lags: list, T: int) -> str:
    """The median lag, a lag beyond the window (None) counted as T + 1."""
    if not lags:
        return "-"
    m = statistics.median([T + 1 if x is None else x for x in lags])
    return f"beyond {T}" if m > T else f"{m:g}"


def _at(measured: list[dict], step: int) -> dict:
    """The first measurement at or after ``step`` (the last one if none)."""
    return next((m for m in measured if m["step"] >= step), measured[-1])


def tables(results: list[dict], seq_length: int) -> str:
    ks = [r["k"] for r in results[0]["recall"][-1]["rows"]]
    steps = results[0]["steps"]
    lines = [f"copy loss in nats (accuracy) per distance k, T = {seq_length}, at a quarter, half and all of the "
             f"steps (ln 4 = 1.39: not recalled); the share of copies within the window: "
             + ", ".join(f"k={k} {window_share(k, seq_length):.0%}" for k in ks),
             "| cell | step | " + " | ".join(f"k = {k}" for k in ks) + " |",
             "| --- | ---: | " + " | ".join("---:" for _ in ks) + " |"]
    for r in results:
        for at in (steps // 4, steps // 2, steps):
            m = _at(r["recall"], at)
            lines.append(f"| {r['cell']} | {m['step']:,} | "
                         + " | ".join(f"{x['loss']:.2f} ({100 * x['accuracy']:.0f} %)" for x in m["rows"]) + " |")
    lines += ["", "reach of the top layer's gradient (median over the last third of the run), and the gate",
              "| cell | reach of h: lag | factor/step | reach of c: lag | factor/step | gate: mean | > 0.9 |"
              " loss EMA | minutes |",
              "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in results:
        tail = r["reaches"][len(r["reaches"]) * 2 // 3:]
        hf = statistics.median([x["h_factor"] for x in tail])
        c = [x for x in tail if x["c_factor"] is not None]
        cf = f"{statistics.median([x['c_factor'] for x in c]):.3f}" if c else "-"
        gate = r["gate"]
        g = (f"{gate['name']} {gate['mean']:.2f}", f"{100 * gate['high']:.0f} %") if gate else ("-", "-")
        lines.append(f"| {r['cell']} | {_lag([x['h_lag'] for x in tail], seq_length)} | {hf:.3f} | "
                     f"{_lag([x['c_lag'] for x in c], seq_length) if c else '-'} | {cf} | {g[0]} | {g[1]} | "
                     f"{r['loss_ema']:.3f} | {r['seconds'] / 60:.1f} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--seq-length", type=int, default=50)
    ap.add_argument("--cells", default="rnn,lstm,gru")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--from-json", type=Path, help="print the tables of an earlier run's --json, without training")
    a = ap.parse_args(argv)
    if a.from_json:
        data = json.loads(a.from_json.read_text())
        print(tables(data["results"], data["seq_length"]))
        return
    corpus = Corpus.load(RECALL)
    info = machine()
    print(f"{RECALL.name}: {len(corpus):,} chars; load {info['loadavg']}")
    results = [train(corpus, cell, a.steps, a.seq_length, lambda s: print(s, flush=True))
               for cell in a.cells.split(",")]
    print()
    print(tables(results, a.seq_length))
    info["loadavg_end"] = machine()["loadavg"]
    print(f"load average at the start {info['loadavg']}, at the end {info['loadavg_end']}")
    if a.json:
        a.json.write_text(json.dumps({"machine": info, "steps": a.steps, "seq_length": a.seq_length,
                                      "results": results}, indent=2, default=float))


if __name__ == "__main__":
    main()
