"""The lecture's loop (rnntui/lecture.py) is the reference: the fast path agrees with it to 1e-12 in float64."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rnntui import lecture
from rnntui.model import PARAM_NAMES, CharRNN


def _problem(V, H, B, T, seed, threads=1, scale=1.0):
    rng = np.random.default_rng(seed)
    m = CharRNN(V, H, seed=seed, dtype="float64", threads=threads)
    for k in ("u", "w", "v"):
        m.params[k][...] *= scale
    m.params["bh"][...] = rng.normal(0, 0.1, (H, 1))
    m.params["by"][...] = rng.normal(0, 0.1, (V, 1))
    x, y = rng.integers(0, V, (B, T)), rng.integers(0, V, (B, T))
    h0 = rng.uniform(-0.9, 0.9, (H, B))
    return m, x, y, h0


@settings(max_examples=30, deadline=None)
@given(V=st.integers(2, 12), H=st.integers(1, 10), B=st.integers(1, 6), T=st.integers(1, 9),
       seed=st.integers(0, 10_000), scale=st.sampled_from([0.1, 1.0, 3.0]))
def test_fast_path_equals_the_lecture_loop(V, H, B, T, seed, scale):
    m, x, y, h0 = _problem(V, H, B, T, seed, scale=scale)
    params = {k: np.array(m.params[k]) for k in PARAM_NAMES}
    fwd, back = lecture.bptt(params, x, y, h0)
    loss, grads, h_last, diag = m.loss_and_grads(x, y, h0)
    assert loss == pytest.approx(float(fwd.loss), rel=1e-12, abs=1e-12)
    for k in PARAM_NAMES:
        np.testing.assert_allclose(grads[k], back.grads[k], rtol=1e-12, atol=1e-13, err_msg=k)
    np.testing.assert_allclose(diag.dh0, back.dh0, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(h_last, fwd.hs[T - 1], rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("threads", [1, 2])
def test_fast_path_equals_the_lecture_loop_on_a_split_batch(threads):
    m, x, y, h0 = _problem(20, 16, 8, 12, seed=3, threads=threads)
    params = {k: np.array(m.params[k]) for k in PARAM_NAMES}
    fwd, back = lecture.bptt(params, x, y, h0)
    loss, grads, _, diag = m.loss_and_grads(x, y, h0)
    assert len(m._buffers_for(8, 12).parts) == threads
    assert loss == pytest.approx(float(fwd.loss), rel=1e-12)
    for k in PARAM_NAMES:
        np.testing.assert_allclose(grads[k], back.grads[k], rtol=1e-12, atol=1e-13, err_msg=k)


def test_the_loop_keeps_every_steps_terms_and_accepts_complex_weights():
    m, x, y, h0 = _problem(6, 5, 2, 4, seed=1)
    params = {k: np.array(m.params[k]) for k in PARAM_NAMES}
    fwd, back = lecture.bptt(params, x, y, h0, keep=True)
    assert sorted(back.steps) == [0, 1, 2, 3]
    s = back.steps[3]
    np.testing.assert_allclose(s["dhraw"], (1 - fwd.hs[3] ** 2) * s["dh"])
    np.testing.assert_allclose(s["dhnext"], params["w"].T @ s["dhraw"])
    # the complex step through the loop gives the gradient (the loss is analytic)
    h = 1e-20
    bumped = dict(params, w=params["w"].astype(complex))
    bumped["w"][2, 3] += 1j * h
    d = lecture.forward(bumped, x, y, h0).loss.imag / h
    assert d == pytest.approx(back.grads["w"][2, 3], rel=1e-10)


def test_a_pickled_model_computes_what_the_original_does_even_after_a_pass():
    # the work buffers alias each other; a copy through pickle (the child process's pipe) must not keep them
    import pickle

    m, x, y, h0 = _problem(9, 12, 3, 8, seed=4)
    m.loss(x, y, h0)  # fills the work buffers
    copy = pickle.loads(pickle.dumps(m))
    params = {k: np.array(m.params[k]) for k in PARAM_NAMES}
    ref = lecture.bptt(params, x, y, h0)[1].grads
    _, grads, _, _ = copy.loss_and_grads(x, y, h0)
    for k in PARAM_NAMES:
        np.testing.assert_allclose(grads[k], ref[k], rtol=1e-12, atol=1e-13, err_msg=k)
