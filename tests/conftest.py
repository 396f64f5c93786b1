"""Shared fixtures and helpers for the numerical-core tests.

Everything here is generated in the test process: no file outside the repository is read.
"""

from __future__ import annotations

import os
import tempfile
import time

# Tiny matrices run far faster on one BLAS thread than on several competing for two cores.
# (Only effective when numpy is not imported yet; it usually is not when conftest loads.)
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
# Runs made by the tests (every headless run has a folder) never go to the user's state folder: a folder of the
# session's for session-scoped fixtures, and one per test (the runs_home fixture below).
os.environ["RNNTUI_HOME"] = tempfile.mkdtemp(prefix="rnntui-tests-")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from rnntui import Corpus, HyperParams, TrainConfig, Trainer, lecture  # noqa: E402

WORDS = (
    "the a cat dog bird sat on mat and ran to see small big red old house garden in with was is she he it "
    "they saw her his little river over under tree morning night said quietly"
).split()


def make_text(n_sentences: int = 200, seed: int = 0) -> str:
    """An English-like text: random sentences over a small word list (capitals, commas, full stops)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n_sentences):
        words = list(rng.choice(WORDS, int(rng.integers(4, 10))))
        if len(words) > 5 and rng.random() < 0.3:
            words[2] += ","
        out.append(" ".join(words).capitalize() + ".")
        out.append("\n" if i % 5 == 4 else " ")
    return "".join(out)


def reference_bptt(params: dict, inputs, targets, h0):
    """The lecture's loop (rnntui.lecture, the reference), in float64, with the figures tests compare.

    Returns ``(loss, grads, h_last, dh0, dh_norms, dhnext_norms)``: the loss is summed over the T
    steps and averaged over the B sequences; ``dh_norms[t]`` is ‖∂E/∂h_t‖ and ``dhnext_norms[t]``
    ‖wᵀ·dhraw_t‖ (what step t sends back).
    """
    params = {k: np.asarray(params[k], np.float64) for k in lecture.NAMES}
    fwd, back = lecture.bptt(params, inputs, targets, np.asarray(h0, np.float64), keep=True)
    T = np.shape(inputs)[1]
    dh_norms = np.array([np.linalg.norm(back.steps[t]["dh"]) for t in range(T)])
    dhnext_norms = np.array([np.linalg.norm(back.steps[t]["dhnext"]) for t in range(T)])
    return float(fwd.loss), back.grads, fwd.hs[T - 1], back.dh0, dh_norms, dhnext_norms


def wait_until(cond, timeout=30.0, what="condition"):
    """Poll ``cond()`` until it holds (another thread or process is working towards it)."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


@pytest.fixture(autouse=True)
def runs_home(tmp_path_factory, monkeypatch):
    """Every test's runs live in a folder of its own ($RNNTUI_HOME), never in the user's state folder."""
    home = tmp_path_factory.mktemp("rnntui-home")
    monkeypatch.setenv("RNNTUI_HOME", str(home))
    return home


@pytest.fixture
def reference():
    return reference_bptt


@pytest.fixture(scope="session")
def text() -> str:
    return make_text()


@pytest.fixture(scope="session")
def short_text() -> str:
    """About 600 characters: a small batch stream wraps around it within a few dozen steps."""
    return make_text(20, seed=1)


@pytest.fixture
def corpus_file(tmp_path, text):
    p = tmp_path / "corpus.txt"
    p.write_text(text, encoding="utf-8")
    return p


@pytest.fixture
def corpus(text) -> Corpus:
    return Corpus.from_text(text, val_fraction=0.1)


def build_trainer(corpus: Corpus, *, hidden_size: int = 12, batch_size: int = 3, seq_length: int = 8,
                  dtype: str = "float64", seed: int = 0, init: str = "scaled", checkpoint_path=None,
                  publish_interval: float = 0.01, **hyper) -> Trainer:
    """A small trainer on ``corpus``; hyperparameters as keywords (sampling and validation off unless given).

    The one factory of the tests: the ``make_trainer`` fixture below uses its defaults, the app tests'
    ``make_trainer`` (tests/tui/conftest.py) passes its own settings."""
    hyper = {"sample_every": 0, "val_every": 0, **hyper}
    cfg = TrainConfig(hidden_size=hidden_size, batch_size=batch_size, seq_length=seq_length, dtype=dtype,
                      seed=seed, init=init, hyper=HyperParams(**hyper))
    return Trainer(corpus, cfg, checkpoint_path=checkpoint_path, publish_interval=publish_interval)


@pytest.fixture
def make_trainer(corpus):
    """Factory for small trainers (:func:`build_trainer`) on the ``corpus`` fixture, or on ``text=`` when given."""

    def make(*, text: str | None = None, **settings) -> Trainer:
        return build_trainer(corpus if text is None else Corpus.from_text(text), **settings)

    return make
