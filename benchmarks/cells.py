"""The model's pass for every cell (rnntui.model.CharRNN over rnntui.cells) against PyTorch's nn.LSTM / nn.GRU /
nn.RNN on the CPU, and the vanilla cell against the model of an earlier commit, side by side in one run.

    python -m benchmarks.cells                                  # ≈ 4 minutes
    python -m benchmarks.cells --quick                          # ≈ 1½ minutes
    python -m benchmarks.cells --corpus ../shared/corpora/tinyshakespeare.txt --json cells.json
    git worktree add /tmp/base <commit>                         # then: the vanilla model of <commit> beside ours
    python -m benchmarks.cells --cells rnn --configs 128,25,32 --baseline /tmp/base --no-torch --rounds 15

Every contender does the same work per step on the same batch stream: the cell's forward over a (B, T)
batch from one-hot characters, a linear output layer, softmax cross-entropy summed over T and averaged
over B, and backpropagation to every parameter; the last state is carried to the next batch without
gradient (truncated BPTT). No clipping and no update (those are the same for every cell).

  ours <cell>   CharRNN.loss_and_grads in float32, the batch split over the cores by the model's thread policy
                (rnntui.parallel: "auto", 1 part at (128, 25, 32), 2 at (512, 50, 64)); ``1p``: one part
  base rnn      with --baseline DIR: CharRNN.loss_and_grads of the rnntui package in DIR (a git worktree of an
                earlier commit), loaded under another name: the vanilla cell's yardstick
  torch <cell>  PyTorch's module (one-hot float32 input, nn.Linear, F.cross_entropy, loss.backward())
                on 2 threads and on 1 thread

Each contender runs in its own process, for ``--seconds`` at a time, round after round in rotating
order (``--rounds``); the table has the medians, in characters per second, and each gated cell's ratio
to the faster PyTorch setting (and ours rnn ÷ base rnn, with the per-round ratios' median: the two ran
back to back, so it is the steadier figure on a busy machine). The load average before and after says how
busy the machine was.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
from pathlib import Path

import numpy as np

from benchmarks.common import DEFAULT_CORPUS, Remote, Runner, fmt_rate, fmt_ratio, machine, ratio, run_remotes
from rnntui.corpus import BatchStream, Corpus

CONFIGS = ((128, 25, 32), (512, 50, 64))
CELL_NAMES = ("rnn", "lstm", "gru")
#: ours ÷ the faster PyTorch setting, per config, for the gated cells (issue 13's goals)
GOALS = {(128, 25, 32): 1.5, (512, 50, 64): 1.2}


def _model_runner(name: str, CharRNN, corpus: Corpus, H: int, T: int, B: int, **kw) -> Runner:
    """A contender stepping ``CharRNN(...).loss_and_grads`` over the batch stream, the state carried."""
    model = CharRNN(corpus.vocab.size, H, seed=0, dtype=np.float32, **kw)
    stream = BatchStream(corpus.train, B, T)
    state = {"h": model.zero_state(B)}

    def step() -> int:
        x, y, wrapped = stream.next()
        if wrapped:
            state["h"] = model.zero_state(B)
        _, _, state["h"], _ = model.loss_and_grads(x, y, state["h"])
        return B * T

    parts = len(model._buffers_for(B, T).parts)
    return Runner(name, step, extra=lambda: {"parts": parts, "policy": model.threads})


def build_ours(corpus_path: str, cell: str, H: int, T: int, B: int, threads: str) -> Runner:
    from rnntui.model import CharRNN

    label = "" if threads == "auto" else f" {threads}p"
    return _model_runner(f"ours {cell}{label}", CharRNN, Corpus.load(corpus_path), H, T, B, cell=cell,
                         threads=threads)


def load_package(root: str, name: str = "rnntui_base"):
    """The ``rnntui`` package in the folder ``root`` (a worktree of another commit), imported as ``name``."""
    init = Path(root) / "rnntui" / "__init__.py"
    spec = importlib.util.spec_from_file_location(name, init, submodule_search_locations=[str(init.parent)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def build_base(base_root: str, corpus_path: str, H: int, T: int, B: int) -> Runner:
    """The vanilla model of the rnntui in ``base_root`` (its default thread policy)."""
    base = load_package(base_root)
    return _model_runner("base rnn", base.model.CharRNN, Corpus.load(corpus_path), H, T, B)


def build_torch(corpus_path: str, cell: str, H: int, T: int, B: int, threads: int) -> Runner:
    import torch
    from torch import nn
    from torch.nn import functional as F

    torch.manual_seed(0)
    corpus = Corpus.load(corpus_path)
    V = corpus.vocab.size
    module = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}[cell](V, H)
    out = nn.Linear(H, V)
    params = [*module.parameters(), *out.parameters()]
    zeros = torch.zeros(1, B, H)
    state = {"h": (zeros, zeros.clone()) if cell == "lstm" else zeros}
    stream = BatchStream(corpus.train, B, T)

    def setup() -> None:
        torch.set_num_threads(threads)

    def step() -> int:
        x, y, wrapped = stream.next()
        if wrapped:
            state["h"] = (zeros, zeros.clone()) if cell == "lstm" else zeros
        xs = F.one_hot(torch.from_numpy(np.ascontiguousarray(x.T, dtype=np.int64)), V).float()
        ys = torch.from_numpy(np.ascontiguousarray(y.T, dtype=np.int64)).reshape(-1)
        hs, h = module(xs, state["h"])
        loss = F.cross_entropy(out(hs).reshape(-1, V), ys, reduction="sum") / B
        for p in params:
            p.grad = None
        loss.backward()
        state["h"] = tuple(a.detach() for a in h) if cell == "lstm" else h.detach()
        return B * T

    setup()
    return Runner(f"torch {cell} {threads}t", step, setup=setup)


def bench_config(corpus_path: str, cfg: tuple[int, int, int], seconds: float, rounds: int, use_torch: bool,
                 cells: tuple[str, ...], policies: list[str], progress, baseline: str | None = None) -> dict:
    H, T, B = cfg
    remotes = [Remote(build_ours, corpus_path, c, H, T, B, p) for c in cells for p in policies]
    if baseline and "rnn" in cells:
        remotes.append(Remote(build_base, baseline, corpus_path, H, T, B))
    if use_torch:
        remotes += [Remote(build_torch, corpus_path, c, H, T, B, n) for c in cells for n in (2, 1)]
    runners = run_remotes(remotes, f"H={H} T={T} B={B}", seconds, rounds, progress=progress)
    med = {r.name: r.median for r in runners}
    parts = {r.name: r.extras.get("parts") for r in runners if "parts" in r.extras}
    for r in runners:
        if r.extras.get("policy") == "blas" and "blas" not in policies:
            progress(f"WARNING: {r.name} ran with NumPy's own BLAS threading (threadpoolctl could not be imported)")
    nan = float("nan")
    vs = {}
    for c in cells:
        best = max(med.get(f"torch {c} 2t", nan), med.get(f"torch {c} 1t", nan))
        vs[c] = ratio(med.get(f"ours {c}", nan), best)
    by_name = {r.name: r for r in runners}
    per_round = []
    if "base rnn" in by_name and "ours rnn" in by_name:
        per_round = [a / b for a, b in zip(by_name["ours rnn"].rates, by_name["base rnn"].rates, strict=True)]
    return {"H": H, "T": T, "B": B, "rates": {r.name: r.rates for r in runners}, "median": med, "parts": parts,
            "vs_torch_best": vs, "rnn_vs_base": ratio(med.get("ours rnn", nan), med.get("base rnn", nan)),
            "rnn_vs_base_rounds": per_round,
            "rnn_vs_base_round_median": statistics.median(per_round) if per_round else nan}


def table(results: list[dict], cells: tuple[str, ...], policies: list[str]) -> str:
    nan = float("nan")
    extra = [p for p in policies if p != "auto"]
    head = (f"{'H,T,B':>11} {'cell':>5} {'parts':>5} {'ours':>8}" + "".join(f" {'ours ' + p + 'p':>8}" for p in extra)
            + f" {'torch 2t':>9} {'torch 1t':>9} {'÷torch':>7} {'goal':>5}")
    lines = [head, "-" * len(head)]
    for r in results:
        m, cfg = r["median"], (r["H"], r["T"], r["B"])
        for c in cells:
            goal = f"{GOALS[cfg]:.1f}×" if c != "rnn" and cfg in GOALS else ""
            lines.append(f"{r['H']:>4},{r['T']},{r['B']:<3} {c:>5} {r['parts'].get(f'ours {c}')!s:>5} "
                         f"{fmt_rate(m.get(f'ours {c}', nan)):>8}"
                         + "".join(f" {fmt_rate(m.get(f'ours {c} {p}p', nan)):>8}" for p in extra)
                         + f" {fmt_rate(m.get(f'torch {c} 2t', nan)):>9} {fmt_rate(m.get(f'torch {c} 1t', nan)):>9}"
                         f" {fmt_ratio(r['vs_torch_best'][c]):>7} {goal:>5}")
        if "base rnn" in m:
            lines.append(f"{'':>11} {'':>5} {'':>5} base rnn {fmt_rate(m['base rnn'])}: ours rnn ÷ base rnn "
                         f"{fmt_ratio(r['rnn_vs_base'])} (medians), {fmt_ratio(r['rnn_vs_base_round_median'])} "
                         "(median of the rounds' ratios)")
    lines.append("chars/s, medians of the rounds; ÷torch: ours ÷ the faster of PyTorch on 2 and on 1 thread.")
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS, help="training text (default persuasion.txt)")
    ap.add_argument("--quick", action="store_true", help="short runs: 0.6 s × 3 rounds")
    ap.add_argument("--seconds", type=float, help="length of one run (default 1.5)")
    ap.add_argument("--rounds", type=int, help="runs of each contender (default 5)")
    ap.add_argument("--configs", help="H,T,B triples, e.g. '128,25,32 512,50,64' (default: these two)")
    ap.add_argument("--cells", default=",".join(CELL_NAMES), help="cells to run (default rnn,lstm,gru)")
    ap.add_argument("--policies", default="auto",
                    help="RNNTUI_THREADS policies for ours, the first is 'ours' (default auto; e.g. auto,1)")
    ap.add_argument("--no-torch", action="store_true", help="skip PyTorch even if it is installed")
    ap.add_argument("--baseline", help="a folder holding another commit's rnntui (a git worktree): its vanilla model "
                                       "runs beside ours rnn")
    ap.add_argument("--json", type=Path, help="write every number to this file")
    a = ap.parse_args(argv)
    seconds = a.seconds or (0.6 if a.quick else 1.5)
    rounds = a.rounds or (3 if a.quick else 5)
    configs = [tuple(int(x) for x in c.split(",")) for c in a.configs.split()] if a.configs else list(CONFIGS)
    cells = tuple(a.cells.split(","))
    policies = a.policies.split(",")
    if policies[0] != "auto":
        policies.insert(0, "auto")
    try:
        import torch  # noqa: F401
        use_torch = not a.no_torch
    except ImportError:
        use_torch = False
        print("PyTorch not installed: no reference columns (pip install torch==2.13.0 gives a CPU build here)")
    info = machine()
    corpus = Corpus.load(a.corpus)
    print(f"machine: {info['cpus']} CPUs, load {info['loadavg']}, numpy {info['numpy']}, torch {info['torch']}")
    print(f"corpus {a.corpus}: {len(corpus):,} chars, V={corpus.vocab.size}")
    results = [bench_config(str(a.corpus), cfg, seconds, rounds, use_torch, cells, policies, print, a.baseline)
               for cfg in configs]
    info["loadavg_end"] = machine()["loadavg"]
    print()
    print(table(results, cells, policies))
    for r in results:
        cfg = (r["H"], r["T"], r["B"])
        for c in cells:
            if c != "rnn" and cfg in GOALS and r["vs_torch_best"][c] == r["vs_torch_best"][c]:
                v = r["vs_torch_best"][c]
                print(f"  {'MET ' if v >= GOALS[cfg] else 'MISS'}  {cfg} {c}: {v:.2f}× PyTorch (goal ≥ {GOALS[cfg]}×)")
    print(f"load average at the start {info['loadavg']}, at the end {info['loadavg_end']}")
    if a.json:
        a.json.write_text(json.dumps({"machine": info, "corpus": str(a.corpus), "seconds": seconds, "rounds": rounds,
                                      "results": results}, indent=2, default=float))
        print(f"wrote {a.json}")


if __name__ == "__main__":
    main()
