"""Helpers shared by the benchmarks: interleaved timing, medians, machine facts.

Timings on a shared 2-core machine are noisy, so nothing is compared across separate runs:
every contender runs for the same few seconds in turn, round after round (the order rotates),
and the medians over the rounds are compared.
"""

from __future__ import annotations

import multiprocessing
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_CORPUS = Path(__file__).resolve().parent.parent / "sample_data" / "persuasion.txt"


@dataclass
class Runner:
    """One contender: ``step()`` does a unit of work and returns its size (characters, FLOPs, …)."""

    name: str
    step: Callable[[], float]
    setup: Callable[[], None] = lambda: None
    extra: Callable[[], dict] = dict  # figures besides the rate (e.g. the monitor's share), cumulative
    rates: list[float] = field(default_factory=list)

    def measure(self, seconds: float) -> float:
        return run_for(self, seconds)

    @property
    def median(self) -> float:
        return statistics.median(self.rates) if self.rates else float("nan")


def run_for(runner: Runner, seconds: float) -> float:
    """Work per second of ``runner`` over about ``seconds`` (after one untimed warm-up step)."""
    runner.setup()
    runner.step()
    done = 0.0
    t0 = time.perf_counter()
    while True:
        done += runner.step()
        elapsed = time.perf_counter() - t0
        if elapsed >= seconds:
            return done / elapsed


def _serve(conn, build: Callable[..., Runner], args: tuple) -> None:
    """A contender's own process: build it, then run it for as long as asked, until told to stop."""
    runner = build(*args)
    conn.send(runner.name)
    while (seconds := conn.recv()) is not None:
        conn.send((runner.measure(seconds), runner.extra()))


class Remote:
    """A contender in a process of its own (spawned): threads, BLAS state and allocator of one contender
    cannot slow another. ``build(*args)`` makes its :class:`Runner` there."""

    def __init__(self, build: Callable[..., Runner], *args):
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_serve, args=(child, build, args), daemon=True)
        self._proc.start()
        self.name = None
        self.rates: list[float] = []
        self.extras: dict = {}

    def ready(self) -> Remote:
        self.name = self._conn.recv()
        return self

    def measure(self, seconds: float) -> float:
        self._conn.send(seconds)
        rate, self.extras = self._conn.recv()
        return rate

    @property
    def median(self) -> float:
        return statistics.median(self.rates) if self.rates else float("nan")

    def close(self) -> None:
        try:
            self._conn.send(None)
        except (BrokenPipeError, OSError):
            pass
        self._proc.join(10)
        if self._proc.is_alive():
            self._proc.kill()


def interleave(runners: list, seconds: float, rounds: int, pause: float = 0.1,
               progress: Callable[[str], None] | None = None) -> None:
    """Run each runner for ``seconds`` in turn, ``rounds`` times, rotating the order; rates into ``runner.rates``."""
    for r in range(rounds):
        k = r % len(runners)
        for runner in runners[k:] + runners[:k]:
            runner.rates.append(runner.measure(seconds))
            time.sleep(pause)  # let threads that spin after their work (BLAS, OpenMP) go idle
        if progress:
            progress(f"round {r + 1}/{rounds}: " + ", ".join(f"{x.name} {x.rates[-1]:,.0f}" for x in runners))


def ratio(a: float, b: float) -> float:
    return a / b if b and b == b else float("nan")


def machine() -> dict:
    """Facts that decide the numbers: cores, load, library versions, BLAS threading."""
    import numpy as np

    info = {"python": sys.version.split()[0], "numpy": np.__version__, "platform": platform.platform(),
            "cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
            "loadavg": os.getloadavg() if hasattr(os, "getloadavg") else None,
            "openblas_env": {k: os.environ[k] for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS",
                                                        "OMP_NUM_THREADS", "RNNTUI_THREADS") if k in os.environ}}
    try:
        from threadpoolctl import threadpool_info

        info["blas"] = [{k: d.get(k) for k in ("internal_api", "version", "architecture", "num_threads")}
                        for d in threadpool_info() if d.get("user_api") == "blas"]
    except ImportError:
        info["blas"] = "threadpoolctl not installed"
    try:
        import torch

        info["torch"] = torch.__version__
    except ImportError:
        info["torch"] = None
    return info


def fmt_rate(x: float) -> str:
    """12,345 → '12.3k'."""
    if x != x:
        return "-"
    return f"{x / 1e6:.2f}M" if x >= 1e6 else f"{x / 1e3:.1f}k" if x >= 1e3 else f"{x:.0f}"


def fmt_ratio(x: float) -> str:
    return "-" if x != x else f"{x:.2f}×"


def run_remotes(remotes: list, label: str, seconds: float, rounds: int,
                progress: Callable[[str], None] | None = None) -> list:
    """Start every remote contender, interleave their rounds, close them all; returns the runners (rates kept)."""
    try:
        runners = [r.ready() for r in remotes]
        if progress:
            progress(f"{label}: {', '.join(r.name for r in runners)}; {rounds} rounds of {seconds:g} s each")
        interleave(runners, seconds, rounds, progress=progress)
    finally:
        for r in remotes:
            r.close()
    return runners
