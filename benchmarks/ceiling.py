"""How fast the gated cells' pass could get on this machine by using both cores: our pass on the whole batch in
one process, against the same pass split over two processes (half the batch each, no GIL shared, nothing
exchanged but the inputs and the gradient), and PyTorch's nn.LSTM / nn.GRU on 2 and on 1 thread.

    python -m benchmarks.ceiling --corpus ../shared/corpora/tinyshakespeare.txt                  # ≈ 2 minutes
    python -m benchmarks.ceiling --corpus ../shared/corpora/tinyshakespeare.txt --cells lstm --configs 128,25,32

The two-process contender is the most a batch split over two cores can give the NumPy pass: the second process
is forked once, with its own copy of the model; per step the parent writes the batch into shared memory,
wakes the child through a pipe, runs its own half, waits for the child's half, and adds the child's gradient to
its own (PyTorch's intra-op threads do the same work on its two threads). Everything else is as in
benchmarks/cells.py: the same batch stream, float32, BLAS on one thread in every process of ours, medians of
interleaved rounds, each contender in a process of its own.
"""

from __future__ import annotations

import argparse
import mmap
import os

import numpy as np

from benchmarks.cells import _model_runner, build_torch
from benchmarks.common import DEFAULT_CORPUS, Remote, Runner, fmt_rate, fmt_ratio, machine, ratio, run_remotes
from rnntui.corpus import BatchStream, Corpus


def _single_blas() -> None:
    from threadpoolctl import threadpool_limits

    threadpool_limits(1, user_api="blas")


def build_split(corpus_path: str, cell: str, H: int, T: int, B: int, processes: int) -> Runner:
    """Our pass (``CharRNN.loss_and_grads``, float32) over the batch, in one process or split in two halves."""
    from rnntui.model import CharRNN

    _single_blas()
    corpus = Corpus.load(corpus_path)
    if processes == 1:
        return _model_runner(f"ours {cell}", CharRNN, corpus, H, T, B, cell=cell, threads=1)
    model = CharRNN(corpus.vocab.size, H, seed=0, dtype=np.float32, cell=cell, threads=1)
    stream = BatchStream(corpus.train, B, T)
    half, n = B // 2, model.num_params()
    shared = mmap.mmap(-1, 4 * n + 8 * 2 * B * T)
    grad_in = np.frombuffer(shared, np.float32, n, 0)
    batch = np.frombuffer(shared, np.int64, 2 * B * T, 4 * n).reshape(2, B, T)
    go_r, go_w = os.pipe()
    done_r, done_w = os.pipe()
    if os.fork() == 0:  # the second process: the batch's second half, until the pipe closes
        os.close(go_w)
        os.close(done_r)
        h = model.zero_state(B - half)
        while os.read(go_r, 1) == b"g":
            x, y = batch[0, half:], batch[1, half:]
            _, g, h, _ = model.loss_and_grads(x, y, h)
            np.copyto(grad_in, g.flat)
            os.write(done_w, b"d")
        os._exit(0)
    os.close(go_r)
    os.close(done_w)
    state = {"h": model.zero_state(half)}

    def split_step() -> int:
        x, y, _ = stream.next()
        batch[0], batch[1] = x, y
        os.write(go_w, b"g")
        _, g, state["h"], _ = model.loss_and_grads(x[:half], y[:half], state["h"])
        if os.read(done_r, 1) != b"d":
            raise RuntimeError("the second process has ended")
        np.add(g.flat, grad_in, out=g.flat)
        return B * T

    return Runner(f"ours {cell} ×2", split_step)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", type=str, default=str(DEFAULT_CORPUS))
    ap.add_argument("--cells", default="lstm,gru")
    ap.add_argument("--configs", default="128,25,32 512,50,64")
    ap.add_argument("--seconds", type=float, default=1.5)
    ap.add_argument("--rounds", type=int, default=5)
    a = ap.parse_args(argv)
    info = machine()
    print(f"machine: {info['cpus']} CPUs, load {info['loadavg']}")
    lines = [f"{'H,T,B':>11} {'cell':>5} {'ours':>8} {'ours ×2':>8} {'torch 2t':>9} {'torch 1t':>9} "
             f"{'×2÷ours':>8} {'ours÷torch':>10} {'×2÷torch':>9}"]
    for cfg in a.configs.split():
        H, T, B = (int(v) for v in cfg.split(","))
        for cell in a.cells.split(","):
            remotes = [Remote(build_split, a.corpus, cell, H, T, B, 1), Remote(build_split, a.corpus, cell, H, T, B, 2),
                       Remote(build_torch, a.corpus, cell, H, T, B, 2), Remote(build_torch, a.corpus, cell, H, T, B, 1)]
            runners = run_remotes(remotes, f"{cell} H={H} T={T} B={B}", a.seconds, a.rounds, progress=print)
            m = [r.median for r in runners]
            best = max(m[2], m[3])
            lines.append(f"{H:>4},{T},{B:<3} {cell:>5} {fmt_rate(m[0]):>8} {fmt_rate(m[1]):>8} {fmt_rate(m[2]):>9} "
                         f"{fmt_rate(m[3]):>9} {fmt_ratio(ratio(m[1], m[0])):>8} {fmt_ratio(ratio(m[0], best)):>10} "
                         f"{fmt_ratio(ratio(m[1], best)):>9}")
    print()
    print("\n".join(lines))
    print("chars/s, medians of the rounds; ÷torch: against the faster of PyTorch on 2 and on 1 thread.")
    print(f"load average at the end {machine()['loadavg']}")


if __name__ == "__main__":
    main()
