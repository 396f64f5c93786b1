"""The long-memory screen (k): the copy loss per distance k, live, at 80×24; refused for other corpora."""

from __future__ import annotations

import re

from rich.cells import cell_len

from rnntui.config import HyperParams, TrainConfig
from rnntui.corpus import Corpus
from rnntui.recall import EVERY, RecallFigures, RecallRow
from rnntui.trainer import Trainer
from rnntui.tui.screens.recall import RecallScreen, figures_text, loss_bar, recall_text

from ..test_recall import recall_text as recall_corpus_text
from .conftest import app_of, make_trainer, wait_for

SIZE = (80, 24)


def recall_trainer(**hyper) -> Trainer:
    corpus = Corpus.from_text(recall_corpus_text(200), path="recall-like.txt")
    cfg = TrainConfig(hidden_size=16, seq_length=10, batch_size=4, seed=0,
                      hyper=HyperParams(**{"sample_every": 0, "val_every": 20, **hyper}))
    return Trainer(corpus, cfg)


def shown(app) -> str:
    return str(app.screen.query_one("#recall-figures").render())


async def test_k_opens_the_screen_with_every_distance_and_marks_those_beyond_T():
    trainer = recall_trainer()
    for _ in range(20):
        trainer.train_step()
    trainer.publish()
    app = app_of(trainer, start_paused=True)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.snapshot is not None, what="trainer")
        await pilot.press("k")
        await wait_for(pilot, lambda: isinstance(app.screen, RecallScreen), what="screen")
        await pilot.pause()
        text = shown(app)
        assert "measured at step 20" in text and "seq length T = 10" in text
        rows = {int(m.group(1)): m.group(0) for m in re.finditer(r"^\s+(\d+)\s+(\d+) .*$", text, re.MULTILINE)}
        assert sorted(rows) == [5, 10, 20, 40]
        assert "beyond T" in rows[20] and "beyond T" in rows[40]
        assert "beyond T" not in rows[5] and "60 %" in rows[5]  # (10 − 5 + 1)/10 of the copies in one window
        assert "k > T = 10: beyond the BPTT window" in text
        assert text.index("beyond the BPTT window") < text.index(rows[20])
        # it fits 80×24: no line is wrapped and nothing is below the screen's bottom
        body, figures = app.screen.query_one("#recall-body"), app.screen.query_one("#recall-figures")
        assert figures.outer_size.height <= body.size.height
        table = text.splitlines()[:-1]  # all but the closing paragraph, which wraps
        assert max(cell_len(line) for line in table) <= SIZE[0]
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, RecallScreen)


async def test_the_screen_follows_the_new_measurements_while_training_runs():
    app = app_of(recall_trainer(), max_steps=EVERY + 60, start_paused=True)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.snapshot is not None, what="trainer")
        await pilot.press("k")
        await wait_for(pilot, lambda: isinstance(app.screen, RecallScreen), what="screen")
        await wait_for(pilot, lambda: "the first comes at step 20" in shown(app), what="the waiting text")
        await pilot.press("space")  # the app's keys work on this screen: training resumes
        await wait_for(pilot, lambda: f"measured at step {EVERY + 20}" in shown(app), timeout=60,
                       what="the second measurement")
        assert "history: steps 20 … 320" in shown(app)


async def test_k_on_a_corpus_of_another_format_says_so_in_the_message_line():
    app = app_of(make_trainer(), start_paused=True)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.snapshot is not None, what="trainer")
        await pilot.pause(0.6)  # the first ticks have written the message line
        await pilot.press("k")
        await pilot.pause(0.6)  # and later ticks do not overwrite what k said
        assert not isinstance(app.screen, RecallScreen)
        message = str(app.query_one("#message").render())
        assert "needs a corpus in recall.txt's format (a:..=a lines)" in message, message  # whole, not cut


def test_before_the_first_measurement_the_screen_says_when_it_comes():
    trainer = recall_trainer()
    snap = trainer.snapshot()
    assert "the first comes at step 20" in recall_text(snap)
    off = recall_trainer(val_every=0).snapshot()
    assert "validation is off" in recall_text(off)
    assert "not in recall.txt's format" in recall_text(snap, available=False)


def test_rows_bars_and_the_window_line():
    rows = (RecallRow(5, 64, 4, 0.004, 1.0), RecallRow(20, 64, 4, 1.386, 0.25), RecallRow(40, 64, 4, 3.5, 0.0))
    fig = RecallFigures(step=1200, seq_length=25, held_out=True, rows=rows,
                        history=((900, (1.4, 1.4, 1.4)), (1200, (0.004, 1.386, 3.5))))
    text = figures_text(fig, 1300)
    assert "measured at step 1,200 (now 1,300)" in text and "192 held-out lines" in text
    assert text.index("k > T = 25") > text.index(" 20     64")
    assert "ln 4 = 1.39: not recalled" in text and "bar 0 … 2.77 nats" in text
    row5, row40 = (next(line for line in text.splitlines() if line.lstrip("[dim]").lstrip().startswith(f"{k} "))
                   for k in (5, 40))
    assert "$success" in row5, "a copy loss below a tenth of ln 4 is drawn as recalled"
    assert row40.startswith("[dim]") and "beyond T" in row40
    # the bar spans 0 … 2·ln 4: chance in the middle, a loss above the scale cut off with ›
    assert loss_bar(0.0, 1.386, 2.772) == " " * 10 + "┊" + " " * 9
    assert loss_bar(1.386, 1.386, 2.772) == "█" * 10 + "┊" + " " * 9  # a guess: the bar ends at the mark
    assert loss_bar(3.5, 1.386, 2.772) == "█" * 19 + "›"
