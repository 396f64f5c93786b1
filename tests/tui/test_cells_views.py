"""The cells on the main screen and the derivation screen: the gate panel, the layer key, the gradient table with
many tensors, σmax per block, the help, and each cell's derivation — on snapshots whose figures are known."""

from __future__ import annotations

import dataclasses
import math
from concurrent.futures import Future

import numpy as np
import pytest

from rnntui.cells import Saturation
from rnntui.derivation import CHECKS
from rnntui.monitor import LayerReach, Reach
from rnntui.runs.client import RunClient
from rnntui.runs.protocol import RunInfo
from rnntui.tui.app import RnnTuiApp
from rnntui.tui.screens.derivation import DerivationScreen
from rnntui.tui.screens.help import help_text
from rnntui.tui.widgets.gates import GatePanel, share_bar
from rnntui.tui.widgets.gradients import GradientPanel
from rnntui.tui.widgets.text import num
from rnntui.tui.widgets.timeflow import TimeFlow

from .conftest import TEXT, app_of, make_trainer, wait_for
from .test_layout import panel_rows, screen_lines

SIZES = [(80, 24), (60, 20), (160, 48)]


class Still(RunClient):
    """A run that stands still at one snapshot (and answers inspections from its trainer)."""

    def __init__(self, trainer, snap):
        self.trainer, self.snap = trainer, snap
        self._info = RunInfo.of(trainer, name="still")

    @property
    def info(self) -> RunInfo:
        return self._info

    def latest(self):
        return self.snap

    def send(self, command) -> bool:
        return True

    def inspect(self) -> Future:
        future: Future = Future()
        future.set_result(self.trainer.inspection())
        return future


def cell_trainer(cell: str, layers: int = 1, dropout: float = 0.0):
    """The app tests' small trainer (16 units, T = 10, B = 4, float32) with ``cell`` and ``layers``."""
    from rnntui.config import HyperParams, TrainConfig
    from rnntui.corpus import Corpus
    from rnntui.trainer import Trainer

    config = TrainConfig(hidden_size=16, seq_length=10, batch_size=4, dtype="float32", seed=3, cell=cell,
                         layers=layers, dropout=dropout, hyper=HyperParams(sample_every=0, val_every=0))
    return Trainer(Corpus.from_text(TEXT, val_fraction=0.1, path="tiny.txt"), config, publish_interval=0.1)


def _reach(step: int, T: int, factor: float) -> Reach:
    return Reach.from_log_norms(step, np.arange(T + 1) * math.log(factor))


#: Known figures of a 2-layer lstm: layer 1 (bottom) and layer 2 (top)
GATES = {
    0: {"i": (0.52, 0.12, 0.30), "f": (0.31, 0.40, 0.05), "g": (0.01, 0.20, 0.21), "o": (0.61, 0.05, 0.20),
        "tanh(c)": (-0.02, 0.01, 0.02)},
    1: {"i": (0.40, 0.10, 0.10), "f": (0.95, 0.02, 0.80), "g": (-0.03, 0.30, 0.28), "o": (0.70, 0.01, 0.40),
        "tanh(c)": (0.05, 0.03, 0.04)},
}
REACH = {0: (0.09, 0.999), 1: (0.5, 0.9)}  # ×/step of h and c
SIGMAS = {0: {"i": 0.5, "f": 1.23, "g": 0.7, "o": 0.9}, 1: {"i": 2.5, "f": 0.4, "g": 0.3, "o": 0.2}}


def known(snap):
    """``snap`` (a 2-layer lstm's) with the known gates, reaches and σmax of GATES, REACH, SIGMAS."""
    T, step = snap.config.seq_length, snap.step
    kinds = {"g": "tanh", "tanh(c)": "tanh"}
    gates = tuple(tuple(Saturation(n, kinds.get(n, "sigmoid"), *GATES[k][n]) for n in GATES[k]) for k in (0, 1))
    reaches = tuple(LayerReach(k, _reach(step, T, REACH[k][0]), _reach(step, T, REACH[k][1])) for k in (0, 1))
    sigmas = {f"w_hh_l{k}[{g}]": s for k in (0, 1) for g, s in SIGMAS[k].items()}
    return dataclasses.replace(snap, gates=gates, reaches=reaches, reach=reaches[1].h, sigmas=sigmas)


@pytest.fixture(scope="module")
def lstm2():
    trainer = cell_trainer("lstm", 2, 0.2)
    for _ in range(3):
        trainer.train_step()
    return trainer, known(trainer.snapshot())


async def _shown(app, pilot):
    await wait_for(pilot, lambda: app.snapshot is not None, what="the snapshot")
    app.tick(force=True)
    await pilot.pause()


def _text(widget) -> str:
    return str(widget.render())


async def test_gate_panel_shows_the_layers_gates_forget_first(lstm2):
    trainer, snap = lstm2
    app = RnnTuiApp(Still(trainer, snap))
    async with app.run_test(size=(80, 24)) as pilot:
        await _shown(app, pilot)
        panel = app.query_one(GatePanel)
        assert panel.display
        assert "layer 2 of 2" in str(panel.border_title)
        rows = _text(panel).splitlines()
        assert rows[0].split() == ["mean", "left", "right"]
        assert rows[1].split()[:4] == ["f", "0.950", "2%", "80%"]  # the forget gate first, with its numbers
        assert [r.split()[0] for r in rows[1:]] == ["f", "i", "g", "o", "tanh(c)"]
        assert rows[3].split()[1] == "-0.030"  # a tanh's mean keeps its sign


async def test_the_layer_key_moves_every_panel_to_the_next_layer(lstm2):
    trainer, snap = lstm2
    app = RnnTuiApp(Still(trainer, snap))
    async with app.run_test(size=(80, 24)) as pilot:
        await _shown(app, pilot)
        gates, reach, grads = app.query_one(GatePanel), app.query_one(TimeFlow), app.query_one(GradientPanel)
        assert "h 7/10" in _text(reach) and "c >T" in _text(reach)  # layer 2: ×0.5 and ×0.9 per step back
        await pilot.press("n")
        await pilot.pause()
        for panel in (gates, reach, grads):
            assert "1 of 2" in str(panel.border_title) or "L1/2" in str(panel.border_title), panel
        assert "h 2/10" in _text(reach) and "×0.09" in _text(reach) and "c >T" in _text(reach)
        assert "VANISHING" not in _text(reach) and "OK" in _text(reach)  # h's reach is short, but c keeps it
        assert _text(gates).splitlines()[1].split()[:4] == ["f", "0.310", "40%", "5%"]
        assert "σmax w_hh[f] 1.23" in _text(reach)  # the largest of layer 1's blocks, by name
        w_ih = next(r for r in _text(grads).splitlines() if r.startswith("w_ih"))
        assert w_ih.split()[1] == num(snap.grad_stats.param("w_ih_l0").norm_pre).strip()
        assert "layer 1 of 2" in str(app.message_line.render())
        await pilot.press("n")
        await pilot.pause()
        assert "layer 2 of 2" in str(gates.border_title) and "σmax w_hh[i] 2.5" in _text(reach)


async def test_the_layer_key_on_one_layer_says_so():
    app = app_of(make_trainer(), start_paused=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await _shown(app, pilot)
        assert not app.query_one(GatePanel).display  # the rnn has no gates
        await pilot.press("n")
        await pilot.pause()
        assert "one layer" in str(app.message_line.render())
        assert "layer" not in str(app.query_one(TimeFlow).border_title)


@pytest.mark.parametrize("size", SIZES, ids=[f"{w}x{h}" for w, h in SIZES])
async def test_the_cells_panels_fit(lstm2, size):
    trainer, snap = lstm2
    app = RnnTuiApp(Still(trainer, snap))
    async with app.run_test(size=size) as pilot:
        await _shown(app, pilot)
        lines = screen_lines(app)
        for panel in (app.query_one(GatePanel), app.query_one(TimeFlow), app.query_one(GradientPanel)):
            r = panel.region
            assert r.height > 2 and r.y + r.height <= len(lines) - 3, panel  # on the screen, above the bottom rows
            text = _text(panel).splitlines()
            assert all(len(line) <= panel.content_size.width for line in text), (panel, text)
        gates = panel_rows(app, app.query_one(GatePanel))
        names = [row.strip("│ ").split()[0] for row in gates[2:-1]]  # below the border and the column heads
        assert names[:5] == ["f", "i", "g", "o", "tanh(c)"]
        assert len(names) == 5 + (size == (160, 48))  # tall panels add the forget gate's mean in every layer
        table = [row.strip("│ ") for row in panel_rows(app, app.query_one(GradientPanel))]
        labels = [row.split()[0] for row in table if row.split()]
        for name in ("w_ih", "w_hh", "b_ih", "b_hh", "v", "by", "all"):
            assert name in labels, (name, table)  # the layer's four tensors, the output layer and the total
        if size == (160, 48):
            head = next(row for row in table if "‖g‖pre" in row)
            assert all(f"‖g‖{g}" in head for g in "ifgo")  # per gate block norms where they fit
            w_hh = next(row for row in table if row.startswith("w_hh "))
            assert num(snap.grad_stats.blocks["w_hh_l1[f]"]).strip() in w_hh.split()
            gate_text = _text(app.query_one(GatePanel))
            assert "forget" in gate_text and "σmax" in gate_text and "█" in gate_text


def test_share_bar():
    assert share_bar(0.2, 0.5, 10) == "░░▒▒▒█████"
    assert share_bar(0.01, 0.0, 10) == "░▒▒▒▒▒▒▒▒▒"  # a share above 0 shows
    assert share_bar(0.0, 1.0, 4) == "████"


def test_help_names_the_runs_cell_and_layers():
    from rnntui.config import TrainConfig

    lstm = help_text(65, (), TrainConfig(cell="lstm", layers=2, dropout=0.2))
    assert "this run: lstm, 2 layers, dropout 0.2 between layers" in lstm
    assert "*f*, the forget gate" in lstm and "lstm-21" in lstm and "1 → 2 → … → 2 → 1" in lstm
    assert "w_ih input→gates" in lstm and "*z*, the update gate" not in lstm
    gru = help_text(65, (), TrainConfig(cell="gru"))
    assert "*z*, the update gate, plays the forget gate's part" in gru and "this run: gru, 1 layer" in gru
    assert "With `--layers N`" in gru
    rnn = help_text(65, (), TrainConfig())
    assert "has no gates" in rnn and "u input→hidden" in rnn


EXPECTED_LINES = {
    "lstm": {
        "lstm-1": "i = sigmoid(np.dot(W_ii, x) + b_ii + np.dot(W_hi, h_prev) + b_hi)",
        "lstm-2": "f = sigmoid(np.dot(W_if, x) + b_if + np.dot(W_hf, h_prev) + b_hf)",
        "lstm-3": "g = np.tanh(np.dot(W_ig, x) + b_ig + np.dot(W_hg, h_prev) + b_hg)",
        "lstm-4": "o = sigmoid(np.dot(W_io, x) + b_io + np.dot(W_ho, h_prev) + b_ho)",
        "lstm-5": "c = f * c_prev + i * g", "lstm-6": "h = o * tanh_c", "lstm-7": "dh = dhs[t] + dh_next",
        "lstm-8": "do = dh * tanh_c", "lstm-9": "dc = dh * o * (1 - tanh_c * tanh_c) + dc_next",
        "lstm-10": "di = dc * g", "lstm-11": "df = dc * c_prev", "lstm-12": "dg = dc * i",
        "lstm-13": "da_i = di * i * (1 - i)", "lstm-14": "da_f = df * f * (1 - f)",
        "lstm-15": "da_g = dg * (1 - g * g)", "lstm-16": "da_o = do * o * (1 - o)",
        "lstm-17": "dw_ih += np.dot(da, x.T)", "lstm-18": "dw_hh += np.dot(da, h_prev.T)",
        "lstm-19": "db += da.sum(axis=1)", "lstm-20": "dh_next = np.dot(w_hh.T, da)", "lstm-21": "dc_next = dc * f",
        "lstm-22": "dxs[t] = np.dot(w_ih.T, da)",
    },
    "gru": {
        "gru-1": "r = sigmoid(np.dot(W_ir, x) + b_ir + np.dot(W_hr, h_prev) + b_hr)",
        "gru-2": "z = sigmoid(np.dot(W_iz, x) + b_iz + np.dot(W_hz, h_prev) + b_hz)",
        "gru-3": "hn = np.dot(W_hn, h_prev) + b_hn", "gru-4": "n = np.tanh(np.dot(W_in, x) + b_in + r * hn)",
        "gru-5": "h = (1 - z) * n + z * h_prev", "gru-6": "dh = dhs[t] + dh_next", "gru-7": "dn = dh * (1 - z)",
        "gru-8": "dz = dh * (h_prev - n)", "gru-9": "da_n = dn * (1 - n * n)", "gru-10": "dhn = da_n * r",
        "gru-11": "dr = da_n * hn", "gru-12": "da_r = dr * r * (1 - r)", "gru-13": "da_z = dz * z * (1 - z)",
        "gru-14": "dw_ih += np.dot(da_i, x.T)", "gru-15": "dw_hh += np.dot(da_h, h_prev.T)",
        "gru-16": "db_ih += da_i.sum(axis=1)", "gru-17": "db_hh += da_h.sum(axis=1)",
        "gru-18": "dh_next = np.dot(w_hh.T, da_h) + dh * z", "gru-19": "dxs[t] = np.dot(w_ih.T, da_i)",
    },
    "rnn": {
        "eq-8": "h = np.tanh(np.dot(u, x) + np.dot(w, h_prev) + col(bh))", "dh": "dh = dhs[t] + dhnext",
        "eq-7": "dhraw = (1 - h * h) * dh", "b_h": "dbh += dhraw.sum(axis=1)", "eq-9": "du += np.dot(dhraw, x.T)",
        "eq-11": "dw += np.dot(dhraw, h_prev.T)", "eq-13": "dhnext = np.dot(w.T, dhraw)",
        "dx": "dxs[t] = np.dot(u.T, dhraw)",
    },
}


@pytest.mark.parametrize(("cell", "layers"), [("lstm", 2), ("gru", 1), ("rnn", 2)])
async def test_derivation_per_cell_every_equation_beside_its_line_and_verified(cell, layers):
    import inspect

    from rnntui.cells import make_cell

    trainer = cell_trainer(cell, layers, 0.3 if layers > 1 else 0.0)
    for _ in range(4):
        trainer.train_step()
    app = app_of(trainer, start_paused=True)
    module = inspect.getsourcefile(type(make_cell(cell)))
    source = open(module).read().splitlines()
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.snapshot is not None, what="a snapshot")
        await pilot.press("d")
        await wait_for(pilot, lambda: isinstance(app.screen, DerivationScreen) and app.screen.ins is not None,
                       what="the frozen weights")
        screen = app.screen
        head = _text(screen.query_one("#deriv-head"))
        assert f"· {cell}" in head and ("layer 2 of 2" in head if layers > 1 else "layer" not in head.split("·")[1])
        eqs = _text(screen.query_one("#deriv-eqs"))
        for eq, code in EXPECTED_LINES[cell].items():
            line = next(i for i, text in enumerate(source, 1) if text.strip().startswith(code))
            assert f"{module.rsplit('/', 1)[-1]}:{line} {code}" in eqs, eq  # beside the very line that computes it
            assert f"{eq}  " in eqs
        await pilot.press("v")
        verify = screen.query_one("#deriv-verify")
        await wait_for(pilot, lambda: "relative error below" in _text(verify), timeout=60, what="the check")
        text = _text(verify)
        assert "every equation passes" in text and "FAIL" not in text
        # one row for the forward lines, one per backward equation (two for lstm-19: b_ih and b_hh)
        assert text.count("PASS") == 1 + sum(len(checks) for checks in CHECKS[cell].values())
        if layers > 1:
            await pilot.press("n")
            await pilot.pause()
            assert "layer 1 of 2" in _text(screen.query_one("#deriv-head"))
            assert "the one-hot of" in _text(screen.query_one("#deriv-eqs"))
        await pilot.press("left")
        assert "t=9/10" in _text(screen.query_one("#deriv-head"))



@pytest.mark.parametrize("theme", ["textual-dark", "textual-light"])
async def test_the_forget_gate_row_is_readable_in_each_theme(lstm2, theme):
    from textual.color import Color

    from .test_panels import _contrast

    trainer, snap = lstm2
    app = RnnTuiApp(Still(trainer, snap))
    async with app.run_test(size=(80, 24)) as pilot:
        app.theme = theme
        await _shown(app, pilot)
        await pilot.pause(0.2)
        panel = app.query_one(GatePanel)
        y = panel.content_region.y + 1  # the first gate's row, below the column heads
        style = app.screen.get_style_at(panel.content_region.x, y)
        assert style.bold  # the forget gate stands out without colour too
        assert _contrast(Color.from_rich_color(style.color), Color.from_rich_color(style.bgcolor)) >= 3.0
