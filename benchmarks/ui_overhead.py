"""What the terminal app costs the trainer: throughput with the Textual app against without it.

    python -m benchmarks.ui_overhead [--seconds 3] [--rounds 5] [--corpus PATH] [--json PATH]

Alternately, round after round, the same configuration (the defaults: H=128, T=25, B=32, Adam,
sampling and validation every 100 steps) trains for the same number of seconds

  headless  ``Trainer.run`` in a thread, no view
  tui       ``RnnTuiApp`` run headlessly by Textual's ``run_test`` at 80×24, redrawing at its default
            rates (numbers 4 Hz, plots 2 Hz), the trainer in the app's worker thread

and the characters trained per second are compared (after a warm-up second, fresh trainers each time).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import threading
import time
from pathlib import Path

from benchmarks.common import DEFAULT_CORPUS
from rnntui import Corpus, TrainConfig, Trainer

WARMUP = 1.0


def _trainer(corpus: Corpus) -> Trainer:
    return Trainer(corpus, TrainConfig())


def headless(corpus: Corpus, seconds: float) -> float:
    trainer, stop = _trainer(corpus), threading.Event()
    thread = threading.Thread(target=trainer.run, kwargs={"stop_event": stop}, daemon=True)
    thread.start()
    try:
        time.sleep(WARMUP)
        c0, t0 = trainer.chars_seen, time.perf_counter()
        time.sleep(seconds)
        return (trainer.chars_seen - c0) / (time.perf_counter() - t0)
    finally:
        stop.set()
        thread.join(30)


def tui(corpus: Corpus, seconds: float) -> float:
    from rnntui.tui.app import RnnTuiApp

    trainer = _trainer(corpus)
    app = RnnTuiApp(trainer)

    async def go() -> float:
        async with app.run_test(size=(80, 24)):
            await asyncio.sleep(WARMUP)
            c0, t0 = trainer.chars_seen, time.perf_counter()
            await asyncio.sleep(seconds)
            rate = (trainer.chars_seen - c0) / (time.perf_counter() - t0)
            app.exit()
        return rate

    return asyncio.run(go())


def measure(corpus: Corpus, seconds: float = 3.0, rounds: int = 5, progress=None) -> dict:
    rates = {"headless": [], "tui": []}
    runs = {"headless": headless, "tui": tui}
    for r in range(rounds):
        order = ("headless", "tui") if r % 2 == 0 else ("tui", "headless")
        for name in order:
            rates[name].append(runs[name](corpus, seconds))
            time.sleep(0.2)
        if progress:
            progress(f"ui round {r + 1}/{rounds}: headless {rates['headless'][-1]:,.0f}, tui {rates['tui'][-1]:,.0f}")
    h, t = statistics.median(rates["headless"]), statistics.median(rates["tui"])
    per_round = [1 - b / a for a, b in zip(rates["headless"], rates["tui"], strict=True)]
    # the median of the rounds' costs: each compares two runs next to each other in time
    return {"seconds": seconds, "rounds": rounds, "headless": h, "tui": t, "cost": statistics.median(per_round),
            "cost_per_round": per_round, "rates": rates}


def report(r: dict) -> str:
    return (f"UI overhead (defaults H=128 T=25 B=32, {r['rounds']}×{r['seconds']:g} s each, interleaved): "
            f"headless {r['headless']:,.0f} chars/s, TUI {r['tui']:,.0f} chars/s (medians) → the app costs "
            f"{100 * r['cost']:.1f}% (median of the rounds: "
            f"{', '.join(f'{100 * c:.1f}%' for c in r['cost_per_round'])})")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    ap.add_argument("--json", type=Path)
    a = ap.parse_args(argv)
    r = measure(Corpus.load(a.corpus), a.seconds, a.rounds, progress=print)
    print(report(r))
    if a.json:
        a.json.write_text(json.dumps(r, indent=2))


if __name__ == "__main__":
    main()
