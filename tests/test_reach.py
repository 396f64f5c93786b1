"""Gradient reach (one loss followed back through time) and the status words that follow from it.

Every regime is built from weights whose answer is known: w = c·(orthogonal) with small
pre-activations sends the gradient back by a factor c per step, exactly; large input weights
saturate tanh and cut it off.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from rnntui.cells import RNN, Cache
from rnntui.derivation import gradient_from_last_step
from rnntui.model import CharRNN
from rnntui.monitor import REACH_LEVEL, SATURATED_SHARE, Reach, causes, health


def _orthogonal(H: int, seed: int = 0) -> np.ndarray:
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((H, H)))
    return q


def _reference_norms(params, inputs, targets, h0) -> np.ndarray:
    """‖∂E_T/∂h_{T−d}‖ over the batch for d = 0 … T, by the lecture's loop per sequence (float64)."""
    u, w, v, bh, by = (params[k] for k in ("u", "w", "v", "bh", "by"))
    B, T = inputs.shape
    sq = np.zeros(T + 1)
    for b in range(B):
        hs = [h0[:, b]]
        for t in range(T):
            hs.append(np.tanh(u[:, inputs[b, t]] + w @ hs[-1] + bh[:, 0]))
        q = v @ hs[T] + by[:, 0]
        p = np.exp(q - q.max())
        p /= p.sum()
        p[targets[b, T - 1]] -= 1
        dh = v.T @ p
        for d in range(T + 1):
            sq[d] += dh @ dh
            if d < T:
                dh = w.T @ ((1 - hs[T - d] ** 2) * dh)
    return np.sqrt(sq)


def _batch(V: int, B: int, T: int, seed: int = 1):
    rng = np.random.default_rng(seed)
    return rng.integers(0, V, (B, T)), rng.integers(0, V, (B, T))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_last_loss_back_matches_the_lecture_loop(dtype):
    m = CharRNN(11, 16, seed=3, dtype=dtype)
    x, y = _batch(11, 5, 9)
    h0 = np.random.default_rng(2).uniform(-0.5, 0.5, (16, 5)).astype(dtype)
    ref = _reference_norms({k: p.astype(np.float64) for k, p in m.params.items()}, x, y, h0.astype(np.float64))
    logs = m.last_loss_back(x, y, h0)
    np.testing.assert_allclose(np.exp(logs), ref, rtol=1e-10 if dtype == "float64" else 2e-4)


def test_the_training_pass_gives_the_same_reach_as_a_fresh_pass_also_when_split():
    # the trainer's reach comes from the pass's own buffers; split into parts it must not change
    for threads in (1, 2):
        m = CharRNN(9, 8, seed=1, dtype="float64", threads=threads)
        x, y = _batch(9, 4, 6)
        h0 = np.zeros((8, 4))
        _, _, _, diag = m.loss_and_grads(x, y, h0)
        from_pass = diag.figures(np.array(m.params["v"])).logs[-1]["h"]
        assert len(m._buffers_for(4, 6).parts) == threads
        np.testing.assert_allclose(from_pass, m.astype(np.float64).last_loss_back(x, y, h0), rtol=1e-12)


def test_reach_agrees_with_the_derivation_screens_per_sequence_figures():
    m = CharRNN(7, 10, seed=5, dtype="float64")
    x, y = _batch(7, 3, 8)
    h0 = np.zeros((10, 3))
    from rnntui.derivation import Inspection

    ins = Inspection.from_arrays(0, m, x, y, h0)
    per_seq = np.array([gradient_from_last_step(ins, b) for b in range(3)])  # (B, T+1), index k = h_k
    batch = np.sqrt((per_seq**2).sum(axis=0))[::-1]  # lag d = T − k
    np.testing.assert_allclose(np.exp(m.last_loss_back(x, y, h0)), batch, rtol=1e-10)


def test_reach_survives_a_gradient_smaller_than_float32_can_hold():
    # a factor 0.01 per step over 40 steps is 1e-80 of the start: far below float32's smallest number
    H, T, V = 8, 40, 3
    cell = RNN()
    p = cell.zeros(V, H, np.float32)  # u = 0, b_h = 0, h0 = 0: h = 0, so 1 − h² = 1
    p["w"][...] = 0.01 * np.eye(H)
    c = Cache()
    cell.forward(p, np.zeros(T * 2, int), cell.zero_state(2, H, np.float32), c)
    dh_T = np.random.default_rng(0).standard_normal((2, H)).astype(np.float32)
    logs = cell.last_loss_back(p, c, dh_T)["h"]
    assert np.all(np.isfinite(logs))
    np.testing.assert_allclose(np.diff(logs), math.log(0.01), rtol=1e-5)
    reach = Reach.from_log_norms(0, logs)
    assert reach.factor == pytest.approx(0.01, rel=1e-4) and reach.lag == 1


def test_reach_from_log_norms():
    T = 10
    r = Reach.from_log_norms(4, np.log(0.5 ** np.arange(T + 1)))
    assert r.T == T and r.step == 4
    assert r.factor == pytest.approx(0.5)
    assert r.lag == 7  # 0.5**6 = 0.0156 ≥ 1 %, 0.5**7 = 0.0078 < 1 %
    assert r.to_h0 == pytest.approx(0.5**T)
    flat = Reach.from_log_norms(0, np.zeros(T + 1))
    assert flat.lag is None and flat.factor == pytest.approx(1.0)
    zero = Reach.from_log_norms(0, np.array([0.0, -1.0] + [-np.inf] * (T - 1)))
    assert zero.lag == 2 and zero.factor == 0.0
    none = Reach.from_log_norms(0, np.full(T + 1, -np.inf))
    assert none.lag is None and math.isnan(none.factor)
    assert REACH_LEVEL == 0.01


# -- the regimes, on constructed weights, through the trainer and the monitor's public API --------------

H, B, T = 32, 4, 20


def _trained_once(make_trainer, *, w_scale: float, u_scale: float, w=None):
    """One step of a trainer whose weights are set by hand (lr tiny: the update does not change them)."""
    t = make_trainer(hidden_size=H, batch_size=B, seq_length=T, lr=1e-12, optimizer="sgd", clip_mode="none")
    rng = np.random.default_rng(0)
    p = t.model.params
    p["w"][...] = w_scale * (_orthogonal(H) if w is None else w)
    p["u"][...] = u_scale * rng.choice([-1.0, 1.0], p["u"].shape)
    p["bh"][...] = 0
    p["v"][...] = rng.standard_normal(p["v"].shape) * 0.1
    stats = t.train_step()
    return t, stats, t.reach


def test_small_sigma_max_reads_vanishing(make_trainer):
    t, stats, reach = _trained_once(make_trainer, w_scale=0.1, u_scale=1e-3)
    assert stats.sigma_max == pytest.approx(0.1, rel=1e-2)
    assert reach.factor == pytest.approx(0.1, rel=0.02)  # h ≈ 0: each step back is ×σ exactly
    assert reach.lag == 2
    assert health(stats, reach) == ["VANISHING"]
    assert causes(stats, reach) == "σmax<1"


def test_orthogonal_times_c_with_small_preactivations_reads_exploding(make_trainer):
    t, stats, reach = _trained_once(make_trainer, w_scale=1.5, u_scale=1e-9)
    assert stats.saturation == 0
    assert reach.factor == pytest.approx(1.5, rel=0.01)
    assert reach.lag is None
    assert health(stats, reach) == ["EXPLODING"]
    assert causes(stats, reach) == "σmax>1"


def test_saturated_units_read_saturated_with_the_reach_vanishing(make_trainer):
    t, stats, reach = _trained_once(make_trainer, w_scale=1.0, u_scale=6.0)
    assert stats.saturation > SATURATED_SHARE
    assert reach.lag is not None and reach.lag <= 2
    assert health(stats, reach) == ["VANISHING", "SATURATED"]
    assert causes(stats, reach) == "saturated"


def test_a_healthy_state_reads_ok(make_trainer):
    t, stats, reach = _trained_once(make_trainer, w_scale=0.97, u_scale=1e-3)
    assert reach.lag is None  # 0.97**19 ≈ 0.56 of the start is left at the far end of the window
    assert 0.9 < reach.factor <= 1.0
    assert health(stats, reach) == []
    assert causes(stats, reach) == ""


def test_reach_at_the_edge_of_half_the_window():
    # the rule: VANISHING when the gradient is below 1 % before lag T/2
    T = 20
    factor_just_inside = 0.01 ** (1 / 9.5)  # 1 % reached between lag 9 and 10: lag 10 = T/2 → not vanishing
    r = Reach.from_log_norms(0, np.arange(T + 1) * math.log(factor_just_inside))
    assert r.lag == 10 and "VANISHING" not in health(None, r)
    r = Reach.from_log_norms(0, np.arange(T + 1) * math.log(0.01 ** (1 / 8.5)))
    assert r.lag == 9 and health(None, r) == ["VANISHING"]


def test_growth_below_tenfold_is_not_exploding():
    T = 10
    r = Reach.from_log_norms(0, np.arange(T + 1) * math.log(1.2))  # 1.2**9 = 5.2 at lag 9
    assert health(None, r) == []
    r = Reach.from_log_norms(0, np.arange(T + 1) * math.log(1.35))  # 1.35**9 = 14.9
    assert health(None, r) == ["EXPLODING"]


def test_trainer_measures_reach_every_few_steps_and_the_inspection_agrees(make_trainer):
    t = make_trainer(hidden_size=10, batch_size=3, seq_length=8, lr=0.05)
    t.train_step()
    assert t.reach is not None and t.reach.step == 1
    for _ in range(t.reach_every - 1):
        t.train_step()
        assert t.reach.step in (1, t.reach_every)
    assert t.reach.step == t.reach_every
    periodic = t.reach
    # the inspection (derivation screen) uses the weights and batch the step's pass ran on: the same figure
    ins = t.inspection()
    assert ins.reach.step == t.step and t.reach is ins.reach
    np.testing.assert_allclose(ins.reach.ratios, periodic.ratios, rtol=1e-9)
    assert ins.sigma_max == pytest.approx(np.linalg.norm(ins.model.params["w"], 2))


def test_after_a_divergence_the_panels_show_the_kept_parameters(make_trainer):
    t = make_trainer(hidden_size=12, batch_size=3, seq_length=8, lr=1000, optimizer="sgd", clip_mode="none",
                     dtype="float32")
    for _ in range(50):
        if t.train_step() is None:
            break
    assert t.state == "diverged"
    kept_w = np.array(t.model.params["w"])
    assert np.isfinite(kept_w).all()
    snap = t.snapshot()
    # σmax and saturation are those of the kept weights (exact), not of the update that was undone
    assert snap.grad_stats.sigma_max == pytest.approx(np.linalg.norm(kept_w, 2), rel=1e-9)
    inputs, targets, h0, masks = t._last_batch
    hs = t.model.astype(np.float64).states(inputs, h0)[1:]
    assert snap.grad_stats.saturation == pytest.approx(np.mean(np.abs(hs) > 0.99))
    assert snap.reach is not None
    np.testing.assert_allclose(snap.reach.ratios,
                               Reach.from_log_norms(0, t.model.astype(np.float64).last_loss_back(inputs, targets, h0))
                               .ratios)
    assert snap.discarded and "discarded" in snap.discarded and "kept" in snap.discarded
    # the next healthy step clears it
    t.set_hyper(lr=1e-3)
    t.state = "running"
    assert t.train_step() is not None and t.snapshot().discarded is None


def test_an_lstm_whose_cell_state_keeps_the_gradient_is_not_vanishing():
    """h's reach alone would say VANISHING; c's reach beyond T keeps the gradient for the early steps' gates."""
    from rnntui.monitor import Reach, health

    T = 50
    short = Reach.from_log_norms(0, np.log(0.5) * np.arange(T + 1))  # ×0.5 per step: below 1 % at lag 7
    kept = Reach.from_log_norms(0, np.log(0.99) * np.arange(T + 1))  # ×0.99 per step: beyond T
    also_short = Reach.from_log_norms(0, np.log(0.6) * np.arange(T + 1))
    growing = Reach.from_log_norms(0, np.log(1.2) * np.arange(T + 1))
    assert short.lag == 7 and kept.lag is None and also_short.lag == 10
    assert health(None, short) == ["VANISHING"]  # the rnn, or the lstm's h read alone
    assert health(None, short, kept) == []  # the lstm: c carries it
    assert health(None, short, also_short) == ["VANISHING"]  # both fade
    assert health(None, kept, growing) == ["EXPLODING"]  # c's gradient growing 1.2× per step back
