"""What the terminal app costs the trainer: throughput with the Textual app watching the run, against none.

    python -m benchmarks.ui_overhead [--seconds 3] [--rounds 5] [--corpus PATH] [--json PATH]

Alternately, round after round, the same configuration (the defaults: H=128, T=25, B=32, Adam,
sampling and validation every 100 steps) trains for the same number of seconds, served on a run socket
(:class:`~rnntui.runs.server.RunServer`) as ``rnntui CORPUS`` serves it:

  headless  no viewer attached
  tui       the app (``RnnTuiApp`` on a ``SocketRunClient``, as ``rnntui watch`` runs it) in a viewer process
            of its own, run headlessly by Textual's ``run_test`` at 80×24, redrawing at its default rates

and the characters trained per second are compared (after a warm-up second, fresh trainers each
time), from the trainer's own snapshots: characters seen and the time each was published.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from benchmarks.common import DEFAULT_CORPUS
from rnntui import Corpus, TrainConfig, Trainer
from rnntui.runs import protocol as P
from rnntui.runs.server import RunServer
from rnntui.trainer import Stop

WARMUP = 1.0


def _rate(first, last) -> float:
    return (last.chars_seen - first.chars_seen) / (last.time - first.time)


def app_viewer_main(path: str) -> None:
    """A viewer process: the app on the run at ``path`` (80×24, headless) until the run ends."""
    from rnntui.runs.client import SocketRunClient
    from rnntui.tui.app import RnnTuiApp

    client = SocketRunClient.connect(path, timeout=30)
    app = RnnTuiApp(client)

    async def go() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            print("ready", flush=True)
            while not client.ended:
                await pilot.pause(0.1)

    asyncio.run(go())
    client.close()


def served(corpus: Corpus, seconds: float, *, app: bool) -> float:
    """Train ``seconds`` served on a socket, with the app watching (``app``) or nobody; the rate."""
    trainer = Trainer(corpus, TrainConfig())
    trainer.publish_interval = 0.25  # (as a run's process publishes)
    folder = tempfile.mkdtemp(prefix="ui-", dir="/tmp")
    path = os.path.join(folder, "socket")
    thread = threading.Thread(target=trainer.run, daemon=True)
    thread.start()
    while trainer.latest is None:
        time.sleep(0.01)
    srv = RunServer(trainer, path, P.RunInfo.of(trainer, name="bench")).start()
    viewer = None
    try:
        if app:
            viewer = subprocess.Popen([sys.executable, "-m", "benchmarks.ui_overhead", "--app-viewer", path],
                                      stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parent.parent)
            if viewer.stdout.readline().strip() != "ready":
                raise RuntimeError("the app did not start")
        time.sleep(WARMUP)
        first = trainer.latest
        time.sleep(seconds)
        return _rate(first, trainer.latest)
    finally:
        trainer.send(Stop())
        thread.join(30)
        srv.close()
        if viewer is not None:
            viewer.wait(30)
            viewer.stdout.close()
        os.rmdir(folder)


def headless(corpus: Corpus, seconds: float) -> float:
    return served(corpus, seconds, app=False)


def tui(corpus: Corpus, seconds: float) -> float:
    return served(corpus, seconds, app=True)


def measure(corpus: Corpus, seconds: float = 3.0, rounds: int = 5, progress=None) -> dict:
    runs = {"headless": headless, "tui": tui}
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
            f"served, no viewer {r['headless']:,.0f} chars/s, the app watching {r['tui']:,.0f} chars/s (medians) → "
            f"the app costs "
            f"{100 * r['cost']:.1f}% (median of the rounds: "
            f"{', '.join(f'{100 * c:.1f}%' for c in r['cost_per_round'])})")
    return text


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--app-viewer", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.app_viewer:
        app_viewer_main(a.app_viewer)
        return
    r = measure(Corpus.load(a.corpus), a.seconds, a.rounds, progress=print)
    print(report(r))
    if a.json:
        a.json.write_text(json.dumps(r, indent=2))


if __name__ == "__main__":
    main()
