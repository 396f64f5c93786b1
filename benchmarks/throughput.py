"""rnntui's NumPy trainer against PyTorch on the CPU, side by side in one run; and what it costs besides.

    python -m benchmarks.throughput                      # ≈ 6 minutes: every table below
    python -m benchmarks.throughput --quick              # ≈ 2 minutes, shorter runs
    python -m benchmarks.throughput --corpus ../shared/corpora/tinyshakespeare.txt --json bench.json
    python -m benchmarks.throughput --cell lstm --configs "128,25,32 512,50,64" --no-ui --no-memory

Throughput, for each (H, T, B): training runs of ``--seconds`` each, interleaved round after
round (``--rounds``), and their medians:

  ours      ``Trainer.train_step`` in float32: BPTT, element clip ±5, Adagrad (lr 0.1) and every
            figure the gradient panel shows (sampling and validation off, as in the reference)
  ours f64  the same in float64
  torch     the PyTorch reference (benchmarks/torch_reference.py: nn.RNN, or with --cell nn.LSTM / nn.GRU,
            the same optimizer and clip) on 2 threads, and on 1 thread, when torch is importable
  GEMM      NumPy's float32 product (B×H)·(H×H), the recurrence's shape, on 1 and on 2 BLAS threads

The GEMM-bound limit is the FLOPs of forward + BPTT per character, 6GH² + 6VH (the three products
with the recurrent weights, G gate blocks of H×H each — 1 for the rnn, 4 for the lstm, 3 for the gru —
and the three with v, 2 FLOPs per multiply-add), divided by the better GEMM rate: what a trainer
doing nothing but those products at that rate would reach. "monitor" is the share of our step spent
in Monitor.pre_clip, Monitor.measure and Monitor.reach (every layer's gradient reach and the gates'
figures, every REACH_EVERY steps). ``--cell`` (and ``--layers``) chooses the model.

Then (unless --no-ui / --no-memory): the cost of the terminal app (benchmarks/ui_overhead.py),
and corpus loading and step memory (benchmarks/memory.py). A summary checks the performance
targets. Set OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE are reported (they slow current OpenBLAS).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks import memory, torch_reference, ui_overhead
from benchmarks.common import DEFAULT_CORPUS, Remote, Runner, fmt_rate, fmt_ratio, machine, ratio, run_remotes
from rnntui import Corpus, HyperParams, TrainConfig, Trainer
from rnntui.cells import make_cell

CONFIGS = ((100, 25, 1), (128, 25, 32), (512, 50, 64))
#: The reference's settings, and ours: the lecture's Adagrad with element-wise clipping.
HYPER = HyperParams(optimizer="adagrad", lr=0.1, clip_mode="element", clip=5.0, sample_every=0, val_every=0)
#: The performance targets: (ours ÷ best PyTorch) and (ours ÷ GEMM-bound limit) per config.
TORCH_TARGET = {(128, 25, 32): 2.5, (512, 50, 64): 1.5, (100, 25, 1): 2.0}
#: The gated cells' goals against PyTorch's nn.LSTM / nn.GRU (issue 13).
GATED_TORCH_TARGET = {(128, 25, 32): 1.5, (512, 50, 64): 1.2}
LIMIT_TARGET = {(128, 25, 32): 0.5, (512, 50, 64): 0.8}
MONITOR_TARGET, UI_TARGET, F64_TARGET, LOAD_SECONDS, LOAD_RSS = 0.05, 0.05, 2.5, 5.0, 3.0


def build_ours(corpus_path: str, H: int, T: int, B: int, dtype: str = "float32", threads: str = "auto",
               cell: str = "rnn", layers: int = 1) -> Runner:
    """Our trainer (thread policy ``threads``); its extra figures: the monitor's share of the step, diverged steps."""
    os.environ["RNNTUI_THREADS"] = threads
    corpus = Corpus.load(corpus_path)
    trainer = Trainer(corpus, TrainConfig(hidden_size=H, seq_length=T, batch_size=B, dtype=dtype, hyper=HYPER,
                                          cell=cell, layers=layers))
    clock = {"monitor": 0.0, "total": 0.0, "diverged": 0}
    mon = trainer.monitor
    for name in ("pre_clip", "measure", "reach"):
        def timed(*args, _f=getattr(mon, name), **kwargs):
            t = time.perf_counter()
            try:
                return _f(*args, **kwargs)
            finally:
                clock["monitor"] += time.perf_counter() - t
        setattr(mon, name, timed)

    def step() -> int:
        t = time.perf_counter()
        if trainer.train_step() is None:
            clock["diverged"] += 1
        clock["total"] += time.perf_counter() - t
        return T * B

    def extra() -> dict:
        return {"monitor_share": clock["monitor"] / clock["total"], "diverged": clock["diverged"],
                "parts": len(trainer.model._buffers_for(B, T).parts)}

    label = {"auto": "", "blas": " blas"}.get(threads, f" {threads}p")
    return Runner(f"ours{'' if dtype == 'float32' else ' f64'}{label}", step, extra=extra)


def build_gemm(H: int, B: int, threads: int) -> Runner:
    """float32 (B×H)·(H×H) products on ``threads`` BLAS threads; a step is 50 of them (returns FLOPs)."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(threads, user_api="blas")
    rng = np.random.default_rng(0)
    a, w = rng.standard_normal((B, H)).astype(np.float32), rng.standard_normal((H, H)).astype(np.float32)
    out = np.empty((B, H), np.float32)

    def step() -> float:
        for _ in range(50):
            np.matmul(a, w, out=out)
        return 50 * 2.0 * B * H * H

    return Runner(f"gemm {threads}t", step)


def build_torch(corpus_path: str, H: int, T: int, B: int, threads: int, cell: str = "rnn", layers: int = 1) -> Runner:
    ref = torch_reference.TorchCharRNN(Corpus.load(corpus_path), H, T, B, threads=threads, cell=cell, layers=layers)
    ref.setup()
    return Runner(f"torch {threads}t", ref.step)


def bench_config(corpus: Corpus, corpus_path: str, cfg: tuple[int, int, int], seconds: float, rounds: int,
                 use_torch: bool, f64: bool, policies: list[str], progress, cell: str = "rnn",
                 layers: int = 1) -> dict:
    H, T, B = cfg
    V = corpus.vocab.size
    remotes = [Remote(build_ours, corpus_path, H, T, B, "float32", p, cell, layers) for p in policies]
    if f64:
        remotes.append(Remote(build_ours, corpus_path, H, T, B, "float64", policies[0], cell, layers))
    if use_torch:
        remotes += [Remote(build_torch, corpus_path, H, T, B, n, cell, layers) for n in (2, 1)]
    remotes += [Remote(build_gemm, H, B, 1), Remote(build_gemm, H, B, 2)]
    runners = run_remotes(remotes, f"H={H} T={T} B={B}", seconds, rounds, progress=progress)
    med = {r.name: r.median for r in runners}
    ours_extra = runners[0].extras
    G = len(make_cell(cell).gates)
    flops_per_char = layers * 6 * G * H * H + 6 * V * H
    gemm_rate = max(med["gemm 1t"], med["gemm 2t"])
    limit = gemm_rate / flops_per_char
    nan = float("nan")
    best_torch = max(med.get("torch 2t", nan), med.get("torch 1t", nan))
    return {
        "H": H, "T": T, "B": B, "V": V, "rates": {r.name: r.rates for r in runners}, "median": med,
        "parts": ours_extra.get("parts"), "flops_per_char": flops_per_char, "gemm_rate": gemm_rate,
        "gemm_limit": limit,
        "vs_torch_2t": ratio(med["ours"], med.get("torch 2t", nan)),
        "vs_torch_best": ratio(med["ours"], best_torch),
        "of_limit": ratio(med["ours"], limit),
        "f32_over_f64": ratio(med["ours"], med.get("ours f64", nan)),
        "monitor_share": ours_extra.get("monitor_share", nan),
        "diverged_steps": {r.name: r.extras.get("diverged") for r in runners if "diverged" in r.extras},
    }


def table(results: list[dict]) -> str:
    nan = float("nan")
    variants = sorted({k for r in results for k in r["median"] if k.startswith("ours ") and "f64" not in k})
    head = (f"{'H,T,B':>11} {'parts':>5} {'ours':>7} " + "".join(f"{v:>10}" for v in variants)
            + f" {'torch 2t':>8} {'torch 1t':>8} {'÷torch2t':>8} {'÷best':>7} {'GEMM GF/s':>9} {'limit':>7}"
            f" {'of limit':>8} {'ours f64':>8} {'f32÷f64':>7} {'monitor':>7}")
    lines = [head, "-" * len(head)]
    for r in results:
        m = r["median"]
        lines.append(
            f"{r['H']:>4},{r['T']},{r['B']:<3} {r['parts']!s:>5} {fmt_rate(m['ours']):>7} "
            + "".join(f"{fmt_rate(m.get(v, nan)):>10}" for v in variants)
            + f" {fmt_rate(m.get('torch 2t', nan)):>8} {fmt_rate(m.get('torch 1t', nan)):>8}"
            f" {fmt_ratio(r['vs_torch_2t']):>8} {fmt_ratio(r['vs_torch_best']):>7} {r['gemm_rate'] / 1e9:9.1f}"
            f" {fmt_rate(r['gemm_limit']):>7} {100 * r['of_limit']:7.0f}% {fmt_rate(m.get('ours f64', nan)):>8}"
            f" {fmt_ratio(r['f32_over_f64']):>7} {100 * r['monitor_share']:6.1f}%")
    lines.append("chars/s, medians of the rounds. ours: the default thread policy (auto; 'parts' = threads it split the"
                 " batch over);\n1p: RNNTUI_THREADS=1, blas: RNNTUI_THREADS=blas (NumPy's own BLAS threading). "
                 "÷best: ours ÷ the faster of torch on 2 and on 1 thread.")
    return "\n".join(lines)


def ui_in_subprocess(corpus_path: str, seconds: float, rounds: int) -> dict:
    """benchmarks/ui_overhead.py in a fresh interpreter (nothing of the runs above in its threads or BLAS)."""
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "ui.json"
        subprocess.run([sys.executable, "-m", "benchmarks.ui_overhead", "--seconds", str(seconds), "--rounds",
                        str(rounds), "--corpus", corpus_path, "--json", str(out)], check=True,
                       cwd=Path(__file__).resolve().parent.parent)
        return json.loads(out.read_text())


def targets(results: list[dict], ui: dict | None, load: list[dict] | None, steps: list[dict] | None,
            cell: str = "rnn") -> list[dict]:
    """Each performance target with the measured value and whether it is met."""
    out = []

    def check(what, value, goal, ok):
        out.append({"target": what, "value": value, "goal": goal, "met": bool(ok)})

    by = {(r["H"], r["T"], r["B"]): r for r in results}
    for cfg, goal in (TORCH_TARGET if cell == "rnn" else GATED_TORCH_TARGET).items():
        if cfg in by and by[cfg]["vs_torch_best"] == by[cfg]["vs_torch_best"]:
            v = by[cfg]["vs_torch_best"]
            check(f"{cfg}: ours ÷ PyTorch (the faster of 1 and 2 threads)", v, f"≥ {goal}×", v >= goal)
    for cfg, goal in LIMIT_TARGET.items() if cell == "rnn" else ():
        if cfg in by:
            v = by[cfg]["of_limit"]
            check(f"{cfg}: share of the GEMM-bound limit", v, f"≥ {goal:.0%}", v >= goal)
    for cfg, r in by.items():
        v = r["monitor_share"]
        check(f"{cfg}: monitoring share of the step", v, f"≤ {MONITOR_TARGET:.0%}", v <= MONITOR_TARGET)
    for r in results:
        v = r["f32_over_f64"]
        if v == v:
            check(f"{(r['H'], r['T'], r['B'])}: float32 ÷ float64 throughput", v, f"≤ {F64_TARGET}×", v <= F64_TARGET)
    if ui:
        check("UI cost (TUI vs headless, defaults)", ui["cost"], f"≤ {UI_TARGET:.0%}", ui["cost"] <= UI_TARGET)
    for r in load or ():
        check(f"load {r['file_bytes'] / 1e6:.0f} MB {r['kind']}: seconds", r["seconds"], f"< {LOAD_SECONDS:g}",
              r["seconds"] < LOAD_SECONDS)
        check(f"load {r['file_bytes'] / 1e6:.0f} MB {r['kind']}: peak RSS ÷ file size", r["peak_over_file"],
              f"< {LOAD_RSS:g}×", r["peak_over_file"] < LOAD_RSS)
    if steps and len(steps) > 1:
        a, b = steps[0]["peak_bytes"], steps[-1]["peak_bytes"]
        check("step memory independent of corpus size (peak, 100M ÷ 1M chars)", b / a, "≈ 1", abs(b / a - 1) < 0.1)
    return out


def format_targets(rows: list[dict]) -> str:
    lines = ["performance targets:"]
    for t in rows:
        v = t["value"]
        shown = f"{100 * v:.1f}%" if "%" in t["goal"] else f"{v:.2f}"
        lines.append(f"  {'MET ' if t['met'] else 'MISS'}  {t['target']}: {shown} (goal {t['goal']})")
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS,
                    help="training text (default sample_data/persuasion.txt)")
    ap.add_argument("--quick", action="store_true", help="short runs: 0.5 s × 3 rounds, UI 2 s × 3")
    ap.add_argument("--seconds", type=float, help="length of one run (default 1.6)")
    ap.add_argument("--rounds", type=int, help="runs of each contender (default 5)")
    ap.add_argument("--configs", help="H,T,B triples, e.g. '128,25,32 512,50,64' (default: the three of the targets)")
    ap.add_argument("--policies", default="auto,1,blas",
                    help="RNNTUI_THREADS values to run ours with, the first is 'ours' (default auto,1,blas)")
    ap.add_argument("--no-torch", action="store_true", help="skip PyTorch even if it is installed")
    ap.add_argument("--no-f64", action="store_true", help="skip the float64 runs")
    ap.add_argument("--no-ui", action="store_true", help="skip the UI overhead")
    ap.add_argument("--no-memory", action="store_true", help="skip corpus loading and step memory")
    ap.add_argument("--cell", default="rnn", choices=("rnn", "lstm", "gru"), help="the model's cell (default rnn)")
    ap.add_argument("--layers", type=int, default=1, help="the model's layers (default 1)")
    ap.add_argument("--json", type=Path, help="write every number to this file")
    a = ap.parse_args(argv)
    seconds = a.seconds or (0.5 if a.quick else 1.6)
    rounds = a.rounds or (3 if a.quick else 5)
    configs = ([tuple(int(x) for x in c.split(",")) for c in a.configs.split()] if a.configs else list(CONFIGS))
    policies = a.policies.split(",")
    use_torch = not a.no_torch and torch_reference.available()

    info = machine()
    print(f"machine: {info['cpus']} CPUs, load {info['loadavg']}, numpy {info['numpy']}, torch {info['torch']}, "
          f"BLAS {info['blas']}" + (f", env {info['openblas_env']}" if info["openblas_env"] else ""))
    if not use_torch:
        print("PyTorch not installed: no reference columns (pip install torch==2.13.0 gives a CPU build here)")
    corpus = Corpus.load(a.corpus)
    print(f"corpus {a.corpus}: {len(corpus):,} chars, V={corpus.vocab.size}")
    print(f"model: {a.cell}, {a.layers} layer(s)")
    results = [bench_config(corpus, str(a.corpus), cfg, seconds, rounds, use_torch, not a.no_f64, policies, print,
                            a.cell, a.layers) for cfg in configs]
    ui = None if a.no_ui else ui_in_subprocess(str(a.corpus), 2.0 if a.quick else 3.0, 3 if a.quick else 5)
    load = steps = None
    if not a.no_memory:
        load = memory.corpus_load(100, DEFAULT_CORPUS)
        steps = memory.step_memory(chars=(1_000_000, 100_000_000))
    info["loadavg_end"] = machine()["loadavg"]

    print()
    print(table(results))
    if ui:
        print(ui_overhead.report(ui))
    if load:
        print(memory.report(load, steps))
    rows = targets(results, ui, load, steps, a.cell)
    print(format_targets(rows))
    print(f"load average at the start {info['loadavg']}, at the end {info['loadavg_end']}")
    if a.json:
        a.json.write_text(json.dumps({"machine": info, "corpus": str(a.corpus), "seconds": seconds, "rounds": rounds,
                                      "policies": policies, "throughput": results, "ui": ui, "corpus_load": load,
                                      "step_memory": steps, "targets": rows}, indent=2, default=float))
        print(f"wrote {a.json}")


if __name__ == "__main__":
    main()
