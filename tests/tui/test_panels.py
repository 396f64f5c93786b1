"""Panels and forms as a person uses them: Enter in the form, reading older samples, numbers and
marks that keep their meaning in every theme and without colour."""

from __future__ import annotations

import re

import pytest
from textual.widgets import Select

from rnntui.trainer import SampleNow
from rnntui.tui.screens.hyperparams import HyperparamsScreen
from rnntui.tui.widgets.samples import SamplePanel
from rnntui.tui.widgets.text import fixed

from .conftest import app_of, make_trainer, open_form, wait_for
from .test_layout import panel_rows, screen_lines, snap, started

SIZE = (80, 24)


async def test_enter_on_a_select_applies_the_form():
    app = app_of(make_trainer(optimizer="adam", clip_mode="global"), start_paused=True)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot, app)
        form = await open_form(pilot)
        select = form.query_one("#f-optimizer", Select)
        select.focus()
        await pilot.pause()
        await pilot.press("space")  # space opens the list; in it, ↓ and Enter pick a choice
        await pilot.pause()
        assert select.expanded
        await pilot.press("down", "enter")
        await pilot.pause()
        assert not select.expanded and select.value != "adam" and app.screen is form
        chosen = select.value
        form.query_one("#f-clip_mode", Select).focus()
        await pilot.press("enter")  # on a closed select Enter applies, as in every field
        await wait_for(pilot, lambda: snap(app).hyper.optimizer == chosen, what="form applied")
        assert not isinstance(app.screen, HyperparamsScreen)
        assert snap(app).hyper.clip_mode == "global"


async def test_older_samples_stay_put_while_new_ones_arrive():
    app = app_of(make_trainer(), start_paused=True)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot, app)
        panel = app.query_one(SamplePanel)

        async def new_sample(n):
            app.send(SampleNow())
            await wait_for(pilot, lambda: len(snap(app).samples) == n, what=f"sample {n}")
            app.tick(force=True)
            await pilot.pause(0.1)

        for n in range(1, 7):
            await new_sample(n)
        assert panel.max_scroll_y > 8
        panel.scroll_to(y=6, animate=False, immediate=True)
        await pilot.pause(0.1)
        text_rows = lambda: [r[:-4] for r in panel_rows(app, panel)[1:-1]]  # without the scrollbar
        reading = text_rows()
        for n in (7, 8):
            await new_sample(n)
            assert text_rows() == reading, "the lines being read moved"
        panel.scroll_home(animate=False, immediate=True)  # at the top the panel follows the newest
        await pilot.pause(0.1)
        await new_sample(9)
        assert panel.scroll_offset.y == 0 and panel.border_title.startswith(f"sample @{snap(app).samples[-1].step}")


@pytest.mark.parametrize("x,text", [(-1.2e-6, "-1.2e-6"), (3e-5, "3.0e-5"), (0.0, "0"), (-0.0, "0"),
                                    (-0.25, "-0.2500"), (0.12345, "0.1235"), (-5e-5, "-0.0001")])
def test_fixed_never_shows_negative_zero(x, text):
    assert fixed(x, 4) == text


def _contrast(a, b) -> float:
    """WCAG contrast ratio of two textual Colors."""
    def lum(c):
        ch = [v / 255 for v in (c.r, c.g, c.b)]
        ch = [v / 12.92 if v <= 0.03928 else ((v + 0.055) / 1.055) ** 2.4 for v in ch]
        return 0.2126 * ch[0] + 0.7152 * ch[1] + 0.0722 * ch[2]
    hi, lo = sorted((lum(a), lum(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


@pytest.mark.parametrize("theme", ["textual-dark", "textual-light"])
async def test_marked_figures_are_readable_in_each_theme(theme):
    """A clipped "post" (↓), the status and message rows: readable against their own background."""
    from textual.color import Color

    app = app_of(make_trainer(clip_mode="global", clip=0.01), start_paused=False, max_steps=5)
    async with app.run_test(size=SIZE) as pilot:
        app.theme = theme
        await wait_for(pilot, lambda: snap(app) is not None and snap(app).grad_stats is not None, what="a step")
        app.tick(force=True)
        await pilot.pause(0.3)
        lines = screen_lines(app)
        y = next(i for i, line in enumerate(lines) if "↓" in line)
        x = lines[y].index("↓") - 1
        style = app.screen.get_style_at(x, y)
        assert _contrast(Color.from_rich_color(style.color), Color.from_rich_color(style.bgcolor)) >= 3.0
        background = Color.parse(app.theme_variables["background"])
        for row in (app.message_line.region.y, app.status_bar.region.y):
            s = app.screen.get_style_at(3, row)
            bg = Color.from_rich_color(s.bgcolor)
            assert abs(bg.brightness - background.brightness) < 0.2, f"row {row} does not follow the {theme} theme"


async def test_meanings_survive_no_color(monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    app = app_of(make_trainer(clip_mode="global", clip=0.01, lr=500.0, optimizer="sgd"), start_paused=False,
                    max_steps=3)
    async with app.run_test(size=(160, 48)) as pilot:
        await wait_for(pilot, lambda: snap(app) is not None and snap(app).grad_stats is not None, what="a step")
        app.tick(force=True)
        await pilot.pause(0.3)
        rows = "\n".join(panel_rows(app, app.grad_panel))
        assert re.search(r"\d↓", rows) and re.search(r"\d!", rows), rows  # marked, not only coloured
        assert "↓ post < pre: the clip changed it" in rows
