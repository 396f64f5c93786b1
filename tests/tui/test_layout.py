"""The layout at the sizes people use (60×20, the minimum, to 160×48): nothing cut, wrapped or hidden.

The status bar, the gradient panel (table and title) and the message line are checked on the
screen the app draws, and the fitting rules on constructed snapshots with long values.
"""

from __future__ import annotations

import dataclasses
import types

import pytest
from rich.cells import cell_len
from textual.content import Content

from rnntui.tui.app import MIN_SIZE
from rnntui.tui.widgets.gradients import GradientPanel, cell, title_parts
from rnntui.tui.widgets.status import CUT_MARK, STATUS_STEPS, fit_message, message_rows, status_line, status_parts
from rnntui.tui.widgets.text import fit_parts

from .conftest import app_of, make_trainer, wait_for

SIZES = [MIN_SIZE, (80, 24), (100, 30), (160, 48)]
ROWS = ("u", "w", "bh", "v", "by", "all")  # the layer's tensors, then the output layer's, then the total
LONG = {"optimizer": "rmsprop", "lr": 0.00125, "clip_mode": "element", "clip": 0.005}
IMPORTANT = ("state", "step", "loss", "rate", "optimizer", "lr", "clip", "temp", "save")


def snap(app):
    return app.snapshot


async def started(pilot, app):
    await wait_for(pilot, lambda: snap(app) is not None, what="first snapshot")


def screen_lines(app) -> list[str]:
    """The characters on the app's screen, one string per row (what a person sees)."""
    return ["".join(seg.text for seg in strip) for strip in app.screen._compositor.render_strips()]


def plain(markup: str) -> str:
    return Content.from_markup(markup).plain


def panel_rows(app, widget) -> list[str]:
    """The widget's rows on screen, border included."""
    r = widget.region
    return [line[r.x:r.x + r.width] for line in screen_lines(app)[r.y:r.y + r.height]]


@pytest.fixture(scope="module")
def long_snap():
    """A real snapshot after a few steps, dressed with long values (a long run, a slow optimizer)."""
    trainer = make_trainer(**LONG)
    trainer.run(max_steps=3)
    snap = trainer.latest
    return dataclasses.replace(snap, state="running", step=44435, epoch=12, chars_per_sec=136_200.0,
                               elapsed=3725.0, loss_ema=1.2345, saved_step=44000)


@pytest.mark.parametrize("width", [w for w, _ in SIZES])
def test_status_bar_fits_with_every_kept_part_whole(long_snap, width):
    inner = width - 2  # the bar's padding
    parts = status_parts(long_snap)
    line = plain(status_line(long_snap, inner))
    assert cell_len(line) <= inner
    kept = fit_parts(parts, inner, STATUS_STEPS)
    assert " ".join(kept.values()) == line
    for name, text in kept.items():
        assert text in parts[name] and text, f"{name} shown as {text!r}, not one of its forms"
    if width >= 80:
        missing = [n for n in IMPORTANT if n not in kept]
        assert not missing, f"at {width} columns the status bar drops {missing}: {line!r}"
        assert "rmsprop" in line and "lr 0.00125" in line and "0.005" in line
        assert "T 0.8" in line or "temp 0.8" in line
    if width >= 160:
        assert kept == {n: f[0] for n, f in parts.items()}, "a wide bar shows every part in full"


def test_status_bar_drops_the_least_useful_first(long_snap):
    for width in range(20, 160):
        kept = fit_parts(status_parts(long_snap), width, STATUS_STEPS)
        assert "state" in kept
        if "epoch" in kept:  # the epoch goes first: whatever is kept with it is kept whole
            assert all(f == status_parts(long_snap)[n][0] for n, f in kept.items() if n != "save")


def test_the_run_name_shows_where_there_is_room_and_gives_way_next_to_the_path(long_snap):
    """Wide, the bar names the run; where parts must give way, the checkpoint's path goes first, then the name, so
    every other part is as it is without the name."""
    long_snap = dataclasses.replace(long_snap, checkpoint_path="/home/someone/.local/state/rnntui/runs/p/ckpt.npz")
    wide = plain(status_line(long_snap, 250, "persuasion-12"))
    assert wide.startswith(" RUNNING  run persuasion-12 step 44435 ") and " ckpt /home/someone/" in wide
    named_once = False
    for width in range(20, 250):
        named = fit_parts(status_parts(long_snap, "persuasion-12"), width, STATUS_STEPS)
        bare = fit_parts(status_parts(long_snap), width, STATUS_STEPS)
        others = {k: v for k, v in named.items() if k not in ("run", "save")}
        assert others == {k: v for k, v in bare.items() if k != "save"}, width
        if "run" not in named:
            assert named == bare, width
        else:
            named_once = True
            if not named["save"].startswith("ckpt "):  # the path gave way before the name did
                assert named["run"] in ("run persuasion-12", "persuasion-12")
    assert named_once
    assert "persuasion-12" not in plain(status_line(long_snap, 78, "persuasion-12"))  # 80 columns: no room


async def test_the_app_names_its_run_on_a_wide_status_bar():
    app = app_of(make_trainer(), start_paused=True)
    async with app.run_test(size=(200, 40)) as pilot:
        await wait_for(pilot, lambda: app.snapshot is not None, what="a snapshot")
        await pilot.pause()
        assert f"run {app.client.info.name} " in plain(app.status_bar.render())


@pytest.mark.parametrize("state", ["paused", "diverged", "crashed", "finished", "stopped"])
def test_no_speed_unless_running(long_snap, state):
    line = plain(status_line(dataclasses.replace(long_snap, state=state), 200))
    assert "ch/s" not in line and "k/s" not in line, line
    assert "136.2k ch/s" in plain(status_line(long_snap, 200))


async def test_paused_app_shows_no_rate():
    app = app_of(make_trainer(), start_paused=False)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: app.snapshot is not None and app.snapshot.chars_per_sec > 0
                       and app.snapshot.state == "running", what="a rate")
        app.tick(force=True)
        await wait_for(pilot, lambda: "ch/s" in str(app.status_bar.render()), what="rate shown")
        await pilot.press("p")
        await wait_for(pilot, lambda: "PAUSED" in str(app.status_bar.render()), what="paused")
        assert app.snapshot.chars_per_sec > 0  # the trainer still knows its last rate…
        assert "ch/s" not in str(app.status_bar.render())  # …but a paused run has none to show


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
async def test_layout_at_each_size(size):
    """Every gradient row on screen, unwrapped; the status bar and the panel title whole."""
    app = app_of(make_trainer(**LONG), start_paused=False, max_steps=30)
    async with app.run_test(size=size) as pilot:
        await wait_for(pilot, lambda: app.snapshot is not None and app.snapshot.grad_stats is not None
                       and app.snapshot.step >= 25, what="training")
        app.tick(force=True)
        await pilot.pause(0.2)
        panel = app.query_one(GradientPanel)
        rows = panel_rows(app, panel)
        labels = [r[2:5].strip() for r in rows[2:-1]]  # border, padding; first content row is the header
        assert labels[:len(ROWS)] == list(ROWS), f"at {size} the gradient rows on screen are {labels}"
        assert "‖g‖pre" in rows[1] and "post" in rows[1]
        for line in str(panel.render()).split("\n"):
            assert cell_len(line) <= panel.content_size.width, f"a gradient row wraps at {size}: {line!r}"
        title = plain(panel.border_title)
        assert title in rows[0] and "…" not in rows[0], f"gradient title cut at {size}: {rows[0]!r}"
        status_row = screen_lines(app)[app.status_bar.region.y]
        shown = plain(str(app.status_bar.render()))
        assert shown.strip() in status_row and cell_len(shown) <= app.status_bar.content_size.width
        await wait_for(pilot, lambda: screen_lines(app)[-1].strip(), what="the footer")
        footer_row = screen_lines(app)[-1]
        assert "? help" in footer_row and "q quit" in footer_row, f"footer cut at {size}: {footer_row!r}"
        if size == (160, 48):  # the room is used: no blank row in the panel, a second sparkline column
            assert all(r[1:-1].strip() for r in rows[1:-1]), "\n".join(rows)
            assert "Δp/p over the run" in rows[1]


def test_clip_rate_in_the_title_when_the_stats_have_it(long_snap):
    g = long_snap.grad_stats
    with_rate = dataclasses.replace(long_snap, grad_stats=dataclasses.replace(g, clip_rate=0.37, clip_window=100))
    parts = title_parts(with_rate)
    assert parts["rate"][0] == "clipped 37% of last 100 steps"
    wide = fit_parts(parts, 200, ())
    assert "clipped 37% of last 100 steps" in wide.values()
    old_stats = types.SimpleNamespace(**{f.name: getattr(g, f.name) for f in dataclasses.fields(g)
                                         if f.name not in ("clip_rate", "clip_window")})
    assert "rate" not in title_parts(dataclasses.replace(long_snap, grad_stats=old_stats))  # stats without the field
    none = dataclasses.replace(with_rate, hyper=with_rate.hyper.replace(clip_mode="none"))
    assert "rate" not in title_parts(none)


def test_marks_carry_the_meaning_without_colour(long_snap):
    p = long_snap.grad_stats.total
    clipped = dataclasses.replace(p, norm_pre=10.0, norm_post=5.0, update_ratio=0.5)
    unclipped = dataclasses.replace(p, norm_pre=5.0, norm_post=5.0, update_ratio=1e-3)
    assert plain(cell(clipped, "post")).endswith("↓") and plain(cell(clipped, "ratio")).endswith("!")
    assert "↓" not in plain(cell(unclipped, "post")) and "!" not in plain(cell(unclipped, "ratio"))
    assert {cell_len(plain(cell(x, k))) for x in (clipped, unclipped) for k in ("post", "ratio")} == {8}


def test_message_line_fits_and_says_where_the_rest_is():
    text = "step 44435: lr 0.01 → 0.002, optimizer sgd → rmsprop, clip_mode global → element, clip 5 → 0.005"
    assert plain(fit_message(text, 200)) == text
    cut = plain(fit_message(text, 78))
    assert cell_len(cut) <= 78 and cut.endswith(CUT_MARK) and cut.startswith("step 44435: lr 0.01 → 0.002")
    hints = ("press h to change settings, space to resume, ctrl+s to save", "h settings · space resume")
    diverged = "step 9: DIVERGED at step 9: non-finite loss; kept the parameters of step 8"
    alert = fit_message(diverged, 58, hints, alert=True, rows=3)  # an alert may take three rows: whole
    assert plain(alert) == f"⚠ {diverged} — {hints[0]}" and message_rows(alert, 58) == 3
    one_row = plain(fit_message(diverged, 58, hints, alert=True))
    assert one_row.startswith("⚠ step 9: DIVERGED") and one_row.endswith(CUT_MARK) and cell_len(one_row) <= 58
    short = plain(fit_message(diverged[:25], 58, hints, alert=True))
    assert short == f"⚠ {diverged[:25]} — {hints[1]}"  # the hint that fits
