"""Changes are confirmed on the message line, never by toasts over the figures; L shows them all, whole."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets._toast import Toast

from rnntui.trainer import SaveCheckpoint, Set
from rnntui.tui.app import RnnTuiApp
from rnntui.tui.screens.changelog import ChangeLogScreen
from rnntui.tui.screens.help import help_text
from rnntui.tui.widgets.status import CUT_MARK

from .conftest import app_of, make_trainer, wait_for
from .test_layout import plain, screen_lines, snap, started

README = Path(__file__).resolve().parents[2] / "README.md"
MANY = {"lr": 0.00125, "optimizer": "rmsprop", "clip_mode": "element", "clip": 0.005, "temperature": 1.3}


def toasts(app) -> list:
    return list(app.screen.query(Toast))


async def test_confirmations_raise_no_toast_over_the_figures():
    app = app_of(make_trainer(clip_mode="global", clip=5.0, lr=0.004), start_paused=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await started(pilot, app)
        for _ in range(5):
            await pilot.press("left_square_bracket")
        await pilot.press("plus")
        await wait_for(pilot, lambda: snap(app).hyper.lr == pytest.approx(0.008), what="lr change")
        await pilot.pause(0.6)  # two redraws
        assert toasts(app) == [] and len(app._notifications) == 0
        assert "lr 0.004 → 0.008" in str(app.message_line.render())  # the message line confirms it
        assert "lr 0.004 → 0.008" in screen_lines(app)[app.message_line.region.y]


async def test_an_alert_is_marked_on_the_message_line(tmp_path):
    app = app_of(make_trainer(), start_paused=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await started(pilot, app)
        app.send(SaveCheckpoint(str(tmp_path / "no such folder" / "run.npz")))
        await wait_for(pilot, lambda: "NOT saved" in str(app.message_line.render()), what="failed save")
        line = screen_lines(app)[app.message_line.region.y]
        assert line.lstrip().startswith("⚠ step 0: checkpoint NOT saved")
        x = line.index("⚠")
        style = app.screen.get_style_at(x + 2, app.message_line.region.y)
        assert style.bold and style.color is not None
        assert style.color.triplet.hex.lower() == app.theme_variables["error"].lower()
        assert toasts(app) == []


def test_alerts_are_told_from_confirmations():
    trainer = make_trainer()
    trainer.set_hyper(lr=-1.0)  # refused
    trainer.set_hyper(lr=0.01)
    refused, applied = trainer.changes[-2], trainer.changes[-1]
    assert refused.alert and not applied.alert


@pytest.mark.parametrize("size", [(40, 12), (80, 24), (160, 48)], ids=lambda s: f"{s[0]}x{s[1]}")
async def test_L_shows_every_change_whole_at_any_size(size):
    app = app_of(make_trainer(), start_paused=True)
    async with app.run_test(size=size) as pilot:
        await started(pilot, app)
        app.send(Set(MANY))
        await wait_for(pilot, lambda: snap(app).hyper.optimizer == "rmsprop", what="the change")
        app.tick(force=True)
        await pilot.pause(0.2)
        text = snap(app).changes[-1].text
        if size[0] < 120:  # the message line holds only the start of it, and says where the rest is
            message = plain(str(app.message_line.render()))
            assert message.endswith(CUT_MARK) and text not in message
        await pilot.press("L")
        await pilot.pause(0.3)
        assert isinstance(app.screen, ChangeLogScreen)
        lines = plain(str(app.screen.query_one("#changelog-lines").render()))
        for c in snap(app).changes:
            assert f"{c.step} {c.text}" in " ".join(lines.split()), c
        # live: a change made while the screen is open appears in it
        app.send(Set({"temperature": 0.5}))
        await wait_for(pilot, lambda: "temperature 1.3 → 0.5" in str(app.screen.query_one("#changelog-lines").render()),
                       what="live update")
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, ChangeLogScreen)


async def test_change_log_from_the_palette_and_its_key_documented():
    app = app_of(make_trainer(), start_paused=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await started(pilot, app)
        binding = next(b for b in app.BINDINGS if getattr(b, "id", None) == "changelog")
        assert "L" in binding.key.split(",") and binding.description
        await pilot.press("ctrl+p")
        await pilot.pause(0.3)
        await pilot.press(*"change log")
        await pilot.pause(0.5)
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ChangeLogScreen), what="change log from the palette")
        await pilot.press("L")  # L closes it again
        await pilot.pause()
        assert not isinstance(app.screen, ChangeLogScreen)
    assert "| L |" in help_text(bindings=RnnTuiApp.BINDINGS)
    assert "| `L` |" in README.read_text(encoding="utf-8")
