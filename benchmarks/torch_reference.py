"""The PyTorch CPU reference: the same network and training step, written the straightforward way.

``nn.RNN`` (tanh; or ``nn.LSTM``, ``nn.GRU``: ``cell``, ``layers``) over one-hot inputs, ``nn.Linear``
output, cross-entropy summed over the T steps and averaged over the B sequences, ``clip_grad_value_(5)``,
Adagrad (or Adam, without the clip: ``optimizer``, ``clip=0``); the hidden state is
carried from batch to batch and detached (truncated BPTT), over the same batch stream as
rnntui's trainer. Needs ``pip install torch==2.13.0`` (a CPU build on this machine); it is in no
extra of the project, because PyPI's default torch is a multi-GB CUDA build.
"""

from __future__ import annotations

import numpy as np

from rnntui.corpus import BatchStream, Corpus


def available() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


class TorchCharRNN:
    """One training step per :meth:`step` (returns the characters trained on)."""

    def __init__(self, corpus: Corpus, hidden_size: int, seq_length: int, batch_size: int, *, threads: int,
                 lr: float = 0.1, clip: float = 5.0, dtype: str = "float32", seed: int = 0, cell: str = "rnn",
                 layers: int = 1, optimizer: str = "adagrad"):
        import torch
        from torch import nn

        self.torch, self.nn = torch, nn
        self.threads = threads
        torch.manual_seed(seed)
        self.dtype = getattr(torch, dtype)
        V = corpus.vocab.size
        self.V, self.B, self.T, self.clip = V, batch_size, seq_length, clip
        module = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}[cell]
        self.lstm = cell == "lstm"
        self.rnn = module(V, hidden_size, num_layers=layers).to(self.dtype)
        self.out = nn.Linear(hidden_size, V).to(self.dtype)
        self.params = [*self.rnn.parameters(), *self.out.parameters()]
        self.opt = {"adagrad": torch.optim.Adagrad, "adam": torch.optim.Adam}[optimizer](self.params, lr=lr)
        self.zeros = torch.zeros(layers, batch_size, hidden_size, dtype=self.dtype)
        self.h = self.fresh()
        self.loss = float("nan")
        self.stream = BatchStream(corpus.train, batch_size, seq_length)

    def fresh(self):
        return (self.zeros, self.zeros.clone()) if self.lstm else self.zeros

    def setup(self) -> None:
        self.torch.set_num_threads(self.threads)

    def step(self) -> int:
        torch, F = self.torch, self.torch.nn.functional
        x, y, wrapped = self.stream.next()
        if wrapped:
            self.h = self.fresh()
        xs = F.one_hot(torch.from_numpy(np.ascontiguousarray(x.T, dtype=np.int64)), self.V).to(self.dtype)
        ys = torch.from_numpy(np.ascontiguousarray(y.T, dtype=np.int64)).reshape(-1)
        hs, h = self.rnn(xs, self.h)  # (T, B, H)
        logits = self.out(hs).reshape(-1, self.V)
        loss = F.cross_entropy(logits, ys, reduction="sum") / self.B
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.clip:
            self.nn.utils.clip_grad_value_(self.params, self.clip)
        self.opt.step()
        self.h = tuple(a.detach() for a in h) if self.lstm else h.detach()
        self.loss = float(loss.detach()) / self.T  # per character
        return self.T * self.B
