"""The derivation screen: opens from the main screen, shows live numbers, verifies every equation."""

from __future__ import annotations

import numpy as np

from rnntui.derivation import SOURCE_MARKERS, gradient_from_last_step, source_lines, step_terms
from rnntui.model import CharRNN
from rnntui.tui.screens.derivation import DerivationScreen

from .conftest import app_of, make_trainer, wait_for

SIZE = (80, 24)


def text_of(screen, selector) -> str:
    return str(screen.query_one(selector).render())


async def open_screen(pilot, app):
    await wait_for(pilot, lambda: app.snapshot is not None, what="trainer")
    await pilot.press("d")
    await wait_for(pilot, lambda: isinstance(app.screen, DerivationScreen), what="screen")
    await wait_for(pilot, lambda: app.screen.ins is not None, what="weights")
    return app.screen


async def test_opens_shows_live_numbers_and_every_equation_passes():
    trainer = make_trainer()
    for _ in range(15):
        trainer.train_step()
    app = app_of(trainer, start_paused=True)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_screen(pilot, app)
        assert screen.ins.step == 15
        eqs = text_of(screen, "#deriv-eqs")
        for eq in ("eq-1", "eq-3", "eq-4/5", "eq-6", "eq-7", "eq-8/9", "eq-10/11", "eq-12/13"):
            assert eq in eqs
        assert "lecture.py:" in eqs and "dv += np.dot(dy, hs[t].T)" in eqs
        await pilot.press("v")
        await wait_for(pilot, lambda: "every equation passes" in text_of(screen, "#deriv-verify")
                       or "FAIL" in text_of(screen, "#deriv-verify"), what="verify")
        verify = text_of(screen, "#deriv-verify")
        assert "every equation passes" in verify and "FAIL" not in verify
        assert verify.count("PASS") == 8
        # step and sequence navigation change the numbers shown
        head = text_of(screen, "#deriv-head")
        await pilot.press("left")
        assert text_of(screen, "#deriv-head") != head and "t=9/10" in text_of(screen, "#deriv-head")
        await pilot.press("b")
        assert "b=2/4" in text_of(screen, "#deriv-head")
        assert "gradient through time" in text_of(screen, "#deriv-time")
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, DerivationScreen)
        assert trainer.step == 15, "looking must not train or disturb the trainer"


async def test_a_wrong_gradient_shows_up_as_failing_rows(monkeypatch):
    original = CharRNN.loss_and_grads

    def wrong(self, *args, **kwargs):
        loss, grads, h, diag = original(self, *args, **kwargs)
        grads["w"] = grads["w"] * 1.01  # a 1 % error in eq-11
        return loss, grads, h, diag

    monkeypatch.setattr(CharRNN, "loss_and_grads", wrong)
    app = app_of(make_trainer(), start_paused=True)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_screen(pilot, app)
        await pilot.press("v")
        await wait_for(pilot, lambda: "FAIL" in text_of(screen, "#deriv-verify")
                       or "passes" in text_of(screen, "#deriv-verify"), what="verify")
        verify = text_of(screen, "#deriv-verify")
        failing = [line for line in verify.splitlines() if "FAIL" in line and "of" not in line]
        assert len(failing) == 1 and "eq-11" in failing[0] and " w " in failing[0]


def test_every_equation_points_at_the_line_of_the_lecture_loop_that_computes_it():
    import inspect

    from rnntui import lecture

    found = source_lines()
    assert set(found) == set(SOURCE_MARKERS)
    expected = {
        "eq-1": "return np.diag(s) - np.outer(s, s)",
        "eq-3": "dy[targets[:, t], np.arange(B)] -= 1",
        "eq-5": "dv += np.dot(dy, hs[t].T)",
        "eq-6": "dh = np.dot(v.T, dy) + dhnext",
        "eq-7": "dhraw = (1 - hs[t] * hs[t]) * dh",
        "eq-8": "hs[t] = np.tanh(np.dot(u, xs[t]) + np.dot(w, hs[t - 1]) + bh)",
        "eq-9": "du += np.dot(dhraw, xs[t].T)",
        "eq-10": "dw += np.dot(dhraw, hs[t - 1].T)",
        "eq-11": "dw += np.dot(dhraw, hs[t - 1].T)",
        "eq-12": "dhnext = np.dot(w.T, dhraw)",
        "eq-13": "dhnext = np.dot(w.T, dhraw)",
    }
    lines, start = inspect.getsourcelines(lecture)
    for eq, code in expected.items():
        line, shown = found[eq]
        assert shown == code, eq
        assert lines[line - 1].strip().startswith(code), eq  # the number is that line's, in lecture.py


def test_gradient_from_last_step_matches_a_masked_loss():
    """‖∂E_T/∂h_0‖ equals the h0-gradient of a loss made of the last step only."""
    trainer = make_trainer()
    for _ in range(5):
        trainer.train_step()
    ins = trainer.inspection()
    norms = gradient_from_last_step(ins, b=1)
    m, x, y, h0 = ins.model, ins.inputs[1:2], ins.targets[1:2], ins.h0[:, 1:2]
    T = x.shape[1]
    # loss of the last step alone, as a function of h0: run the first T−1 steps without loss
    eps = 1e-6
    num = np.zeros(m.H)
    for i in range(m.H):
        for sign in (1, -1):
            h = h0.copy()
            h[i, 0] += sign * eps
            _, h_before_last = m.loss(x[:, :T - 1], y[:, :T - 1], h)
            loss_T, _ = m.loss(x[:, T - 1:], y[:, T - 1:], h_before_last)
            num[i] += sign * loss_T / (2 * eps)
    assert abs(np.linalg.norm(num) - norms[0]) < 1e-6 * max(1.0, norms[0])
    terms = step_terms(ins, T - 1, 1)
    assert np.isclose(np.linalg.norm(terms.dh), norms[T])
