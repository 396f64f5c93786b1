"""What serving a run costs: the wire format's time and size, and training throughput with viewers attached.

    python -m benchmarks.runs [--seconds 4] [--rounds 5] [--corpus PATH] [--json PATH]
    python -m benchmarks.runs --codec-only
    python -m benchmarks.runs --watch-only [--repeats 7]

**Codec.** A (128, 25, 32) trainer's snapshot, after some steps and with every history full (2048 points
each, as after a long run), encoded and decoded by :mod:`rnntui.runs.protocol` (medians of many), its
size in bytes; the same for an inspection (its float64 weights and batch).

**Throughput.** Alternately, round after round, the same configuration (the defaults: H=128, T=25,
B=32, Adam, sampling and validation every 100 steps, histories full from the start) trains in a thread
of this process, served by a :class:`~rnntui.runs.server.RunServer` (defaults: a new snapshot at most
every 0.2 s) with

  none      no viewer attached (the server waits: it encodes nothing)
  1 viewer  one viewer process (``SocketRunClient``: connects, receives and decodes every snapshot pushed
            to it; no drawing: benchmarks/ui_overhead.py measures the app itself watching)
  3 viewers three of them

**First screen.** (needs tmux) A run started with ``rnntui CORPUS --detach``; then, ``--repeats`` times,
``rnntui watch NAME`` (its modules compiled, as an installed rnntui's are) in a new 80×24 tmux session,
timed from the session's start (the interpreter starting, the imports, connecting, the first snapshot)
until the pane shows the status bar's "RUNNING step N"; the session is then killed (a hang-up: the viewer
detaches). Target: under 1 second.

Characters trained per second come from the trainer's own snapshots (characters seen, publication
time) over ``--seconds`` after a warm-up second; every contender gets a fresh trainer. The cost of each
is the median over the rounds of 1 − rate/rate(none) of the same round. Also reported: the share of the
time the server spent encoding, and the share of a core each viewer process used.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from benchmarks.common import DEFAULT_CORPUS, interleave, machine
from rnntui import Corpus, TrainConfig, Trainer
from rnntui.runs import protocol as P
from rnntui.runs.client import SocketRunClient
from rnntui.runs.server import RunServer
from rnntui.trainer import RUNNING, Stop

WARMUP = 1.0
ONE_VIEWER_TARGET, THREE_VIEWERS_TARGET = 0.05, 0.10


def _trainer(corpus: Corpus, *, full_history: bool = True) -> Trainer:
    trainer = Trainer(corpus, TrainConfig())
    if full_history:  # what a long run's snapshots carry: every series at its capacity
        for h in trainer.history.values():
            for i in range(h.capacity):
                h.append(i, 1.0 + 1e-3 * i)
    return trainer


def _median_time(fn, n: int) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def codec(corpus: Corpus, n: int = 50) -> dict:
    trainer = _trainer(corpus)
    trainer.state = RUNNING
    for _ in range(120):
        trainer.train_step()
    trainer.sample()
    snap = trainer.snapshot()
    frame = P.encode_message(P.SnapshotPush(snap))
    ins = trainer.inspection()
    ins_frame = P.encode_message(P.InspectReply(1, inspection=ins))
    return {
        "snapshot_bytes": len(frame),
        "snapshot_encode_ms": 1e3 * _median_time(lambda: P.encode_message(P.SnapshotPush(snap)), n),
        "snapshot_decode_ms": 1e3 * _median_time(lambda: P.decode_message(frame[4:]), n),
        "snapshot_publish_ms": 1e3 * _median_time(trainer.snapshot, n),  # the trainer's own cost, for scale
        "inspection_bytes": len(ins_frame),
        "inspection_encode_ms": 1e3 * _median_time(lambda: P.encode_message(P.InspectReply(1, inspection=ins)), n),
        "inspection_decode_ms": 1e3 * _median_time(lambda: P.decode_message(ins_frame[4:]), n),
    }


def viewer_main(path: str) -> None:
    """A viewer process: receive and decode until the run ends; say how many snapshots came."""
    with SocketRunClient.connect(path, timeout=30) as client:
        client.wait_snapshot(timeout=30)
        print("ready", flush=True)
        cpu, wall = time.process_time(), time.monotonic()
        while not client.ended:
            time.sleep(0.1)
        # snapshots received; the share of one core this viewer used from then on
        print(client.received, (time.process_time() - cpu) / (time.monotonic() - wall), flush=True)


def served(corpus: Corpus, seconds: float, viewers: int) -> dict:
    trainer = _trainer(corpus)
    folder = tempfile.mkdtemp(prefix="rb-", dir="/tmp")
    path = os.path.join(folder, "socket")
    thread = threading.Thread(target=trainer.run, kwargs={"stay_alive": True}, daemon=True)
    thread.start()
    while trainer.latest is None:
        time.sleep(0.01)
    srv = RunServer(trainer, path, P.RunInfo.of(trainer, name="bench")).start()
    procs = [subprocess.Popen([sys.executable, "-m", "benchmarks.runs", "--viewer", path], stdout=subprocess.PIPE,
                              text=True, cwd=Path(__file__).resolve().parent.parent) for _ in range(viewers)]
    try:
        for p in procs:
            if p.stdout.readline().strip() != "ready":
                raise RuntimeError("a viewer did not start")
        time.sleep(WARMUP)
        first = trainer.latest
        pushed0, enc0 = srv.pushed, srv.encode_seconds
        time.sleep(seconds)
        last = trainer.latest
        pushed, enc = srv.pushed - pushed0, srv.encode_seconds - enc0
    finally:
        trainer.send(Stop())
        thread.join(30)
        srv.close()
        said = [(p.stdout.readline() or "0 0").split() for p in procs]
        for p in procs:
            p.wait(30)
            p.stdout.close()
        os.rmdir(folder)
    return {"rate": (last.chars_seen - first.chars_seen) / (last.time - first.time), "pushed": pushed,
            "encode_share": enc / (last.time - first.time), "received": [int(x[0]) for x in said],
            "viewer_cpu": [float(x[1]) for x in said]}


class Contender:
    """Training served to ``viewers`` viewer processes (for ``common.interleave``)."""

    def __init__(self, name: str, viewers: int, corpus: Corpus):
        self.name, self.viewers, self.corpus = name, viewers, corpus
        self.rates: list[float] = []
        self.extras: list[dict] = []

    @property
    def median(self) -> float:
        return statistics.median(self.rates)

    def measure(self, seconds: float) -> float:
        got = served(self.corpus, seconds, self.viewers)
        self.extras.append(got)
        return got["rate"]


def measure(corpus: Corpus, seconds: float, rounds: int, progress=print) -> dict:
    none, *others = [Contender(name, k, corpus) for name, k in (("none", 0), ("1 viewer", 1), ("3 viewers", 3))]
    interleave([none, *others], seconds, rounds, pause=0.2, progress=progress)
    out: dict = {"seconds": seconds, "rounds": rounds, "none": none.median,
                 "rates": {c.name: c.rates for c in (none, *others)},
                 "extras": {c.name: c.extras for c in (none, *others)}}
    for c in others:  # the median of the rounds' costs: each compares two runs next to each other in time
        per_round = [1 - b / a for a, b in zip(none.rates, c.rates, strict=True)]
        out[c.name], out[f"cost {c.name}"], out[f"cost {c.name} per round"] = c.median, statistics.median(
            per_round), per_round
    return out


FIRST_SCREEN_TARGET = 1.0


def first_screen(corpus: Path, repeats: int = 7) -> list[float]:
    """Seconds from ``rnntui watch NAME`` starting in a new tmux session to the run's figures on its screen."""
    import re
    import shutil

    if shutil.which("tmux") is None:
        raise RuntimeError("the first-screen measurement needs tmux")
    home = tempfile.mkdtemp(prefix="rw-", dir="/tmp")
    env = {**os.environ, "RNNTUI_HOME": home, "OPENBLAS_NUM_THREADS": "1"}
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # as an installed rnntui runs: from its compiled modules
    rnntui = [sys.executable, "-m", "rnntui"]
    started = subprocess.run([*rnntui, str(corpus), "--detach", "--name", "bench"], env=env, capture_output=True,
                             text=True, timeout=300)
    if started.returncode != 0:
        raise RuntimeError(started.stderr)
    sock = f"rnntui-bench-{os.getpid()}"
    tmux = ["tmux", "-L", sock]
    command = " ".join(["env", "-u", "PYTHONDONTWRITEBYTECODE", f"RNNTUI_HOME={home}", "OPENBLAS_NUM_THREADS=1",
                        *rnntui, "watch", "bench", "--no-mouse"])
    times = []
    try:
        for i in range(repeats):
            t0 = time.monotonic()
            subprocess.run([*tmux, "-f", "/dev/null", "new-session", "-d", "-x", "80", "-y", "24", "-s", f"w{i}",
                            command], check=True, env=env)
            while True:
                pane = subprocess.run([*tmux, "capture-pane", "-p", "-t", f"w{i}"], capture_output=True,
                                      text=True).stdout
                if re.search(r"RUNNING\s+(?:run \S+ |\S+ )?step \d+", pane):  # (the name may fit between)
                    times.append(time.monotonic() - t0)
                    break
                if time.monotonic() - t0 > 30:
                    raise RuntimeError(f"no first screen within 30 s:\n{pane}")
                time.sleep(0.01)
            subprocess.run([*tmux, "kill-session", "-t", f"w{i}"], check=False)
            time.sleep(0.5)
    finally:
        subprocess.run([*tmux, "kill-server"], check=False, capture_output=True)
        subprocess.run([*rnntui, "stop", "bench", "--no-save"], env=env, capture_output=True, timeout=120)
        shutil.rmtree(home, ignore_errors=True)
    return times


def report(c: dict | None, t: dict | None, w: list[float] | None = None) -> str:
    lines = [] if c is None else [f"snapshot (128/25/32, histories full): {c['snapshot_bytes'] / 1e3:,.0f} kB, encode "
             f"{c['snapshot_encode_ms']:.2f} ms, decode {c['snapshot_decode_ms']:.2f} ms (the trainer makes one in "
             f"{c['snapshot_publish_ms']:.2f} ms); inspection {c['inspection_bytes'] / 1e3:,.0f} kB, encode "
             f"{c['inspection_encode_ms']:.2f} ms, decode {c['inspection_decode_ms']:.2f} ms"]
    if t is not None:
        lines.append(f"throughput ({t['rounds']}×{t['seconds']:g} s each, interleaved, medians): none "
                     f"{t['none']:,.0f} chars/s, 1 viewer {t['1 viewer']:,.0f}, 3 viewers {t['3 viewers']:,.0f}")
        for name, target in (("1 viewer", ONE_VIEWER_TARGET), ("3 viewers", THREE_VIEWERS_TARGET)):
            per = ", ".join(f"{100 * x:.1f}%" for x in t[f"cost {name} per round"])
            verdict = "within" if t[f"cost {name}"] <= target else "OVER"
            lines.append(f"  {name}: costs {100 * t[f'cost {name}']:.1f}% (rounds: {per}) — {verdict} the "
                         f"{100 * target:.0f}% target")
        ex = t["extras"]["3 viewers"][-1]
        lines.append(f"  (last 3-viewer round: {ex['pushed']} snapshots encoded, {100 * ex['encode_share']:.2f}% "
                     f"of the time encoding; received per viewer {ex['received']}, each using "
                     f"{', '.join(f'{100 * x:.1f}%' for x in ex['viewer_cpu'])} of a core)")
    if w:
        verdict = "within" if statistics.median(w) < FIRST_SCREEN_TARGET else "OVER"
        lines.append(f"first screen of rnntui watch (tmux 80×24, {len(w)} times): median {statistics.median(w):.2f} s, "
                     f"max {max(w):.2f} s ({', '.join(f'{x:.2f}' for x in w)}) — {verdict} the "
                     f"{FIRST_SCREEN_TARGET:g} s target")
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--codec-only", action="store_true")
    ap.add_argument("--watch-only", action="store_true", help="only the first screen of rnntui watch")
    ap.add_argument("--repeats", type=int, default=7, help="first-screen measurements")
    ap.add_argument("--viewer", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.viewer:
        viewer_main(a.viewer)
        return
    if a.watch_only:
        w = first_screen(a.corpus, a.repeats)
        print(report(None, None, w))
        if a.json:
            a.json.write_text(json.dumps({"machine": machine(), "first_screen": w}, indent=2))
        return
    corpus = Corpus.load(a.corpus)
    c = codec(corpus)
    t = None if a.codec_only else measure(corpus, a.seconds, a.rounds)
    w = None if a.codec_only else first_screen(a.corpus, a.repeats)
    print(report(c, t, w))
    if a.json:
        a.json.write_text(json.dumps({"machine": machine(), "codec": c, "throughput": t, "first_screen": w},
                                     indent=2))


if __name__ == "__main__":
    main()
