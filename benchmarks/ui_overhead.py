"""What the terminal app costs the trainer: throughput with the Textual app against without it.

    python -m benchmarks.ui_overhead [--seconds 3] [--rounds 5] [--corpus PATH] [--json PATH]

Alternately, round after round, the same configuration (the defaults: H=128, T=25, B=32, Adam,
sampling and validation every 100 steps) trains for the same number of seconds

  headless  ``Trainer.run`` in a thread, no view
  tui       ``RnnTuiApp`` run headlessly by Textual's ``run_test`` at 80×24, redrawing at its default
            rates, the trainer in a child process as ``rnntui CORPUS`` runs it (``rnntui.process``)
  thread    (with ``--thread``) the same app with the trainer in the app's worker thread, as the
            library's ``RnnTuiApp(trainer)`` runs it: what sharing the GIL with the view costs

and the characters trained per second are compared (after a warm-up second, fresh trainers each
time), from the trainer's own snapshots: characters seen and the time each was published.
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


def _rate(first, last) -> float:
    return (last.chars_seen - first.chars_seen) / (last.time - first.time)


def headless(corpus: Corpus, seconds: float) -> float:
    trainer, stop = _trainer(corpus), threading.Event()
    thread = threading.Thread(target=trainer.run, kwargs={"stop_event": stop}, daemon=True)
    thread.start()
    try:
        time.sleep(WARMUP)
        first = trainer.latest
        time.sleep(seconds)
        return _rate(first, trainer.latest)
    finally:
        stop.set()
        thread.join(30)


def tui(corpus: Corpus, seconds: float, *, separate_process: bool = True) -> float:
    from rnntui.tui.app import RnnTuiApp, make_app

    trainer = _trainer(corpus)
    app = make_app(trainer) if separate_process else RnnTuiApp(trainer)  # as the command line / the library
    runner = app.trainer

    async def go() -> float:
        async with app.run_test(size=(80, 24)):
            while runner.latest is None or runner.latest.chars_seen == 0:  # the child has started
                await asyncio.sleep(0.02)
            await asyncio.sleep(WARMUP)
            first = runner.latest
            await asyncio.sleep(seconds)
            rate = _rate(first, runner.latest)
            app.exit()
        return rate

    rate = asyncio.run(go())
    app.trainer_done.wait(30)
    return rate


def thread(corpus: Corpus, seconds: float) -> float:
    return tui(corpus, seconds, separate_process=False)


def measure(corpus: Corpus, seconds: float = 3.0, rounds: int = 5, progress=None, with_thread: bool = False) -> dict:
    runs = {"headless": headless, "tui": tui} | ({"thread": thread} if with_thread else {})
    rates: dict[str, list[float]] = {name: [] for name in runs}
    for r in range(rounds):
        order = list(runs) if r % 2 == 0 else list(reversed(runs))
        for name in order:
            rates[name].append(runs[name](corpus, seconds))
            time.sleep(0.2)
        if progress:
            progress(f"ui round {r + 1}/{rounds}: " + ", ".join(f"{k} {v[-1]:,.0f}" for k, v in rates.items()))
    out = {"seconds": seconds, "rounds": rounds, "rates": rates}
    for name in runs:
        out[name] = statistics.median(rates[name])
        if name != "headless":
            # the median of the rounds' costs: each compares two runs next to each other in time
            per_round = [1 - b / a for a, b in zip(rates["headless"], rates[name], strict=True)]
            out[f"cost_{name}"] = statistics.median(per_round)
            out[f"cost_{name}_per_round"] = per_round
    out["cost"], out["cost_per_round"] = out["cost_tui"], out["cost_tui_per_round"]
    return out


def report(r: dict) -> str:
    text = (f"UI overhead (defaults H=128 T=25 B=32, {r['rounds']}×{r['seconds']:g} s each, interleaved): "
            f"headless {r['headless']:,.0f} chars/s, TUI {r['tui']:,.0f} chars/s (medians) → the app costs "
            f"{100 * r['cost']:.1f}% (median of the rounds: "
            f"{', '.join(f'{100 * c:.1f}%' for c in r['cost_per_round'])})")
    if "thread" in r:
        text += (f"; with the trainer in the app's thread instead: {r['thread']:,.0f} chars/s, "
                 f"{100 * r['cost_thread']:.1f}% (rounds: "
                 f"{', '.join(f'{100 * c:.1f}%' for c in r['cost_thread_per_round'])})")
    return text


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--thread", action="store_true", help="also measure the app with the trainer in a thread")
    a = ap.parse_args(argv)
    r = measure(Corpus.load(a.corpus), a.seconds, a.rounds, progress=print, with_thread=a.thread)
    print(report(r))
    if a.json:
        a.json.write_text(json.dumps(r, indent=2))


if __name__ == "__main__":
    main()
