"""Memory: loading a 100 MB corpus, and the memory of one training step.

    python -m benchmarks.memory [--size-mb 100] [--corpus PATH] [--json PATH]

Corpus load: a UTF-8 file of ``--size-mb`` MB is generated in a temporary folder from the sample
corpus, twice: plain ASCII, and with curly quotes, dashes and accented letters (characters above
U+00FF make a Python string take 2 bytes per character). Each is loaded by
``rnntui.corpus.Corpus.load`` in a fresh interpreter, which reports the time and its peak RSS
(VmHWM, the whole process: interpreter and NumPy included).

Step memory: the traced peak of NumPy/Python allocations (tracemalloc) over the first training
steps of a fresh trainer (validation and sampling included), on a 1 MB and on a 100 MB training
text: it must not depend on the corpus, and is compared with T·B·H.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import tracemalloc
from pathlib import Path

import numpy as np

from benchmarks.common import DEFAULT_CORPUS

LOAD_SCRIPT = """
import json, resource, sys, time
from rnntui.corpus import Corpus

def peak_rss():  # VmHWM: this process's peak (ru_maxrss would keep the parent's across exec)
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

before = peak_rss()
t0 = time.perf_counter()
c = Corpus.load(sys.argv[1])
seconds = time.perf_counter() - t0
print(json.dumps({"seconds": seconds, "peak_rss": peak_rss(), "rss_before": before,
                  "chars": len(c), "vocab": c.vocab.size}))
"""

NON_ASCII = {"'": "’", '"': "“", "--": "—", " the ": " thé ", "ff": "ﬀ"}


def make_corpus(folder: Path, source: Path, size: int, kind: str) -> Path:
    """A UTF-8 file of ``size`` bytes: the source text repeated, ASCII or with typographic characters."""
    text = source.read_text(encoding="utf-8")
    if kind == "ascii":
        text = text.encode("ascii", "ignore").decode("ascii")
    else:
        for a, b in NON_ASCII.items():
            text = text.replace(a, b)
    unit = text.encode("utf-8")
    path = folder / f"corpus-{kind}.txt"
    with open(path, "wb") as f:
        left = size
        while left > 0:
            chunk = unit[:left]
            if len(chunk) < len(unit):  # cut at a character boundary
                chunk = chunk.decode("utf-8", "ignore").encode("utf-8")
                if not chunk:
                    break
            f.write(chunk)
            left -= len(chunk)
    return path


def corpus_load(size_mb: float = 100, source: Path = DEFAULT_CORPUS, kinds=("ascii", "utf8")) -> list[dict]:
    results = []
    with tempfile.TemporaryDirectory(prefix="rnntui-bench-") as d:
        for kind in kinds:
            path = make_corpus(Path(d), source, int(size_mb * 1e6), kind)
            size = path.stat().st_size
            out = subprocess.run([sys.executable, "-c", LOAD_SCRIPT, str(path)], capture_output=True, text=True,
                                 check=True)
            r = json.loads(out.stdout)
            r.update(kind=kind, file_bytes=size, peak_over_file=r["peak_rss"] / size)
            results.append(r)
            path.unlink()
    return results


def step_memory(chars: tuple[int, ...] = (1_000_000, 100_000_000), hidden_size: int = 128, seq_length: int = 25,
                batch_size: int = 32, steps: int = 20, vocab: int = 65) -> list[dict]:
    """Traced allocation peak of the first ``steps`` steps of a fresh trainer, per training-text size."""
    from rnntui import Corpus, HyperParams, TrainConfig, Trainer
    from rnntui.corpus import Vocab

    v = Vocab("".join(chr(33 + i) for i in range(vocab)))
    rng = np.random.default_rng(0)
    results = []
    for n in chars:
        data = rng.integers(0, vocab, n, dtype=np.uint8)
        corpus = Corpus(vocab=v, train=data[: n - n // 10], val=data[n - n // 10:])
        cfg = TrainConfig(hidden_size=hidden_size, seq_length=seq_length, batch_size=batch_size,
                          hyper=HyperParams(val_every=10, sample_every=10))
        tracemalloc.start()
        trainer = Trainer(corpus, cfg)
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        for _ in range(steps):
            trainer.train_step()
        current, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        tbh = seq_length * batch_size * hidden_size * np.dtype(cfg.dtype).itemsize
        results.append({"train_chars": n, "peak_bytes": peak - base, "kept_bytes": current - base,
                        "TBH_bytes": tbh, "peak_over_TBH": (peak - base) / tbh})
        del trainer, corpus, data
    return results


def report(load: list[dict], steps: list[dict]) -> str:
    lines = ["corpus load (Corpus.load, fresh interpreter):",
             f"  {'file':>6} {'MB':>6} {'seconds':>8} {'peak RSS MB':>12} {'× file':>7} {'RSS before MB':>14}"]
    for r in load:
        lines.append(f"  {r['kind']:>6} {r['file_bytes'] / 1e6:6.0f} {r['seconds']:8.2f} {r['peak_rss'] / 1e6:12.0f} "
                     f"{r['peak_over_file']:6.2f}× {r['rss_before'] / 1e6:14.0f}")
    lines.append("memory of training steps (tracemalloc peak over the first steps, H=128 T=25 B=32 float32):")
    for r in steps:
        lines.append(f"  train text {r['train_chars'] / 1e6:5.0f}M chars: peak {r['peak_bytes'] / 1e6:6.1f} MB "
                     f"= {r['peak_over_TBH']:.1f} × T·B·H·4 bytes; kept between steps {r['kept_bytes'] / 1e6:.1f} MB")
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mb", type=float, default=100)
    ap.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS, help="text the generated corpora repeat")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args(argv)
    load, steps = corpus_load(a.size_mb, a.corpus), step_memory()
    print(report(load, steps))
    if a.json:
        a.json.write_text(json.dumps({"corpus_load": load, "step_memory": steps}, indent=2))


if __name__ == "__main__":
    main()
