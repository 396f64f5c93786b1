"""Soak: the live app trains for a long time under tmux; memory must stay flat and no figure may turn NaN.

Starts the real ``rnntui CORPUS`` in a detached tmux session (80×24 unless told otherwise) with
``--metrics`` and ``--checkpoint``, and every ``--interval`` seconds samples the resident memory of
the app and of its training process, summed (VmRSS from /proc/PID/status), the newest metrics line
and whether the screen still shows the status bar. Every few minutes it presses keys a user would
(sample now, log scale, help and back) so those paths run too. At the end it quits with ``q`` (which
saves), and reports RSS at the start (after a warm-up), at the end and at its maximum, the growth
rate over the second half, the steps trained and whether any figure became NaN or infinite.

    python -m benchmarks.soak                     # 30 minutes on sample_data/persuasion.txt
    python -m benchmarks.soak --minutes 5 --interval 5
    python -m benchmarks.soak --minutes 10 -- --hidden-size 64 --batch-size 16   # extra rnntui options

Exit code 0 when memory stayed flat and every figure finite, 1 otherwise. A JSON report with
every sample is written to benchmarks/results/ (ignored by git). Linux only (/proc), needs tmux.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def rss_kb(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def last_line(path: Path) -> dict | None:
    """The newest complete JSON line of the metrics file (read from its end: the file keeps growing)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 65536))
            lines = f.read().split(b"\n")
    except OSError:
        return None
    for raw in reversed(lines):
        if raw.strip():
            try:
                return json.loads(raw)
            except json.JSONDecodeError:
                continue
    return None


def non_finite(record, path: str = "") -> list[str]:
    """Names of every NaN or infinite number in a metrics record (None is fine: not measured yet)."""
    bad = []
    if isinstance(record, dict):
        for k, v in record.items():
            bad += non_finite(v, f"{path}.{k}" if path else k)
    elif isinstance(record, list):
        for i, v in enumerate(record):
            bad += non_finite(v, f"{path}[{i}]")
    elif isinstance(record, float) and not math.isfinite(record):
        bad.append(path)
    return bad


def child_of(pid: int) -> int | None:
    """The first child process of ``pid``, started by any of its threads (the app starts its training
    process from a worker thread); threads in the order of their ids, so the main thread's child comes first.

    The same walk as ``tests/tui/test_tmux.py:_child_of``: keep the two alike (tests and benchmarks do not
    import each other)."""
    try:
        tasks = sorted(Path(f"/proc/{pid}/task").iterdir(), key=lambda p: int(p.name))
    except OSError:
        return None
    for task in tasks:
        try:
            kids = (task / "children").read_text().split()
        except OSError:
            continue
        if kids:
            return int(kids[0])
    return None


def slope_mb_per_hour(samples: list[dict]) -> float:
    """Least-squares slope of RSS over time."""
    if len(samples) < 3:
        return 0.0
    ts = [s["t"] for s in samples]
    ys = [s["rss_kb"] / 1024 for s in samples]
    mt, my = sum(ts) / len(ts), sum(ys) / len(ys)
    var = sum((t - mt) ** 2 for t in ts)
    return 3600 * sum((t - mt) * (y - my) for t, y in zip(ts, ys, strict=True)) / var if var else 0.0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=30.0, help="how long to train (default 30)")
    ap.add_argument("--interval", type=float, default=10.0, help="seconds between samples (default 10)")
    ap.add_argument("--corpus", default=str(ROOT / "sample_data" / "persuasion.txt"))
    ap.add_argument("--size", default="80x24", help="terminal size (default 80x24)")
    ap.add_argument("--log-every", type=int, default=50, help="steps between metrics lines (default 50)")
    ap.add_argument("--warmup", type=float, default=0.1,
                    help="share of the run before the RSS baseline is taken (default 0.1)")
    ap.add_argument("--max-growth-mb", type=float, default=10.0,
                    help="RSS growth after warm-up still counted as flat (default 10 MB; the leak this benchmark "
                         "found in Textual's Footer grew it by ~25 MB an hour)")
    ap.add_argument("--max-slope", type=float, default=10.0,
                    help="RSS growth rate over the second half still counted as flat, MB an hour (default 10; "
                         "a 30-minute run can creep under --max-growth-mb and still grow without bound)")
    ap.add_argument("--out", default=None, help="JSON report (default benchmarks/results/soak-TIME.json)")
    ap.add_argument("rnntui_args", nargs="*", help="extra rnntui options, after --")
    a = ap.parse_args(argv)
    if shutil.which("tmux") is None:
        print("soak: tmux is not installed", file=sys.stderr)
        return 2
    if not Path("/proc/self/status").exists():
        print("soak: needs Linux /proc", file=sys.stderr)
        return 2
    width, height = a.size.lower().split("x")

    work = Path(tempfile.mkdtemp(prefix="rnntui-soak-"))
    metrics, ckpt, exit_file = work / "metrics.jsonl", work / "soak.npz", work / "exit.txt"
    exe = Path(sys.executable).parent / "rnntui"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "rnntui"]
    cmd += [str(Path(a.corpus).resolve()), "--metrics", str(metrics), "--log-every", str(a.log_every),
            "--checkpoint", str(ckpt), "--checkpoint-every", "5m", "--no-mouse", *a.rnntui_args]
    socket = f"rnntui-soak-{os.getpid()}"
    home = shlex.quote(str(work / "home"))  # the soak's run folder, not the user's
    script = (f"cd {shlex.quote(str(work))} && OPENBLAS_NUM_THREADS=1 RNNTUI_HOME={home} "
              f"{' '.join(map(shlex.quote, cmd))}; "
              f"echo EXIT=$? > {exit_file}; sleep 600")

    def tmux(*args: str) -> str:
        return subprocess.run(["tmux", "-L", socket, *args], capture_output=True, text=True, timeout=30).stdout

    print(f"soak: {' '.join(cmd[-12:])}\n      for {a.minutes:g} min in tmux {width}×{height}, sampling every "
          f"{a.interval:g} s; files in {work}", flush=True)
    tmux("-f", "/dev/null", "new-session", "-d", "-x", width, "-y", height, "-s", "soak", script)
    pid = None
    samples: list[dict] = []
    nan_seen: list[str] = []
    screen_ok = True
    ended_early = False
    try:
        shell = int(tmux("list-panes", "-t", "soak", "-F", "#{pane_pid}").strip() or 0)
        deadline = time.monotonic() + 30
        while pid is None and time.monotonic() < deadline:
            pid = child_of(shell)
            time.sleep(0.1)
        if pid is None:
            print("soak: rnntui did not start:\n" + tmux("capture-pane", "-p", "-t", "soak"), file=sys.stderr)
            return 2
        t0 = time.monotonic()
        end = t0 + 60 * a.minutes
        next_keys = t0 + 120
        while time.monotonic() < end:
            time.sleep(min(a.interval, max(0.0, end - time.monotonic())))
            app_rss = rss_kb(pid)
            trainer_pid = child_of(pid)  # the run's process (started by the app, in a session of its own)
            trainer_rss = rss_kb(trainer_pid) if trainer_pid else None
            rss = None if app_rss is None else app_rss + (trainer_rss or 0)
            if rss is None:
                print("soak: rnntui ended early:\n" + tmux("capture-pane", "-p", "-t", "soak"), file=sys.stderr)
                ended_early = True
                break
            rec = last_line(metrics) or {}
            bad = non_finite(rec)
            if bad:
                nan_seen.append(f"step {rec.get('step')}: {', '.join(bad[:5])}")
            screen = tmux("capture-pane", "-p", "-t", "soak")
            shows_status = any(w in screen for w in ("RUNNING", "PAUSED", "FINISHED"))
            screen_ok &= shows_status
            s = {"t": round(time.monotonic() - t0, 1), "rss_kb": rss, "app_kb": app_rss, "trainer_kb": trainer_rss,
                 "step": rec.get("step"),
                 "loss_ema": rec.get("loss_ema"), "val_loss": rec.get("val_loss"), "status_bar": shows_status}
            samples.append(s)
            print(f"  {s['t']:7.0f} s  RSS {rss / 1024:7.1f} MB (app {app_rss / 1024:.1f} + trainer "
                  f"{(trainer_rss or 0) / 1024:.1f})  step {s['step']}  loss_ema {s['loss_ema']}"
                  + ("" if shows_status else "  (no status bar on screen!)"), flush=True)
            if time.monotonic() > next_keys:  # what a user does now and then
                for keys in (["s"], ["l"], ["?"], ["Escape"], ["l"]):  # tmux key names, not Textual's
                    tmux("send-keys", "-t", "soak", *keys)
                    time.sleep(0.5)
                next_keys = time.monotonic() + 120
        tmux("send-keys", "-t", "soak", "q")
        time.sleep(1.0)
        tmux("send-keys", "-t", "soak", "s")  # the quit dialog: stop the run (it saves and ends)
        deadline = time.monotonic() + 60
        while not exit_file.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        exit_line = exit_file.read_text().strip() if exit_file.exists() else "no exit within 60 s"
    finally:
        tmux("kill-server")
        if pid is not None and rss_kb(pid) is not None:
            trainer_pid = child_of(pid)
            os.kill(pid, signal.SIGKILL)
            if trainer_pid and rss_kb(trainer_pid) is not None:
                os.kill(trainer_pid, signal.SIGKILL)

    if not samples:
        print("soak: no samples", file=sys.stderr)
        return 1
    base_i = min(len(samples) - 1, int(len(samples) * a.warmup))
    start, last = samples[base_i], samples[-1]
    top = max(s["rss_kb"] for s in samples)
    growth_mb = (last["rss_kb"] - start["rss_kb"]) / 1024
    second_half = samples[len(samples) // 2:]
    slope = slope_mb_per_hour(second_half)
    flat = (growth_mb <= a.max_growth_mb and (top - start["rss_kb"]) / 1024 <= 1.5 * a.max_growth_mb
            and slope <= a.max_slope)
    report = {
        "command": cmd, "minutes": a.minutes, "interval": a.interval, "terminal": f"{width}x{height}",
        "rss_first_mb": samples[0]["rss_kb"] / 1024, "rss_start_mb": start["rss_kb"] / 1024,
        "rss_start_at_s": start["t"], "rss_end_mb": last["rss_kb"] / 1024, "rss_max_mb": top / 1024,
        "growth_mb": growth_mb, "second_half_slope_mb_per_hour": slope, "steps": last["step"],
        "loss_ema_end": last["loss_ema"], "non_finite": nan_seen, "screen_ok": screen_ok, "exit": exit_line,
        "ended_early": ended_early, "flat": flat, "samples": samples,
    }
    out = Path(a.out) if a.out else ROOT / "benchmarks" / "results" / f"soak-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    print(f"\nsoak: {a.minutes:g} min, {last['step']} steps, loss_ema {last['loss_ema']}")
    print(f"RSS: first {report['rss_first_mb']:.1f} MB, after warm-up ({start['t']:.0f} s) "
          f"{report['rss_start_mb']:.1f} MB, end {report['rss_end_mb']:.1f} MB, max {report['rss_max_mb']:.1f} MB; "
          f"growth after warm-up {growth_mb:+.1f} MB, second-half slope {slope:+.2f} MB/hour → "
          f"{'flat' if flat else 'GROWING'}")
    print(f"figures: {'all finite' if not nan_seen else 'NON-FINITE: ' + '; '.join(nan_seen[:5])}; screen "
          f"{'always showed the status bar' if screen_ok else 'lost the status bar at times'}; {exit_line}")
    print(f"report: {out}")
    if ended_early:
        print(f"rnntui ENDED EARLY, after {last['t']:.0f} s")
    ok = flat and not nan_seen and screen_ok and exit_line == "EXIT=0" and not ended_early
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
