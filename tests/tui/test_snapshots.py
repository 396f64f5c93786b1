"""Snapshot tests at 80×24: the main screen and the dialogs, paused at a known step (deterministic)."""

from __future__ import annotations

import pytest

from rnntui.tui.app import RnnTuiApp

from .conftest import app_of, make_trainer

SIZE = (80, 24)


def paused_app(steps: int = 40) -> RnnTuiApp:
    trainer = make_trainer(sample_length=120)
    for _ in range(steps):
        trainer.train_step()
    trainer.validate()
    trainer.sample()
    return app_of(trainer, start_paused=True)


async def settle(pilot) -> None:
    app = pilot.app
    for _ in range(100):
        if app.snapshot is not None and app._seen_version >= 0 and app.loss_plot._drawn[0] != -1:
            break
        await pilot.pause(0.05)
    app.tick(force=True)
    await pilot.pause(0.1)


def with_keys(*keys):
    async def run_before(pilot) -> None:
        await settle(pilot)
        for key in keys:
            await pilot.press(key)
            await pilot.pause(0.1)
        for inp in pilot.app.screen.query("Input"):
            inp.cursor_blink = False  # a blinking cursor would make the picture depend on timing
        await pilot.pause(0.1)

    return run_before


@pytest.mark.parametrize("keys", [(), ("question_mark",), ("h",), ("q",)], ids=["main", "help", "hyperparams", "quit"])
def test_screens(snap_compare, keys):
    assert snap_compare(paused_app(), terminal_size=SIZE, run_before=with_keys(*keys))


def test_wide_layout(snap_compare):
    assert snap_compare(paused_app(), terminal_size=(160, 48), run_before=settle)


def test_too_small(snap_compare):
    assert snap_compare(paused_app(), terminal_size=(50, 15), run_before=settle)


def test_lstm_two_layers(snap_compare):
    """A gated cell's screen: the gate panel, h and c reach, the layer's gradient rows."""
    from .test_cells_views import cell_trainer

    trainer = cell_trainer("lstm", 2, 0.2)
    for _ in range(40):
        trainer.train_step()
    assert snap_compare(app_of(trainer, start_paused=True), terminal_size=SIZE, run_before=settle)
