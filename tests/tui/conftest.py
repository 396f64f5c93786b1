"""Fixtures for the app tests: a tiny trainer on a generated text, and a helper to wait on it."""

from __future__ import annotations

import asyncio
import time

import pytest

from rnntui.corpus import Corpus
from rnntui.runs.client import InProcessClient
from rnntui.trainer import Trainer

from ..conftest import build_trainer

TEXT = (
    "the quick brown fox jumps over the lazy dog. a stitch in time saves nine.\n"
    "all that glitters is not gold; the early bird catches the worm!\n"
) * 40


def make_trainer(tmp_path=None, **hyper) -> Trainer:
    """The app tests' trainer: :func:`tests.conftest.build_trainer` with a 16-unit float32 model on ``TEXT``,
    validating every 20 steps, saving to ``tmp_path/run.npz`` when given; hyperparameters as keywords."""
    corpus = Corpus.from_text(TEXT, val_fraction=0.1, path="tiny.txt")
    ckpt = str(tmp_path / "run.npz") if tmp_path is not None else None
    return build_trainer(corpus, hidden_size=16, seq_length=10, batch_size=4, dtype="float32", seed=3, init="scaled",
                         checkpoint_path=ckpt, publish_interval=0.1,
                         **{"val_every": 20, "sample_length": 60, **hyper})


@pytest.fixture
def trainer(tmp_path):
    return make_trainer()


APP_KEYWORDS = ("refresh_hz", "plot_every")
_CLIENTS: list[InProcessClient] = []


def app_of(trainer: Trainer, **kwargs):
    """The app on ``trainer`` as a run of this process (an InProcessClient, trained once the app is up, staying
    alive at ``max_steps`` as a served run's viewer would); ``start_paused``, ``max_steps`` and ``on_step``
    go to the run, ``refresh_hz`` and ``plot_every`` to the app. The run is stopped when the test ends (the
    app leaves a run training when it closes: a detached run goes on)."""
    from rnntui.tui.app import RnnTuiApp

    app_kw = {k: kwargs.pop(k) for k in APP_KEYWORDS if k in kwargs}
    client = InProcessClient(trainer, run={"stay_alive": True, **kwargs})
    _CLIENTS.append(client)
    return RnnTuiApp(client, **app_kw)


@pytest.fixture(autouse=True)
def _stop_in_process_runs():
    """No test leaves a trainer thread training behind it (they would slow every test after it)."""
    yield
    while _CLIENTS:
        _CLIENTS.pop().close()


async def wait_for(pilot, condition, timeout: float = 10.0, what: str = "condition") -> None:
    """Let the app and the trainer thread run until ``condition()`` holds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await pilot.pause(0.05)
        await asyncio.sleep(0)


async def open_form(pilot):
    """Press h and return the hyperparameter form it opens."""
    from rnntui.tui.screens.hyperparams import HyperparamsScreen

    await pilot.press("h")
    await pilot.pause()
    form = pilot.app.screen
    assert isinstance(form, HyperparamsScreen)
    return form
