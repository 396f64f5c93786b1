"""Keys in one place: the help's key table, the command palette, the README and each screen's line of keys
are made from (or held to) the screens' BINDINGS."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
from textual.binding import Binding

from rnntui.trainer import RUNNING, RunState
from rnntui.tui.app import RnnTuiApp
from rnntui.tui.keys import key_actions, key_hints, key_names, key_table
from rnntui.tui.screens.changelog import ChangeLogScreen
from rnntui.tui.screens.derivation import DerivationScreen
from rnntui.tui.screens.help import HelpScreen, help_text
from rnntui.tui.widgets.status import status_parts

from .conftest import app_of, make_trainer, wait_for
from .test_keys import from_palette, snap, started

README = Path(__file__).resolve().parents[2] / "README.md"
KEYS = (*RnnTuiApp.BINDINGS, RnnTuiApp.PALETTE_KEY)  # what the help lists


def table_rows(markdown: str, heading: str) -> list[tuple[str, str]]:
    """The ``| key | action |`` rows of the table under ``heading``, as (key cell, action cell)."""
    section = markdown.split(heading, 1)[1]
    rows = []
    for line in section.splitlines()[1:]:
        if line.startswith("#"):
            break
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        separator = set(cells[0]) <= set("-:")
        if line.startswith("|") and len(cells) == 2 and cells != ["key", "action"] and not separator:
            rows.append((cells[0], cells[1]))
    return rows


def test_key_names_are_the_keys_a_person_types():
    assert key_names("plus,equals_sign") == ("+", "=")
    assert key_names("T,shift+t") == ("T",) and key_names("L,shift+l") == ("L",)  # one key, two names
    assert key_names("ctrl+s") == ("ctrl+s",) and key_names("escape,d") == ("esc", "d")
    assert key_names("left_square_bracket") == ("[",) and key_names("question_mark") == ("?",)


def test_every_key_says_what_it_does():
    for b in RnnTuiApp.BINDINGS:
        assert b.tooltip and b.description and b.id, b


def test_the_help_lists_every_key_from_the_bindings():
    text = help_text(bindings=KEYS)
    rows = table_rows(text, "# Keys")
    assert rows == [(a.key_text, a.description) for a in key_actions(KEYS)]
    assert f"| {', '.join(key_names('q'))}, ctrl+c | Quit" in text  # one row per action, every key of it
    assert len(rows) == len({b.action for b in KEYS})
    assert key_table(KEYS) in text


async def test_the_palette_lists_every_key_with_the_helps_words():
    app = app_of(make_trainer(), start_paused=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await started(pilot, app)
        commands = list(app.get_system_commands(app.screen))
    ours = {c.title: c.help for c in commands}
    for a in key_actions(RnnTuiApp.BINDINGS):
        assert ours[a.description].startswith(a.key_text), a  # the help's words and keys
    assert "Command palette: every action above by name" not in ours  # (the palette's own key: help only)
    assert {"Theme", "Screenshot"} <= set(ours)  # Textual's own commands stay
    assert "Quit" not in ours  # … but its Quit, which runs q's action, is listed once, as q
    quits = [c for c in commands if c.title.startswith("Quit")]
    assert len(quits) == 1 and quits[0].help == "q, ctrl+c"


@pytest.mark.parametrize("title,check", [
    ("learning rate ×2", lambda app, lr: snap(app).hyper.lr == pytest.approx(2 * lr)),  # an action with arguments
    ("raise the clip threshold", lambda app, lr: snap(app).hyper.clip == 10.0),
])
async def test_the_palettes_entries_run_their_keys_actions(title, check):
    app = app_of(make_trainer(lr=0.004, clip=5.0), start_paused=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await started(pilot, app)
        await from_palette(pilot, title)
        await wait_for(pilot, lambda: check(app, 0.004), what=title)


def test_the_readme_key_table_is_the_bindings():
    """Every action's keys in a row that starts with its words; no row for a key that is not bound."""
    rows = table_rows(README.read_text(encoding="utf-8"), "## Keys")
    actions = key_actions(KEYS)
    by_keys = {tuple(re.findall(r"`([^`]+)`", keys)): what for keys, what in rows}
    assert len(by_keys) == len(rows), "a row's keys appear twice"
    for a in actions:
        assert a.keys in by_keys, f"README has no row for {a.key_text} ({a.description})"
        assert by_keys[a.keys].startswith(a.description), (a.keys, by_keys[a.keys])
    assert set(by_keys) == {a.keys for a in actions}, "a README row for a key that is not bound"


def test_the_readme_check_would_catch_a_key_left_out_or_one_gone():
    """The same check on a README that lacks a key, and on bindings that lost one."""
    text = README.read_text(encoding="utf-8")
    rows = table_rows(text, "## Keys")
    keys = {tuple(re.findall(r"`([^`]+)`", k)) for k, _ in rows}
    assert ("g",) in keys
    extra = Binding("z", "zap", "zap", tooltip="Zap")
    assert {a.keys for a in key_actions((*KEYS, extra))} - keys == {("z",)}
    fewer = [b for b in KEYS if b.id != "trends"]
    assert keys - {a.keys for a in key_actions(fewer)} == {("g",)}


def test_the_help_names_what_the_status_bar_shows():
    """The status bar's parts (a running snapshot that has every one), each named in the help."""
    trainer = make_trainer()
    trainer.train_step()
    full = dataclasses.replace(trainer.publish(), state=RUNNING, chars_per_sec=1e5)
    words = {"state": ", ".join(s.upper() for s in RunState), "run": "the run's name", "step": "step",
             "epoch": "epoch progress",
             "loss": "loss EMA", "rate": "characters per second", "elapsed": "training time",
             "optimizer": "optimizer", "lr": "lr", "clip": "clip", "temp": "temperature", "save": "save state"}
    assert set(status_parts(full, run="r")) == set(words)
    status = help_text().split("**Status bar**", 1)[1].split("\n\n", 1)[0]
    for part, said in words.items():
        assert said in status, part
    assert "train/val" not in status


def _named_keys(line: str) -> list[str]:
    """The keys a line of keys names ("←/→ step · v verify · esc/d back" → ←, →, v, esc, d)."""
    return [k for part in line.split(" · ") for k in part.split(" ", 1)[0].split("/")]


async def test_the_derivation_screen_names_only_keys_it_binds():
    app = app_of(make_trainer(), start_paused=True)
    bound = {k for b in DerivationScreen.BINDINGS for k in key_names(b.key)}
    async with app.run_test(size=(120, 40)) as pilot:
        await started(pilot, app)
        await pilot.press("d")
        screen = app.screen
        assert isinstance(screen, DerivationScreen)
        await wait_for(pilot, lambda: screen.ins is not None, what="the weights")
        await pilot.pause()
        head = str(screen.query_one("#deriv-head").render())
        line = key_hints(DerivationScreen.BINDINGS)
        assert line in head and "g " not in line
        assert set(_named_keys(line)) == bound
        assert "press v" in str(screen.query_one("#deriv-verify").render())
        assert "v" in bound and "g" not in bound
        app.client.trainer.train_step()  # training moves on: the head says which key refreshes
        app.client.trainer.publish()
        screen.render_terms()
        assert "r refreshes" in str(screen.query_one("#deriv-head").render()) and "r" in bound


def _help_has_the_key_table(screen) -> bool:
    source = screen.query_one("Markdown").source
    return key_table(KEYS) in source and "| g | Trends:" in source


def _change_log_names_its_keys(screen) -> bool:
    keys = str(screen.query_one("#changelog-keys").render())
    return key_hints(ChangeLogScreen.BINDINGS) in keys and "esc/L close" in keys


@pytest.mark.parametrize("key,kind,shows", [
    ("question_mark", HelpScreen, _help_has_the_key_table),  # the help: the app's keys, as a table
    ("L", ChangeLogScreen, _change_log_names_its_keys),  # the change log: its own keys, as a line
], ids=["help", "change log"])
async def test_screens_show_keys_made_from_the_bindings(key, kind, shows):
    app = app_of(make_trainer(), start_paused=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await started(pilot, app)
        await pilot.press(key)
        await pilot.pause()
        assert isinstance(app.screen, kind) and shows(app.screen)
