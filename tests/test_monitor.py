"""Monitor: gradient norms before/after clipping, clip fractions, update ratios, σmax, saturation,
the all-losses ‖∂E/∂h_t‖; History decimation."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from rnntui import gradcheck
from rnntui.model import PARAM_NAMES, CharRNN
from rnntui.monitor import History, Monitor, health
from rnntui.optim import clip_grads, make_optimizer


def _norm(a):
    return float(np.sqrt(np.sum(np.asarray(a, np.float64) ** 2)))


def _step(mode, clip, *, grad_scale=50.0, seed=0):
    """One monitored step done by hand, as the trainer does it. Returns everything needed to check it."""
    model, x, y, h0 = gradcheck.random_problem(vocab_size=7, hidden_size=6, batch_size=3, seq_length=5, seed=seed)
    _, grads, _, diag = model.loss_and_grads(x, y, h0)
    for g in grads.values():
        g *= grad_scale
    raw = {k: g.copy() for k, g in grads.items()}
    mon = Monitor(model.H)
    pre = mon.pre_clip(grads, mode, clip)
    scale = clip_grads(grads, mode, clip)
    before = {k: p.copy() for k, p in model.params.items()}
    deltas = make_optimizer("sgd", model.params, 0.01).step(model.params, grads)
    stats = mon.measure(1, pre, grads, deltas, model.params, diag, mode, clip, scale)
    return stats, raw, grads, before, model, diag, (x, y, h0)


def _check_common(stats, raw, clipped, before, params):
    for k in PARAM_NAMES:
        ps = stats.param(k)
        assert ps.norm_pre == pytest.approx(_norm(raw[k]), rel=1e-12)
        assert ps.norm_post == pytest.approx(_norm(clipped[k]), rel=1e-12)
        assert ps.max_abs == pytest.approx(np.abs(raw[k]).max(), rel=1e-15)
        assert ps.update_ratio == pytest.approx(_norm(params[k] - before[k]) / _norm(params[k]), rel=1e-9)
    assert stats.total.norm_pre == pytest.approx(np.sqrt(sum(_norm(g) ** 2 for g in raw.values())), rel=1e-12)
    assert stats.total.norm_post == pytest.approx(np.sqrt(sum(_norm(g) ** 2 for g in clipped.values())), rel=1e-12)
    assert stats.total.max_abs == pytest.approx(max(np.abs(g).max() for g in raw.values()))
    d2 = sum(_norm(params[k] - before[k]) ** 2 for k in PARAM_NAMES)
    p2 = sum(_norm(params[k]) ** 2 for k in PARAM_NAMES)
    assert stats.total.update_ratio == pytest.approx(np.sqrt(d2 / p2), rel=1e-9)


def test_element_mode():
    # a threshold in the middle of the |g| distribution, so some entries are clipped and some are not
    stats0, raw0, *_ = _step("none", 1.0)
    c = float(np.median(np.concatenate([np.abs(g).ravel() for g in raw0.values()])))
    stats, raw, clipped, before, model, *_ = _step("element", c)
    _check_common(stats, raw, clipped, before, model.params)
    n_clipped = n_all = 0
    for k in PARAM_NAMES:
        frac = np.mean(np.abs(raw[k]) > c)
        assert stats.param(k).clip_frac == pytest.approx(frac)
        n_clipped += np.count_nonzero(np.abs(raw[k]) > c)
        n_all += raw[k].size
    assert 0 < n_clipped < n_all
    assert stats.total.clip_frac == pytest.approx(n_clipped / n_all)
    assert stats.clip_mode == "element" and stats.clip == c


def test_global_mode_clipped():
    stats0, raw0, *_ = _step("none", 1.0)
    c = stats0.total.norm_pre / 4
    stats, raw, clipped, before, model, *_ = _step("global", c)
    _check_common(stats, raw, clipped, before, model.params)
    assert stats.total.norm_post == pytest.approx(c, rel=1e-12)
    for k in PARAM_NAMES:
        assert stats.param(k).norm_post == pytest.approx(stats.param(k).norm_pre / 4, rel=1e-12)
        assert stats.param(k).clip_frac == 1.0  # every element was rescaled
    assert stats.total.clip_frac == 1.0


def test_global_mode_not_clipped_and_none_mode():
    for mode in ("global", "none"):
        stats, raw, clipped, before, model, *_ = _step(mode, 1e9)
        _check_common(stats, raw, clipped, before, model.params)
        assert stats.total.norm_post == pytest.approx(stats.total.norm_pre, rel=1e-15)
        assert stats.total.clip_frac == 0.0
    stats, raw, clipped, before, model, *_ = _step("none", 1e-3)  # a tiny threshold means nothing in "none"
    assert stats.total.norm_post == stats.total.norm_pre and stats.total.clip_frac == 0.0


def test_all_losses_dh_norms_match_the_reference(reference):
    stats, _, _, _, model, diag, (x, y, h0) = _step("none", 1.0, grad_scale=1.0)
    # the model's parameters moved by one update; the diagnostics belong to the pass before it
    model2, *_ = gradcheck.random_problem(vocab_size=7, hidden_size=6, batch_size=3, seq_length=5, seed=0)
    *_, dh_norms, carry = reference(model2.params, x, y, h0)
    np.testing.assert_allclose(stats.dh_norms, dh_norms, rtol=1e-9)
    assert len(stats.dh_norms) == 5


def test_saturation_fraction():
    """u = w = 0: h = tanh(b_h) at every step; units at b_h = ±3 (|h| = 0.995 > 0.99) are saturated, at
    b_h = 2.6 (|h| = 0.989) and 0.5 not."""
    model = CharRNN(4, 4, dtype=np.float64)
    model.params.flat[...] = 0
    model.params["bh"][:, 0] = [3.0, -3.0, 2.6, 0.5]
    x = np.zeros((2, 5), int)
    _, grads, _, diag = model.loss_and_grads(x, x)
    mon = Monitor(model.H)
    pre = mon.pre_clip(grads, "none", 1.0)
    stats = mon.measure(1, pre, grads, grads.like(0.0), model.params, diag, "none", 1.0, 1.0)
    assert stats.saturation == pytest.approx(2 / 4)
    assert stats.total.update_ratio == 0.0


def test_pre_clip_finds_non_finite_tensor():
    _, _, grads, *_ = _step("none", 1.0)
    grads["v"][1, 1] = np.nan
    grads["by"][0, 0] = np.inf
    pre = Monitor(6).pre_clip(grads, "global", 1.0)
    assert pre.nonfinite == "v"  # the first in the layout's order: u, w, bh, v, by
    assert np.isnan(pre.norms["v"]) and np.isfinite(pre.norms["u"])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sigma_max_converges_to_largest_singular_value(seed):
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((12, 12)) / 3
    s = np.linalg.svd(w, compute_uv=False)
    assert s[0] / s[1] > 1.02  # a gap, so 2000 iterations shrink the error by (s1/s0)^4000 ≈ e^-79
    mon = Monitor(12, seed=seed)
    assert mon.sigma_max(w, iters=2000) == pytest.approx(s[0], rel=1e-9)


def test_sigma_max_warm_start_and_lower_bound():
    rng = np.random.default_rng(4)
    q1, _ = np.linalg.qr(rng.standard_normal((8, 8)))
    q2, _ = np.linalg.qr(rng.standard_normal((8, 8)))
    sv = np.array([2.0, 1.5, 1.0, 0.8, 0.5, 0.3, 0.2, 0.1])
    w = (q1 * sv) @ q2.T
    mon = Monitor(8, power_iters=2)
    estimates = [mon.sigma_max(w) for _ in range(60)]  # 2 iterations per call, vector kept between calls
    assert all(e <= 2.0 * (1 + 1e-12) for e in estimates)  # ‖wᵀw x‖^½ never exceeds σmax for a unit x
    assert estimates[-1] == pytest.approx(2.0, rel=1e-9)
    assert Monitor(8).sigma_max(np.zeros((8, 8))) == 0.0


def test_health_words_follow_their_figures():
    # (each regime on constructed weights: tests/test_reach.py)
    stats, *_ = _step("none", 1.0, grad_scale=1.0)
    assert "SATURATED" in health(dataclasses.replace(stats, saturation=0.95), None)
    assert "SATURATED" not in health(dataclasses.replace(stats, saturation=0.85), None)
    # a large all-losses gradient norm is not, by itself, a gradient exploding through time
    assert health(dataclasses.replace(stats, saturation=0.0, total=dataclasses.replace(stats.total, norm_pre=1e4)),
                  None) == []


# -- History -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("capacity", "n"), [(8, 1000), (4, 7), (16, 16), (2, 33)])
def test_history_decimation(capacity, n):
    h = History(capacity)
    rng = np.random.default_rng(capacity)
    values = rng.standard_normal(n)
    for i, v in enumerate(values):
        h.append(i + 1, v)
        assert len(h) <= capacity
    steps, vals = h.arrays()
    stride = h.stride
    assert stride & (stride - 1) == 0  # a power of two
    assert len(vals) == len(h) >= capacity // 2 or n < capacity
    covered = len(vals) * stride
    assert n - stride < covered <= n  # only the not-yet-complete group is pending
    # every stored point is the mean of `stride` consecutive values (and of their steps)
    groups = values[:covered].reshape(-1, stride)
    np.testing.assert_allclose(vals, groups.mean(axis=1), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(steps, np.arange(1, covered + 1).reshape(-1, stride).mean(axis=1))
    # so the mean of what is kept is the mean of what it covers
    assert vals.mean() == pytest.approx(values[:covered].mean(), rel=1e-9, abs=1e-12)
    assert h.last() == pytest.approx(vals[-1])


def test_history_arrays_are_copies_and_state_roundtrip():
    h = History(8)
    for i in range(20):
        h.append(i, i * i)
    s, v = h.arrays()
    s[:] = -1
    v[:] = -1
    assert h.arrays()[1][0] != -1
    h2 = History(8)
    h2.load(h.state())
    np.testing.assert_array_equal(h2.arrays()[0], h.arrays()[0])
    np.testing.assert_array_equal(h2.arrays()[1], h.arrays()[1])
    assert h2.stride == h.stride
    with pytest.raises(ValueError):
        History(7)
    assert History(4).last() is None


def test_sigma_max_of_a_training_run_tracks_the_singular_value(make_trainer):
    """One warm-started power iteration per step keeps up with w as it trains."""
    trainer = make_trainer(hidden_size=24, batch_size=4, seq_length=10, dtype="float32", lr=5e-3,
                           optimizer="adam")
    for _ in range(300):
        trainer.train_step()
    exact = np.linalg.svd(trainer.model.params["w"].astype(np.float64), compute_uv=False)[0]
    assert trainer.grad_stats.sigma_max == pytest.approx(exact, rel=0.01)
    assert trainer.grad_stats.sigma_max <= exact * (1 + 1e-5)
