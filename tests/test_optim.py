"""Clipping modes and update rules against values computed by hand; switching rule mid-run."""

from __future__ import annotations

import numpy as np
import pytest

from rnntui import Set
from rnntui.corpus import BatchStream
from rnntui.optim import clip_grads, make_optimizer


def _grads(scale=1.0, seed=0):
    rng = np.random.default_rng(seed)
    shapes = {"u": (4, 6), "w": (4, 4), "v": (6, 4), "bh": (4, 1), "by": (6, 1)}
    return {k: rng.standard_normal(s) * scale for k, s in shapes.items()}


def _copy(d):
    return {k: v.copy() for k, v in d.items()}


# -- clipping ---------------------------------------------------------------------------------------


def test_clip_element():
    g = _grads(scale=4.0)
    before = _copy(g)
    assert any((np.abs(a) > 3).any() for a in before.values())
    assert clip_grads(g, "element", 3.0) == 1.0
    for k in g:
        expected = np.where(before[k] > 3, 3.0, np.where(before[k] < -3, -3.0, before[k]))
        np.testing.assert_array_equal(g[k], expected)


def test_clip_global_rescales_when_above():
    g = _grads(scale=2.0)
    before = _copy(g)
    total = np.sqrt(sum((a**2).sum() for a in before.values()))
    c = total / 3
    scale = clip_grads(g, "global", c)
    assert scale == pytest.approx(c / total, rel=1e-12)
    for k in g:
        np.testing.assert_allclose(g[k], before[k] * c / total, rtol=1e-12)
    assert np.sqrt(sum((a**2).sum() for a in g.values())) == pytest.approx(c, rel=1e-12)


def test_clip_global_leaves_small_gradients_alone():
    g = _grads(scale=0.01)
    before = _copy(g)
    assert clip_grads(g, "global", 5.0) == 1.0
    for k in g:
        np.testing.assert_array_equal(g[k], before[k])


def test_clip_global_does_not_spread_nan():
    g = _grads()
    g["w"][0, 0] = np.nan
    assert clip_grads(g, "global", 1.0) == 1.0
    assert np.isfinite(g["u"]).all()


def test_clip_none_and_unknown():
    g = _grads(scale=100.0)
    before = _copy(g)
    assert clip_grads(g, "none", 0.1) == 1.0
    for k in g:
        np.testing.assert_array_equal(g[k], before[k])
    with pytest.raises(ValueError, match="unknown clip mode"):
        clip_grads(g, "norm", 1.0)


def test_clip_float32_keeps_dtype():
    g = {k: a.astype(np.float32) for k, a in _grads(scale=10).items()}
    clip_grads(g, "global", 1.0)
    clip_grads(g, "element", 0.01)
    assert all(a.dtype == np.float32 for a in g.values())


# -- update rules, two steps by hand -----------------------------------------------------------------


def _by_hand(name, p0, g1, g2, lr):
    """The update rules of the optim.py docstrings, written out for two steps."""
    p = p0.copy()
    if name == "sgd":
        for g in (g1, g2):
            p = p - lr * g
    elif name == "momentum":
        m = np.zeros_like(p)
        for g in (g1, g2):
            m = 0.9 * m + g
            p = p - lr * m
    elif name == "adagrad":  # the lecture: mem += g²; p −= lr·g/√(mem + 1e−8)
        mem = np.zeros_like(p)
        for g in (g1, g2):
            mem = mem + g * g
            p = p - lr * g / np.sqrt(mem + 1e-8)
    elif name == "rmsprop":
        s = np.zeros_like(p)
        for g in (g1, g2):
            s = 0.99 * s + 0.01 * g * g
            p = p - lr * g / (np.sqrt(s) + 1e-8)
    elif name == "adam":  # textbook form with explicit bias corrections
        m, s = np.zeros_like(p), np.zeros_like(p)
        for t, g in enumerate((g1, g2), start=1):
            m = 0.9 * m + 0.1 * g
            s = 0.999 * s + 0.001 * g * g
            m_hat, s_hat = m / (1 - 0.9**t), s / (1 - 0.999**t)
            p = p - lr * m_hat / (np.sqrt(s_hat) + 1e-8)
    return p


@pytest.mark.parametrize("name", ["adagrad", "sgd", "momentum", "rmsprop", "adam"])
def test_two_steps_match_hand_computation(name):
    params = _grads(seed=1)
    p0 = _copy(params)
    g1, g2 = _grads(seed=2), _grads(scale=0.5, seed=3)
    g2["w"][0, 0] = 0.0  # exercise a zero gradient (ε matters there)
    lr = 0.05
    opt = make_optimizer(name, params, lr)
    assert opt.name == name
    d1 = {k: a.copy() for k, a in opt.step(params, g1).items()}
    after1 = _copy(params)
    d2 = opt.step(params, g2)
    assert opt.t == 2
    for k in params:
        expected = _by_hand(name, p0[k], g1[k], g2[k], lr)
        np.testing.assert_allclose(params[k], expected, rtol=1e-10, atol=1e-14, err_msg=f"{name} {k}")
        np.testing.assert_allclose(d1[k], after1[k] - p0[k], rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(d2[k], params[k] - after1[k], rtol=1e-12, atol=1e-15)
    # the first step really differs between rules that share a formula shape
    assert not np.allclose(params["u"], p0["u"])


@pytest.mark.parametrize("scale", [0.1, 10.0])
def test_adam_first_step_is_lr_times_sign(scale):
    """With bias correction the first Adam step is lr·g/(|g| + ε) ≈ lr·sign(g) — independent of scale."""
    params = _grads(seed=4)
    p0 = _copy(params)
    g = _grads(scale=scale, seed=5)
    assert min(np.abs(a).min() for a in g.values()) > 1e-3 * scale  # so ε/|g| < 1e-4
    make_optimizer("adam", params, 0.01).step(params, g)
    for k in params:
        np.testing.assert_allclose(params[k] - p0[k], -0.01 * np.sign(g[k]), rtol=1e-4)


@pytest.mark.parametrize("name", ["adagrad", "sgd", "momentum", "rmsprop", "adam"])
def test_float32_parameters_stay_float32(name):
    params = {k: a.astype(np.float32) for k, a in _grads(seed=6).items()}
    opt = make_optimizer(name, params, 0.01)
    deltas = opt.step(params, {k: a.astype(np.float32) for k, a in _grads(seed=7).items()})
    assert all(p.dtype == np.float32 for p in params.values())
    assert all(d.dtype == np.float32 for d in deltas.values())
    assert all(a.dtype == np.float32 for slot in opt.state.values() for a in slot.values())


def test_state_dict_roundtrip_and_name_check():
    params = _grads(seed=8)
    a = make_optimizer("adam", params, 0.01)
    a.step(params, _grads(seed=9))
    b = make_optimizer("adam", _copy(params), 0.01)
    b.load_state_dict(a.state_dict())
    assert b.t == 1
    for slot in ("m", "s"):
        for k in params:
            np.testing.assert_array_equal(b.state[slot][k], a.state[slot][k])
    with pytest.raises(ValueError, match="adam"):
        make_optimizer("sgd", params, 0.1).load_state_dict(a.state_dict())
    with pytest.raises(ValueError, match="unknown optimizer"):
        make_optimizer("lbfgs", params, 0.1)


# -- switching rule mid-run ---------------------------------------------------------------------------


@pytest.mark.parametrize("via", ["set_hyper", "command"])
def test_switching_optimizer_starts_fresh(make_trainer, via):
    tr = make_trainer(optimizer="adam", lr=0.01, clip_mode="none")
    for _ in range(3):
        tr.train_step()
    old = tr.optimizer
    assert old.t == 3
    if via == "set_hyper":
        tr.set_hyper(optimizer="adagrad", lr=0.05)
    else:
        assert tr.apply(Set({"optimizer": "adagrad", "lr": 0.05}))
    assert tr.hyper.optimizer == "adagrad" and tr.hyper.lr == 0.05
    assert tr.optimizer is not old and tr.optimizer.name == "adagrad" and tr.optimizer.t == 0
    assert all(not a.any() for a in tr.optimizer.state["mem"].values())
    assert "fresh" in tr.message
    # the next step is a first Adagrad step on this batch's gradient: Δp = −lr·g/√(g² + 1e−8)
    peek = BatchStream(tr.corpus.train, 3, 8, position=tr.stream.position, epoch=tr.stream.epoch)
    x, y, wrapped = peek.next()
    assert not wrapped
    before = {k: p.copy() for k, p in tr.model.params.items()}
    _, g, _, _ = tr.model.loss_and_grads(x, y, tr.h)
    tr.train_step()
    for k, p in tr.model.params.items():
        np.testing.assert_allclose(p - before[k], -0.05 * g[k] / np.sqrt(g[k] ** 2 + 1e-8), rtol=1e-9, atol=1e-15)


def test_changing_lr_keeps_optimizer_state(make_trainer):
    tr = make_trainer(optimizer="rmsprop", lr=0.01)
    tr.train_step()
    opt = tr.optimizer
    tr.set_hyper(lr=0.002)
    assert tr.optimizer is opt and opt.lr == 0.002 and opt.t == 1


def test_refused_setting_is_reported_not_raised(make_trainer):
    tr = make_trainer(optimizer="sgd", lr=0.01)
    tr.set_hyper(lr=-1)
    assert tr.hyper.lr == 0.01 and "refused" in tr.message and "learning rate" in tr.message
    tr.set_hyper(optimizer="lbfgs")
    assert tr.hyper.optimizer == "sgd" and "optimizer" in tr.message
