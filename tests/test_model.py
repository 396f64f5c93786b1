"""CharRNN: forward pass, BPTT gradients (against finite differences and a plain per-step loop), init, sampling."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rnntui import gradcheck
from rnntui.model import PARAM_NAMES, CharRNN, softmax_jacobian, softmax_rows


def _softmax(q):
    e = np.exp(q - q.max())
    return e / e.sum()


# -- 1. finite differences ---------------------------------------------------------------------


def test_independent_centred_differences(reference):
    """Every entry of every gradient and of ∂E/∂h0 against a 5-point centred difference of the
    reference loss (written in conftest, not the package's forward pass).

    The 5-point stencil has truncation error O(ε⁴) ≈ 1e-16 at ε = 1e-4, and its rounding error is
    about 18·1e-16·|E|/(12ε) ≈ 1e-11 for |E| ≈ 6; hence the error floor of 1e-4 in the denominator
    (an absolute tolerance of 1e-10 for entries that are themselves ~0).
    """
    model, x, y, h0 = gradcheck.random_problem(vocab_size=5, hidden_size=4, batch_size=2, seq_length=4, seed=11)
    loss, grads, _, diag = model.loss_and_grads(x, y, h0)
    analytic = {**grads, "h0": diag.dh0}
    tensors = {k: p.copy() for k, p in model.params.items()}
    tensors["h0"] = h0.copy()

    def E():
        params = {k: tensors[k] for k in PARAM_NAMES}
        return reference(params, x, y, tensors["h0"])[0]

    assert E() == pytest.approx(loss, rel=1e-12)
    eps = 1e-4
    checked = 0
    for name, p in tensors.items():
        assert analytic[name].shape == p.shape
        for i in np.ndindex(*p.shape):
            old = p[i]
            f = {}
            for k in (-2, -1, 1, 2):
                p[i] = old + k * eps
                f[k] = E()
            p[i] = old
            numeric = (-f[2] + 8 * f[1] - 8 * f[-1] + f[-2]) / (12 * eps)
            a = analytic[name][i]
            err = abs(a - numeric) / max(abs(a) + abs(numeric), 1e-4)
            assert err < 1e-6, (name, i, a, numeric)
            checked += 1
    assert checked == model.num_params() + h0.size


# -- 2. h0 matters ---------------------------------------------------------------------------------


def test_loss_depends_on_h0_and_both_passes_agree(reference):
    model, x, y, h0 = gradcheck.random_problem(seed=5)
    loss_zero, _ = model.loss(x, y)  # h0 = 0
    loss_h0, h_last = model.loss(x, y, h0)
    assert abs(loss_h0 - loss_zero) > 1e-3  # the carried state changes the loss
    loss_g, _, h_last_g, diag = model.loss_and_grads(x, y, h0)
    assert loss_g == pytest.approx(loss_h0, rel=1e-12)
    np.testing.assert_allclose(h_last_g, h_last, rtol=1e-12)
    assert loss_h0 == pytest.approx(reference(model.params, x, y, h0)[0], rel=1e-12)
    # first order: E(h0 + δ·d) − E(h0) ≈ δ·⟨∂E/∂h0, d⟩
    d = np.random.default_rng(0).standard_normal(h0.shape)
    delta = 1e-6
    change = model.loss(x, y, h0 + delta * d)[0] - loss_h0
    assert change == pytest.approx(delta * np.sum(diag.dh0 * d), rel=1e-3)
    assert np.linalg.norm(diag.dh0) > 1e-3


def test_h0_is_not_modified():
    model, x, y, h0 = gradcheck.random_problem(seed=6)
    before = h0.copy()
    model.loss_and_grads(x, y, h0)
    model.loss(x, y, h0)
    np.testing.assert_array_equal(h0, before)


# -- 3. the output layer -------------------------------------------------------------------------


def test_softmax_jacobian_against_numeric_differences():
    rng = np.random.default_rng(1)
    q = rng.standard_normal(6) * 2
    s = _softmax(q)
    jac = softmax_jacobian(s)
    eps = 1e-6
    numeric = np.empty((6, 6))
    for j in range(6):
        d = np.zeros(6)
        d[j] = eps
        numeric[:, j] = (_softmax(q + d) - _softmax(q - d)) / (2 * eps)
    np.testing.assert_allclose(jac, numeric, atol=1e-9)
    np.testing.assert_allclose(jac.sum(axis=0), 0, atol=1e-15)  # Σ_i s_i = 1 whatever a is
    np.testing.assert_allclose(jac, jac.T)


def test_cross_entropy_gradient_is_yhat_minus_y():
    rng = np.random.default_rng(2)
    q = rng.standard_normal(7) * 3
    target = 4
    ce = lambda qq: -np.log(_softmax(qq)[target])
    eps = 1e-6
    numeric = np.array([(ce(q + eps * e) - ce(q - eps * e)) / (2 * eps) for e in np.eye(7)])
    expected = _softmax(q) - np.eye(7)[target]
    np.testing.assert_allclose(numeric, expected, atol=1e-8)
    # and the package's softmax is the same function (stable for large logits)
    np.testing.assert_allclose(softmax_rows(q), _softmax(q), rtol=1e-14)
    assert np.all(np.isfinite(softmax_rows(np.array([1000.0, 0.0, -1000.0]))))


def test_loss_is_finite_when_a_target_probability_underflows(reference):
    """Large logits make ŷ[target] underflow to 0 in float32; the loss is still the finite
    log-sum-exp(q) − q[target], not −log 0 = ∞."""
    model, x, y, h0 = gradcheck.random_problem(vocab_size=6, hidden_size=5, batch_size=2, seq_length=4, seed=12)
    model.params["v"] *= 3000.0
    m32 = model.astype(np.float32)
    loss32, _ = m32.loss(x, y, h0.astype(np.float32))
    loss_g, grads, _, _ = m32.loss_and_grads(x, y, h0.astype(np.float32))
    # an independent float64 value: Σ (logsumexp(q) − q[y]) / B, from the reference's hidden states
    p = model.params
    h, total = h0.copy(), 0.0
    for t in range(4):
        h = np.tanh(p["u"][:, x[:, t]] + p["w"] @ h + p["bh"])
        q = p["v"] @ h + p["by"]
        qmax = q.max(axis=0)
        total += np.sum(qmax + np.log(np.exp(q - qmax).sum(axis=0)) - q[y[:, t], np.arange(2)])
    expected = total / 2
    assert expected > 500  # probabilities of e^-500 and less: 0 in float32 (and in float64)
    assert loss32 == pytest.approx(expected, rel=1e-4)
    assert loss_g == pytest.approx(loss32, rel=1e-6)
    assert all(np.isfinite(g).all() for g in grads.values())


# -- 4. initial loss -------------------------------------------------------------------------------


@pytest.mark.parametrize(("init", "tol"), [("lecture", 2e-3), ("scaled", 0.15)])
def test_initial_loss_is_about_ln_V(init, tol):
    """At initialisation the prediction is nearly uniform, so the loss per character is ≈ ln V.

    lecture: N(0, 0.01²) weights give logits of order 1e-3, so the excess over ln V (≈ var(q)/2) is
    ~1e-6; 2e-3 leaves room for nothing but a broken loss. scaled: U(±1/√H) gives logits of spread
    σ ≲ 0.4 (|h| < 1, v entries ±1/√H), i.e. an excess of about σ²/2 ≲ 0.1 nats; 0.15 is that bound.
    """
    V, H, B, T = 30, 32, 8, 50
    rng = np.random.default_rng(0)
    x = rng.integers(0, V, (B, T))
    y = rng.integers(0, V, (B, T))
    model = CharRNN(V, H, seed=1, init=init, dtype=np.float64)
    loss, _ = model.loss(x, y)
    per_char = loss / T
    assert per_char == pytest.approx(math.log(V), abs=tol)
    assert per_char >= math.log(V) - 0.05  # random targets: a model cannot do much better than uniform


def test_init_distributions():
    H, V = 32, 40
    lec = CharRNN(V, H, seed=0, init="lecture", dtype=np.float64)
    sc = CharRNN(V, H, seed=0, init="scaled", dtype=np.float64)
    for k in ("u", "w", "v"):
        assert np.std(lec.params[k]) == pytest.approx(0.01, rel=0.2)
        assert np.max(np.abs(sc.params[k])) <= 1 / math.sqrt(H)
        assert np.std(sc.params[k]) == pytest.approx(1 / math.sqrt(3 * H), rel=0.2)  # U(±k): std k/√3
    for k in ("bh", "by"):
        assert not lec.params[k].any() and not sc.params[k].any()
    assert {k: p.shape for k, p in sc.params.items()} == {"u": (H, V), "w": (H, H), "v": (V, H), "bh": (H, 1),
                                                          "by": (V, 1)}
    with pytest.raises(ValueError):
        CharRNN(V, H, init="xavier")


# -- 5. the vectorised pass equals the lecture's loop ---------------------------------------------


@pytest.mark.parametrize(("B", "T"), [(1, 6), (4, 7), (3, 1), (2, 2)])
def test_vectorised_bptt_equals_per_step_reference(reference, B, T):
    model, x, y, h0 = gradcheck.random_problem(vocab_size=9, hidden_size=5, batch_size=B, seq_length=T, seed=B + T)
    loss, grads, h_last, diag = model.loss_and_grads(x, y, h0)
    ref_loss, ref_grads, ref_h, ref_dh0, ref_dh_norms, ref_carry = reference(model.params, x, y, h0)
    assert loss == pytest.approx(ref_loss, rel=1e-6, abs=0)
    for k in PARAM_NAMES:
        assert grads[k].shape == model.params[k].shape
        np.testing.assert_allclose(grads[k], ref_grads[k], rtol=1e-6, atol=1e-10, err_msg=k)
    np.testing.assert_allclose(h_last, ref_h, rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(diag.dh0, ref_dh0, rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(diag.dh_norms, ref_dh_norms, rtol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(diag.dh0), ref_carry[0], rtol=1e-6)  # wᵀ·dhraw₁ is ∂E/∂h₀
    assert diag.hs.shape == (T * B, model.H) and diag.ps.shape == (T * B, model.V)
    np.testing.assert_allclose(diag.ps.sum(axis=1), 1.0, rtol=1e-12)


def test_repeated_inputs_accumulate_into_u(reference):
    """The same character at several (t, b) must add up in ∂E/∂u (a scatter that does not overwrite)."""
    model, _, y, h0 = gradcheck.random_problem(vocab_size=4, hidden_size=3, batch_size=2, seq_length=5, seed=9)
    x = np.full((2, 5), 2)
    _, grads, _, _ = model.loss_and_grads(x, y, h0)
    np.testing.assert_allclose(grads["u"], reference(model.params, x, y, h0)[1]["u"], rtol=1e-9, atol=1e-14)
    assert np.count_nonzero(grads["u"][:, [0, 1, 3]]) == 0


def test_float32_agrees_with_float64(reference):
    model, x, y, h0 = gradcheck.random_problem(seed=7)
    m32 = model.astype(np.float32)
    assert all(p.dtype == np.float32 for p in m32.params.values())
    loss, grads, h_last, _ = m32.loss_and_grads(x, y, h0.astype(np.float32))
    ref_loss, ref_grads, *_ = reference(model.params, x, y, h0)
    assert loss == pytest.approx(ref_loss, rel=1e-5)
    for k in PARAM_NAMES:
        assert grads[k].dtype == np.float32
        np.testing.assert_allclose(grads[k], ref_grads[k], atol=1e-5 * max(1.0, np.abs(ref_grads[k]).max()))
    assert h_last.dtype == np.float32


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_astype_copies_parameters(dtype):
    model = CharRNN(5, 4, seed=0, dtype=np.float64)
    other = model.astype(dtype)
    assert other.dtype == dtype
    for k, p in model.params.items():
        assert other.params[k].dtype == dtype and other.params[k].shape == p.shape
        np.testing.assert_array_equal(other.params[k], p.astype(dtype))  # the values, rounded to dtype only
        assert not np.shares_memory(other.params[k], p)
    x = np.array([[0, 1, 2, 3], [4, 3, 2, 1]])
    y = np.roll(x, -1, axis=1)
    assert other.loss(x, y)[0] == pytest.approx(model.loss(x, y)[0], rel=1e-6)  # the same model, working
    other.params["w"][...] = 0  # a copy: the original keeps its weights
    assert np.any(model.params["w"] != 0)
    assert other.loss(x, y)[0] != pytest.approx(model.loss(x, y)[0], rel=1e-6)


def test_shape_errors():
    model = CharRNN(5, 4)
    x = np.zeros((2, 3), int)
    with pytest.raises(ValueError, match="h0"):
        model.loss(x, x, np.zeros((4, 3)))
    with pytest.raises(ValueError, match="targets"):
        model.loss_and_grads(x, np.zeros((2, 4), int))
    with pytest.raises(ValueError, match="inputs"):
        model.loss(np.zeros(3, int), np.zeros(3, int))


# -- sampling --------------------------------------------------------------------------------------


def test_greedy_sample_follows_the_recurrence():
    chars = "abcdef"
    model, _, _, _ = gradcheck.random_problem(vocab_size=6, hidden_size=5, seed=8)
    model.chars = chars
    p = model.params
    h = np.tanh(np.arange(5) * 0.1)
    h_before = h.copy()
    out = model.sample(h, prime="cab", n=12, temperature=0)
    assert isinstance(out, str) and len(out) == 12 and set(out) <= set(chars)
    np.testing.assert_array_equal(h, h_before)  # the caller's state is untouched
    # the same by hand: feed the prime, then always the argmax
    state = h_before.copy()
    for c in "ca":  # all of the prime but its last character...
        state = np.tanh(p["u"][:, chars.index(c)] + p["w"] @ state + p["bh"][:, 0])
    ix = chars.index("b")  # ...which is the first input of the generation loop
    expected = []
    for _ in range(12):
        state = np.tanh(p["u"][:, ix] + p["w"] @ state + p["bh"][:, 0])
        ix = int(np.argmax(p["v"] @ state + p["by"][:, 0]))
        expected.append(chars[ix])
    assert out == "".join(expected)


def test_sample_with_temperature_is_reproducible_and_checks_prime():
    model = CharRNN(4, 3, seed=0, chars="abcd")
    a = model.sample(None, "ab", 30, 1.0, np.random.default_rng(5))
    b = model.sample(None, "ab", 30, 1.0, np.random.default_rng(5))
    assert a == b and len(a) == 30
    with pytest.raises(ValueError, match="outside the vocabulary"):
        model.sample(None, "xyz", 5)
    with pytest.raises(ValueError):
        model.sample(None, "a", 5, temperature=-1)
    ids = CharRNN(4, 3).sample(None, [1, 2], 7, 0.5, np.random.default_rng(0))
    assert len(ids) == 7 and all(0 <= i < 4 for i in ids)
