"""The cells (rnn, lstm, gru) and their stacks: fast path against the readable reference, complex-step gradients,
PyTorch weight for weight, gate figures and the gradient's reach on constructed cases whose answer is known."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rnntui import gradcheck, lecture
from rnntui.cells import CELLS, GRU, LSTM, RNN, Cache, Stack, make_cell, source_lines
from rnntui.cells.base import GATE_HIGH, GATE_LOW, TANH_LEVEL, onehot_columns
from rnntui.model import CharRNN, softmax_rows
from rnntui.monitor import REACH_LEVEL, Reach

CASES = [(name, layers, masked) for name in CELLS for layers in (1, 2) for masked in (False, True)]
IDS = [f"{n}-{k}layer{'-mask' if m else ''}" for n, k, m in CASES]


# -- a random problem: a stack, its weights, a batch, states, dropout masks and an output layer --------------------


class Problem:
    def __init__(self, name, layers, masked, *, V=5, H=4, B=3, T=5, seed=0, dtype=np.float64, p=0.4):
        rng = np.random.default_rng(seed)
        self.stack = Stack(make_cell(name), V, H, layers, dropout=p if masked else 0.0)
        self.params = self.stack.zeros(dtype)
        self.stack.init(rng, self.params)
        for layer in self.params:  # off the initial point: every bias non-zero, gates away from ½
            for a in layer.values():
                a += (rng.standard_normal(a.shape) * 0.4).astype(dtype)
        self.V, self.H, self.B, self.T, self.dtype = V, H, B, T, dtype
        self.inputs = rng.integers(0, V, (B, T))
        self.targets = rng.integers(0, V, (B, T))
        self.state0 = [tuple(np.tanh(rng.standard_normal((B, H))).astype(dtype) for _ in self.stack.cell.state_names)
                       for _ in range(layers)]
        # masks of dropout's kind (0 or 1/(1 − p)) and, where a unit is kept, some spread, so that a wrong mask
        # anywhere changes the result
        self.masks = ([(m * rng.uniform(0.5, 1.5, m.shape)).astype(dtype) for m in
                       self.stack.draw_masks(rng, T * B, dtype)] if masked and layers > 1 else None)
        self.v = (rng.standard_normal((V, H)) * 0.5).astype(dtype)
        self.by = (rng.standard_normal(V) * 0.1).astype(dtype)

    @property
    def x(self) -> np.ndarray:
        return self.inputs.T.reshape(-1)  # time-major

    def fast(self, params=None, state0=None):
        """Fast path: loss, grads, ∂E/∂state0, top hs, last states, the cache (softmax output layer as model.py)."""
        params = self.params if params is None else params
        cache = self.stack.new_cache()
        hs, last = self.stack.forward(params, self.x, self.state0 if state0 is None else state0, cache,
                                      masks=self.masks, train=False)
        q = hs @ self.v.T + self.by
        p = softmax_rows(q.astype(np.float64))
        y = self.targets.T.reshape(-1)
        loss = -np.log(p[np.arange(len(y)), y]).sum() / self.B
        dy = p
        dy[np.arange(len(y)), y] -= 1
        dh_top = (dy / self.B).astype(self.dtype) @ self.v
        grads = self.stack.zeros(self.dtype)
        dstate0 = self.stack.backward(params, cache, dh_top, grads)
        return loss, grads, dstate0, hs.copy(), last, cache

    def columns(self, state0=None):
        return [tuple(a.T for a in s) for s in (self.state0 if state0 is None else state0)]

    def reference_loss(self, params, state0_columns):
        """E by the reference loops (batch in columns) and the lecture's output layer; complex in, complex out."""
        fwds = self.stack.reference_forward(params, self.inputs, state0_columns, self.masks)
        hs = {t: fwds[-1].states[t + 1][0] for t in range(self.T)}
        return lecture.outputs({"v": self.v, "by": self.by[:, None]}, hs, self.targets)[1]

    def reference(self):
        """Reference loss, grads, ∂E/∂state0 (as rows), top hs (rows) and last states (rows)."""
        cols = self.columns()
        fwds = self.stack.reference_forward(self.params, self.inputs, cols, self.masks)
        hs = {t: fwds[-1].states[t + 1][0] for t in range(self.T)}
        ps, loss = lecture.outputs({"v": self.v, "by": self.by[:, None]}, hs, self.targets)
        dhs = []
        for t in range(self.T):
            dy = ps[t].copy()
            dy[self.targets[:, t], np.arange(self.B)] -= 1
            dhs.append(self.v.T @ dy / self.B)
        back = self.stack.reference_bptt(self.params, fwds, dhs, self.masks)
        hs_rows = np.concatenate([hs[t].T for t in range(self.T)])
        last = [tuple(a.T for a in f.states[-1]) for f in fwds]
        return (loss, [b.grads for b in back], [tuple(a.T for a in b.dstate0) for b in back], hs_rows, last,
                fwds, back)


def assert_close(a, b, tol=1e-12, what=""):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape, (what, a.shape, b.shape)
    scale = max(1.0, float(np.max(np.abs(b))) if b.size else 1.0)
    err = float(np.max(np.abs(a - b))) if a.size else 0.0
    assert err <= tol * scale, f"{what}: max |fast − reference| = {err:.3g} (scale {scale:.3g})"


def check_against_reference(pb: Problem) -> None:
    loss, grads, dstate0, hs, last, cache = pb.fast()
    r_loss, r_grads, r_dstate0, r_hs, r_last, fwds, _ = pb.reference()
    assert_close(loss, r_loss, what="loss")
    assert_close(hs, r_hs, what="top hidden states")
    for k in range(pb.stack.layers):
        for name in grads[k]:
            assert_close(grads[k][name], r_grads[k][name], what=f"layer {k} ∂E/∂{name}")
        for j, sname in enumerate(pb.stack.cell.state_names):
            assert_close(dstate0[k][j], r_dstate0[k][j], what=f"layer {k} ∂E/∂{sname}0")
            assert_close(last[k][j], r_last[k][j], what=f"layer {k} last {sname}")
    # the reach: the last step's loss alone, against the reference BPTT of that loss
    dT = np.random.default_rng(1).standard_normal((pb.B, pb.H))
    logs = pb.stack.last_loss_back(pb.params, cache, dT)
    dhs = [np.zeros((pb.H, pb.B)) for _ in range(pb.T)]
    dhs[-1] = dT.T
    back = pb.stack.reference_bptt(pb.params, fwds, dhs, pb.masks)
    for k in range(pb.stack.layers):
        for j, sname in enumerate(pb.stack.cell.state_names):
            key = "dh" if sname == "h" else "dc"
            ref = [np.linalg.norm(back[k].steps[pb.T - 1 - d][key]) for d in range(pb.T)]
            ref.append(np.linalg.norm(back[k].dstate0[j]))
            ours, zero = logs[k][sname], np.array(ref) == 0  # a dropout mask may cut a lower layer off: log 0
            np.testing.assert_array_equal(np.isneginf(ours), zero)
            assert_close(ours[~zero], np.log(np.array(ref)[~zero]), what=f"layer {k} log ‖∂E_T/∂{sname}‖")


# -- (a) the fast path is the reference loop ----------------------------------------------------------------------


@pytest.mark.parametrize(("name", "layers", "masked"), CASES, ids=IDS)
def test_fast_path_equals_reference(name, layers, masked):
    check_against_reference(Problem(name, layers, masked, seed=layers + 10 * masked))


@settings(max_examples=40, deadline=None)
@given(name=st.sampled_from(sorted(CELLS)), layers=st.integers(1, 3), masked=st.booleans(), V=st.integers(2, 7),
       H=st.integers(1, 6), B=st.integers(1, 4), T=st.integers(1, 6), seed=st.integers(0, 2**31))
def test_fast_path_equals_reference_on_random_problems(name, layers, masked, V, H, B, T, seed):
    check_against_reference(Problem(name, layers, masked, V=V, H=H, B=B, T=T, seed=seed))


def test_float32_pass_is_the_float64_pass_in_float32():
    for name in CELLS:
        p64 = Problem(name, 2, True, H=8, T=6, seed=3)
        p32 = Problem(name, 2, True, H=8, T=6, seed=3, dtype=np.float32)
        l64, g64, _, hs64, _, _ = p64.fast()
        l32, g32, _, hs32, _, _ = p32.fast()
        assert hs32.dtype == np.float32 and g32[0]["w_ih" if name != "rnn" else "u"].dtype == np.float32
        assert abs(l32 - l64) < 1e-5 * abs(l64)
        assert_close(hs32, hs64, tol=1e-5, what=name)
        for k in range(2):
            for n in g64[k]:
                assert_close(g32[k][n], g64[k][n], tol=1e-4, what=f"{name} {n}")


def test_rnn_cell_with_an_output_layer_is_charrnn():
    """The vanilla cell under the model's output layer computes CharRNN's loss and gradients (today's fast path)."""
    model, x, y, h0 = gradcheck.random_problem(vocab_size=6, hidden_size=5, batch_size=3, seq_length=7, seed=4)
    loss, grads, h_last, diag = model.loss_and_grads(x, y, h0)
    p = model.params
    pb = Problem("rnn", 1, False, V=6, H=5, B=3, T=7)
    pb.params = [{"u": p["u"].copy(), "w": p["w"].copy(), "bh": p["bh"][:, 0].copy()}]
    pb.v, pb.by, pb.inputs, pb.targets, pb.state0 = p["v"], p["by"][:, 0], x, y, [(h0.T.copy(),)]
    f_loss, f_grads, f_dstate0, _, last, _ = pb.fast()
    assert_close(f_loss, loss, what="loss")
    for name in ("u", "w"):
        assert_close(f_grads[0][name], grads[name], what=name)
    assert_close(f_grads[0]["bh"], grads["bh"][:, 0], what="bh")
    assert_close(f_dstate0[0][0], diag.dh0.T, what="dh0")
    assert_close(last[0][0], h_last.T, what="h_last")


def test_vanilla_init_draws_charrnns_weights():
    """RNN.init with the model's seed gives CharRNN's u and w (drawn first, in that order) and b_h = 0."""
    for scheme in ("scaled", "lecture"):
        model = CharRNN(9, 6, seed=5, dtype=np.float64, init=scheme)
        params = RNN().zeros(9, 6, np.float64)
        RNN().init(np.random.default_rng(5), params, scheme)
        np.testing.assert_array_equal(params["u"], model.u)
        np.testing.assert_array_equal(params["w"], model.w)
        assert not params["bh"].any()


# -- (b) complex-step gradients of every tensor and of the initial states -----------------------------------------


@pytest.mark.parametrize(("name", "layers", "masked"), CASES, ids=IDS)
def test_complex_step_gradcheck(name, layers, masked):
    pb = Problem(name, layers, masked, V=5, H=3, B=2, T=4, seed=7 + layers)
    _, grads, dstate0, _, _, _ = pb.fast()
    params = [{k: a.astype(np.complex128) for k, a in layer.items()} for layer in pb.params]
    state0 = [tuple(a.T.astype(np.complex128) for a in s) for s in pb.state0]  # columns, as the reference takes them

    def E():
        return pb.reference_loss(params, state0)

    assert abs(E().real - pb.fast()[0]) < 1e-12  # the function differentiated is the fast path's loss
    checked = 0
    for k in range(layers):
        tensors = dict(params[k])
        tensors.update({f"{s}0": state0[k][j] for j, s in enumerate(pb.stack.cell.state_names)})
        analytic = dict(grads[k])
        analytic.update({f"{s}0": dstate0[k][j].T for j, s in enumerate(pb.stack.cell.state_names)})
        for tname, tensor in tensors.items():
            idx = list(np.ndindex(*tensor.shape))
            numeric = gradcheck.complex_step(E, tensor, idx)
            a = np.array([analytic[tname][i] for i in idx])
            err = np.abs(a - numeric) / np.maximum(np.abs(a) + np.abs(numeric), gradcheck.FLOOR)
            assert err.max() < gradcheck.THRESHOLD, f"layer {k} {tname}: max error {err.max():.2e}"
            checked += len(idx)
    expected = sum(math.prod(s.shape) for layer in pb.stack.specs() for s in layer)
    expected += layers * len(pb.stack.cell.state_names) * pb.B * pb.H
    assert checked == expected  # every entry of every tensor, and of h0 (c0)


# -- (c) PyTorch, weight for weight --------------------------------------------------------------------------------


def _torch_module(torch, pb: Problem, layers: int, params):
    cls = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[pb.stack.cell.name]
    m = cls(params[0][pb.stack.cell.w_ih].shape[1], pb.H, num_layers=layers).double()
    state = Stack(pb.stack.cell, pb.V, pb.H, layers).torch_state(params)
    m.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(a)) for k, a in state.items()})
    return m


def _torch_pass(torch, pb: Problem):
    """PyTorch's outputs, last states, loss, gradients (PyTorch's names without the layer suffix, per layer) and
    ∂E/∂state0. With masks: single-layer modules composed with the fixed masks in between."""
    name, L, S = pb.stack.cell.name, pb.stack.layers, len(pb.stack.cell.state_names)
    x = torch.nn.functional.one_hot(torch.from_numpy(pb.inputs.T.copy()), pb.V).double()  # (T, B, V)
    s0 = [[torch.tensor(pb.state0[k][j][None].copy(), requires_grad=True) for j in range(S)] for k in range(L)]

    def run(module, inputs, states):
        out, last = module(inputs, tuple(states) if name == "lstm" else states[0])
        return out, (list(last) if name == "lstm" else [last])

    if pb.masks is None:
        module = _torch_module(torch, pb, L, pb.params)
        out, last = run(module, x, [torch.cat([s0[k][j] for k in range(L)]) for j in range(S)])
        lasts = [[last[j][k] for j in range(S)] for k in range(L)]
        owners = [(module, f"_l{k}") for k in range(L)]
    else:
        out, lasts, owners = x, [], []
        for k in range(L):
            module = _torch_module(torch, pb, 1, [pb.params[k]])
            if k:
                out = out * torch.from_numpy(pb.masks[k - 1].reshape(pb.T, pb.B, pb.H))
            out, last = run(module, out, s0[k])
            lasts.append([a[0] for a in last])
            owners.append((module, "_l0"))
    logits = out.reshape(-1, pb.H) @ torch.from_numpy(pb.v).T + torch.from_numpy(pb.by)
    y = torch.from_numpy(pb.targets.T.reshape(-1).copy())
    loss = torch.nn.functional.cross_entropy(logits, y, reduction="sum") / pb.B
    loss.backward()
    grads = [{n[:-len(sfx)]: t.grad.numpy() for n, t in module.named_parameters() if n.endswith(sfx)}
             for module, sfx in owners]
    dstate0 = [[s0[k][j].grad.numpy()[0] for j in range(S)] for k in range(L)]
    lasts = [[a.detach().numpy() for a in layer] for layer in lasts]
    return out.detach().numpy().reshape(-1, pb.H), lasts, float(loss.detach()), grads, dstate0


@pytest.mark.parametrize(("name", "layers", "masked"), CASES, ids=IDS)
def test_matches_pytorch_weight_for_weight(name, layers, masked):
    torch = pytest.importorskip("torch")
    pb = Problem(name, layers, masked, V=6, H=5, B=3, T=6, seed=21)
    loss, grads, dstate0, hs, last, _ = pb.fast()
    t_hs, t_last, t_loss, t_grads, t_dstate0 = _torch_pass(torch, pb)
    assert_close(hs, t_hs, what="outputs")
    assert_close(loss, t_loss, what="loss")
    cell = pb.stack.cell
    for k in range(layers):
        ours = cell.torch_tensors(grads[k])
        if name == "rnn":  # PyTorch's two redundant biases both get ∂E/∂b_h
            ours["bias_hh"] = ours["bias_ih"]
        assert set(ours) == set(t_grads[k])
        for n, g in t_grads[k].items():
            assert_close(ours[n], g, what=f"layer {k} {n}")
        for j, s in enumerate(cell.state_names):
            assert_close(dstate0[k][j], t_dstate0[k][j], what=f"layer {k} ∂E/∂{s}0")
            assert_close(last[k][j], t_last[k][j], what=f"layer {k} last {s}")


@pytest.mark.parametrize("name", sorted(CELLS))
def test_specs_are_pytorchs_parameters(name):
    torch = pytest.importorskip("torch")
    stack = Stack(make_cell(name), 7, 5, layers=3)
    cls = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[name]
    ref = {k: tuple(v.shape) for k, v in cls(7, 5, num_layers=3).state_dict().items()}
    ours = {k: a.shape for k, a in stack.torch_state(stack.zeros()).items()}
    assert ours == ref
    params = stack.zeros(np.float64)
    stack.init(np.random.default_rng(0), params)
    back = stack.from_torch(stack.torch_state(params))
    for k in range(3):
        for n in params[k]:
            np.testing.assert_array_equal(back[k][n], params[k][n])


# -- initialisation -------------------------------------------------------------------------------------------------


def test_init_is_pytorchs_uniform_with_the_forget_bias():
    rng = np.random.default_rng(0)
    H = 64
    k = 1 / math.sqrt(H)
    for cell in (LSTM(), GRU(), RNN()):
        p = cell.zeros(11, H, np.float64)
        cell.init(rng, p)
        for name, a in p.items():
            if name in ("bh", "b_ih", "b_hh") and cell.name == "lstm":
                continue
            assert np.all(np.abs(a) <= k), name
            if name != "bh":  # drawn, spread over the whole range
                assert a.max() > 0.9 * k and a.min() < -0.9 * k, name
    p = LSTM().zeros(11, H, np.float64)
    LSTM().init(rng, p)
    assert np.all(p["b_ih"][H:2 * H] + p["b_hh"][H:2 * H] == 1.0)  # Jozefowicz et al. 2015
    other = np.r_[p["b_ih"][:H], p["b_ih"][2 * H:]]
    assert np.all(np.abs(other) <= k) and other.std() > 0
    p = LSTM(forget_bias=2.5).zeros(3, 4)
    LSTM(forget_bias=2.5).init(rng, p, "lecture")
    assert np.all(p["b_ih"][4:8] == 2.5) and not np.delete(p["b_ih"], range(4, 8)).any() and not p["b_hh"].any()
    assert np.abs(p["w_hh"]).max() < 0.1  # N(0, 0.01²)
    with pytest.raises(ValueError, match="scheme"):
        RNN().init(rng, RNN().zeros(3, 4), "xavier")


# -- (d) gate figures on constructed cases -----------------------------------------------------------------------


def _constant_pass(cell, biases: dict, *, H=4, V=3, B=2, T=5):
    """A pass with every weight 0 and the given bias blocks (name → {gate: value}): each gate is a known constant."""
    p = cell.zeros(V, H, np.float64)
    for tensor, values in biases.items():
        for gate, value in values.items():
            k = cell.gates.index(gate)
            p[tensor][k * H:(k + 1) * H] = value
    c = Cache()
    cell.forward(p, np.arange(T * B) % V, cell.zero_state(B, H, np.float64), c)
    return {s.name: s for s in cell.saturation(c)}, c


def test_lstm_gate_figures_on_known_gates():
    sat, _ = _constant_pass(LSTM(), {"b_ih": {"i": 0.0, "f": math.log(3), "g": 0.0, "o": 10.0}})
    assert list(sat) == ["i", "f", "g", "o", "tanh(c)"]
    assert sat["f"].mean == pytest.approx(0.75, abs=1e-15) and sat["f"].low == sat["f"].high == 0  # σ(ln 3) = ¾
    assert sat["i"].mean == pytest.approx(0.5, abs=1e-15)
    assert sat["o"].mean == pytest.approx(1 / (1 + math.exp(-10)), abs=1e-15) and sat["o"].high == 1.0
    assert sat["g"].mean == 0 and sat["g"].saturated == 0 and sat["tanh(c)"].saturated == 0
    sat, _ = _constant_pass(LSTM(), {"b_ih": {"f": 10.0, "i": -10.0, "g": 5.0}, "b_hh": {"o": -0.5}})
    f = sat["f"]
    assert f.kind == "sigmoid" and f.mean == pytest.approx(1, abs=1e-4) and f.high == 1.0 and f.low == 0.0
    assert sat["i"].low == 1.0 and sat["i"].high == 0.0 and sat["i"].mean < 1e-4
    assert sat["g"].kind == "tanh" and sat["g"].high == 1.0 and sat["g"].saturated == 1.0  # tanh(5) > 0.99
    assert sat["o"].mean == pytest.approx(1 / (1 + math.exp(0.5)), abs=1e-15)


def test_gru_and_rnn_gate_figures_on_known_gates():
    sat, _ = _constant_pass(GRU(), {"b_ih": {"z": 10.0, "r": -10.0, "n": 5.0}})
    assert list(sat) == ["r", "z", "n"]
    assert sat["z"].high == 1.0 and sat["z"].mean == pytest.approx(1, abs=1e-4)
    assert sat["r"].low == 1.0 and sat["r"].mean < 1e-4
    assert sat["n"].high == 1.0 and sat["n"].mean == pytest.approx(math.tanh(5), abs=1e-15)
    sat, _ = _constant_pass(GRU(), {"b_ih": {"z": 0.0, "r": 0.0, "n": -0.5}})
    assert sat["z"].mean == pytest.approx(0.5, abs=1e-15) and sat["z"].low == sat["z"].high == 0
    assert sat["n"].mean == pytest.approx(math.tanh(-0.5), abs=1e-15) and sat["n"].saturated == 0
    for bias, share in ((3.0, 1.0), (-3.0, 1.0), (0.5, 0.0)):
        p = RNN().zeros(3, 4, np.float64)
        p["bh"][:] = bias
        c = Cache()
        RNN().forward(p, np.zeros(6, int), RNN().zero_state(2, 4, np.float64), c)
        (h,) = RNN().saturation(c)
        assert h.saturated == share and h.mean == pytest.approx(math.tanh(bias), abs=1e-15)
    assert (GATE_LOW, GATE_HIGH, TANH_LEVEL) == (0.1, 0.9, 0.99)


def test_gate_shares_count_each_side():
    """Half the units' forget gates at σ(−3) < 0.1 and half at σ(3) > 0.9: 50 % left, 50 % right saturated."""
    cell, H = LSTM(forget_bias=None), 4
    p = cell.zeros(3, H, np.float64)
    p["b_ih"][H:2 * H] = [-3, 3, -3, 3]
    c = Cache()
    cell.forward(p, np.zeros(10, int), cell.zero_state(2, H, np.float64), c)
    f = next(s for s in cell.saturation(c) if s.name == "f")
    assert (f.low, f.high, f.saturated) == (0.5, 0.5, 1.0) and f.mean == pytest.approx(0.5, abs=1e-15)


# -- (e) the gradient's reach: the LSTM's cell state keeps it, the RNN's h loses it --------------------------------


def test_lstm_cell_state_keeps_the_gradient_where_the_rnn_loses_it():
    rng = np.random.default_rng(0)
    H, V, B, T = 8, 5, 4, 50
    x = rng.integers(0, V, T * B)
    lstm = LSTM(forget_bias=None)
    p = lstm.zeros(V, H, np.float64)
    p["w_ih"][:] = rng.standard_normal(p["w_ih"].shape) * 0.1
    p["w_hh"][:] = rng.standard_normal(p["w_hh"].shape) * 0.1
    p["b_ih"][H:2 * H] = 10.0  # f = σ(10 ± …) ≈ 1 − 4.5e-5: the cell state carries on
    p["b_ih"][3 * H:] = -10.0  # o ≈ 4.5e-5: the output path (through h) is tiny
    c = Cache()
    lstm.forward(p, x, lstm.zero_state(B, H, np.float64), c)
    dT = rng.standard_normal((B, H))
    logs = lstm.last_loss_back(p, c, dT)
    reach_c, reach_h = Reach.from_log_norms(0, logs["c"]), Reach.from_log_norms(0, logs["h"])
    assert reach_c.lag is None and reach_c.ratios.min() > 0.99 and reach_c.to_h0 > 0.99  # stays near 1 over T = 50
    assert reach_h.lag == 1 and reach_h.ratios[1] < 1e-3  # through h alone it is gone after one step

    rnn = RNN()
    q = rnn.zeros(V, H, np.float64)
    q["u"][:] = rng.standard_normal(q["u"].shape)
    q["w"][:] = rng.standard_normal((H, H)) * 0.5 / math.sqrt(H)  # σmax(w) ≈ 1: only 1 − h² shrinks it
    c = Cache()
    rnn.forward(q, x, rnn.zero_state(B, H, np.float64), c)
    reach = Reach.from_log_norms(0, rnn.last_loss_back(q, c, dT)["h"])
    assert reach.lag is not None and reach.lag < 10 and reach.ratios[-1] < 1e-6 < REACH_LEVEL


def test_reach_stays_measurable_where_float32_underflows():
    """A gradient that falls by far more than float32's range over the window is still measured (rescaling)."""
    rnn, H, B, T = RNN(), 6, 2, 200
    p = rnn.zeros(3, H, np.float32)
    p["w"][:] = np.eye(H, dtype=np.float32) * 0.5  # each step back multiplies by ≈ 0.5 (h ≈ 0: 1 − h² ≈ 1)
    c = Cache()
    rnn.forward(p, np.zeros(T * B, int), rnn.zero_state(B, H, np.float32), c)
    logs = rnn.last_loss_back(p, c, np.ones((B, H), np.float32))["h"]
    assert np.all(np.isfinite(logs))
    drop = logs[0] - logs[T]
    assert drop == pytest.approx(T * math.log(2), rel=1e-5)  # 0.5^200 ≈ 6e-61, far below float32's 1e-45
    p["w"][:] = np.eye(H, dtype=np.float32) * 2  # and growing by 2 per step: 2^200 ≈ 1.6e60 > float32's 3.4e38
    rnn.forward(p, np.zeros(T * B, int), rnn.zero_state(B, H, np.float32), c)
    logs = rnn.last_loss_back(p, c, np.ones((B, H), np.float32))["h"]
    assert np.all(np.isfinite(logs)) and logs[T] - logs[0] == pytest.approx(T * math.log(2), rel=1e-5)


# -- the rest of the interface ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(CELLS))
def test_step_is_one_step_of_forward(name):
    pb = Problem(name, 2, False, B=1, T=6, seed=2)
    _, _, _, hs, last, _ = pb.fast()
    state = [tuple(a[0] for a in s) for s in pb.state0]
    for t in range(pb.T):
        state = pb.stack.step(pb.params, int(pb.inputs[0, t]), state)
        np.testing.assert_allclose(state[-1][0], hs[t], rtol=0, atol=1e-14)
    for k in range(2):
        for j in range(len(state[k])):
            np.testing.assert_allclose(state[k][j], last[k][j][0], rtol=0, atol=1e-14)


@pytest.mark.parametrize("name", sorted(CELLS))
def test_cache_is_reused_and_reshaped(name):
    """Passes of one shape reuse the cache's arrays; another shape in between changes no result."""
    pb = Problem(name, 2, True, seed=5)
    cache = pb.stack.new_cache()
    g1 = pb.stack.zeros(np.float64)
    pb.stack.forward(pb.params, pb.x, pb.state0, cache, masks=pb.masks)
    pb.stack.backward(pb.params, cache, np.ones((pb.T * pb.B, pb.H)), g1)
    arrays = {k: id(a) for k, a in cache.layers[0].arrays.items()}
    other = Problem(name, 2, False, B=2, T=3, seed=6)
    pb.stack.forward(pb.params, other.x, other.state0, cache, train=False)  # another shape, in the same cache
    pb.stack.forward(pb.params, pb.x, pb.state0, cache, masks=pb.masks)
    g2 = pb.stack.zeros(np.float64)
    pb.stack.backward(pb.params, cache, np.ones((pb.T * pb.B, pb.H)), g2)
    again = pb.stack.zeros(np.float64)
    pb.stack.forward(pb.params, pb.x, pb.state0, cache, masks=pb.masks)
    pb.stack.backward(pb.params, cache, np.ones((pb.T * pb.B, pb.H)), again)
    assert {k: id(a) for k, a in cache.layers[0].arrays.items() if k in arrays} != arrays  # reallocated once …
    ids = {k: id(a) for k, a in cache.layers[0].arrays.items()}
    pb.stack.forward(pb.params, pb.x, pb.state0, cache, masks=pb.masks)
    assert {k: id(a) for k, a in cache.layers[0].arrays.items()} == ids  # … then kept
    for k in range(2):
        for n in g1[k]:
            np.testing.assert_array_equal(g1[k][n], g2[k][n])
            np.testing.assert_array_equal(g1[k][n], again[k][n])


def test_dropout_masks_and_evaluation():
    stack = Stack(GRU(), 5, 50, layers=3, dropout=0.25)
    masks = stack.draw_masks(np.random.default_rng(0), 4000, np.float32)
    assert len(masks) == 2 and all(m.shape == (4000, 50) and m.dtype == np.float32 for m in masks)
    for m in masks:
        assert set(np.unique(m).tolist()) == {0.0, np.float32(1 / 0.75)}
        assert np.mean(m == 0) == pytest.approx(0.25, abs=0.01) and m.mean() == pytest.approx(1.0, abs=0.02)
    pb = Problem("gru", 3, False, seed=1)
    drop = Stack(GRU(), pb.V, pb.H, layers=3, dropout=0.5)
    cache = drop.new_cache()
    plain, _ = pb.stack.forward(pb.params, pb.x, pb.state0, pb.stack.new_cache())
    plain = plain.copy()
    evaluated, _ = drop.forward(pb.params, pb.x, pb.state0, cache, train=False)
    np.testing.assert_array_equal(evaluated, plain)  # off at evaluation
    assert cache.masks is None
    trained, _ = drop.forward(pb.params, pb.x, pb.state0, cache, rng=np.random.default_rng(3))
    assert cache.masks is not None and not np.allclose(trained, plain)
    with pytest.raises(ValueError, match="rng"):
        drop.forward(pb.params, pb.x, pb.state0, cache)
    with pytest.raises(ValueError, match="masks must be 2 arrays"):
        drop.forward(pb.params, pb.x, pb.state0, cache, masks=[np.ones((pb.T * pb.B, pb.H))])
    single = Stack(LSTM(), 5, 4, layers=1, dropout=0.5)  # nothing between layers to drop
    q = single.zeros(np.float64)
    single.init(np.random.default_rng(0), q)
    c = single.new_cache()
    single.forward(q, np.zeros(6, int), single.zero_state(2, np.float64), c)
    assert c.masks is None


def test_equations_point_at_their_reference_lines():
    for name in CELLS:
        cell = make_cell(name)
        found = source_lines(cell)
        assert list(found) == [eq.id for eq in cell.equations]
        lines = [line for _, line in found.values()]
        assert len(set(lines)) == len(lines), f"{name}: two equations on one line"
        assert all(line and not line.startswith("#") for line in lines)
        for eq in cell.equations:
            assert eq.maths and eq.tag
    assert source_lines(LSTM())["lstm-21"][1] == "dc_next = dc * f"
    assert source_lines(GRU())["gru-4"][1] == "n = np.tanh(np.dot(W_in, x) + b_in + r * hn)"
    assert source_lines(RNN())["eq-7"][1] == "dhraw = (1 - h * h) * dh"


def test_blocks_recurrent_matrices_and_state_names():
    H = 3
    lstm = LSTM()
    p = lstm.zeros(4, H, np.float64)
    p["w_hh"][:] = np.arange(4 * H)[:, None]
    mats = lstm.recurrent_matrices(p)
    assert list(mats) == ["w_hh.i", "w_hh.f", "w_hh.g", "w_hh.o"]
    assert all(np.all(m == np.arange(k * H, (k + 1) * H)[:, None]) for k, m in enumerate(mats.values()))
    mats["w_hh.f"][0, 0] = -1  # views
    assert p["w_hh"][H, 0] == -1
    parts = GRU().split_blocks(GRU().zeros(4, H))
    assert list(parts) == [f"{t}.{g}" for t in ("w_ih", "w_hh", "b_ih", "b_hh") for g in "rzn"]
    assert parts["w_ih.n"].shape == (H, 4) and parts["b_hh.z"].shape == (H,)
    assert list(RNN().recurrent_matrices(RNN().zeros(4, H))) == ["w"]
    assert list(RNN().split_blocks(RNN().zeros(4, H))) == ["u", "w", "bh"]
    assert (RNN.state_names, LSTM.state_names, GRU.state_names) == (("h",), ("h", "c"), ("h",))
    state = lstm.zero_state(2, H)
    assert len(state) == 2 and state[1].shape == (2, H)


def test_bad_arguments_are_refused():
    cell = LSTM()
    p = cell.zeros(5, 4, np.float64)
    c = Cache()
    with pytest.raises(ValueError, match="multiple"):
        cell.forward(p, np.zeros(7, int), cell.zero_state(2, 4, np.float64), c)
    with pytest.raises(ValueError, match="0 … 4"):
        cell.forward(p, np.full(6, 5), cell.zero_state(2, 4, np.float64), c)
    with pytest.raises(ValueError, match="state"):
        cell.forward(p, np.zeros(6, int), cell.zero_state(2, 4, np.float64)[:1], c)
    with pytest.raises(ValueError, match="rows"):
        cell.forward(p, np.zeros((6, 3)), cell.zero_state(2, 4, np.float64), c)
    with pytest.raises(ValueError, match="forward pass"):
        cell.backward(p, Cache(), np.zeros((6, 4)), cell.zeros(5, 4))
    cell.forward(p, np.zeros(6, int), cell.zero_state(2, 4, np.float64), c)
    with pytest.raises(ValueError, match="dh_top"):
        cell.backward(p, c, np.zeros((5, 4)), cell.zeros(5, 4))
    with pytest.raises(ValueError, match="unknown cell"):
        make_cell("transformer")
    with pytest.raises(ValueError, match="layers"):
        Stack(cell, 5, 4, layers=0)
    with pytest.raises(ValueError, match="dropout"):
        Stack(cell, 5, 4, layers=2, dropout=1.0)


def test_onehot_columns():
    np.testing.assert_array_equal(onehot_columns([2, 0], 3), [[0, 1], [0, 0], [1, 0]])


@pytest.mark.parametrize(("name", "H"), [("lstm", 260), ("gru", 300), ("rnn", 520)])
def test_large_hidden_sizes_take_the_blocked_transpose(name, H):
    """Above TRANSPOSE_BLOCKED entries the pass's weights are transposed in blocks: still the reference's pass."""
    from rnntui.cells import base

    cell = make_cell(name)
    assert cell.G * H * H > base.TRANSPOSE_BLOCKED
    check_against_reference(Problem(name, 2, True, V=4, H=H, B=2, T=3, seed=9))


def test_saturated_gates_are_exact_without_warnings():
    """Pre-activations of ±1000: e^(−a) overflows to inf, σ is exactly 0 or 1 and no warning is raised."""
    import warnings

    for cell, biases in ((LSTM(), {"b_ih": {"i": -1000.0, "f": 1000.0, "g": -1000.0, "o": 1000.0}}),
                         (GRU(), {"b_ih": {"r": 1000.0, "z": -1000.0, "n": 3.0}})):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            sat, c = _constant_pass(cell, biases)
        if cell.name == "lstm":
            assert (sat["i"].mean, sat["f"].mean, sat["g"].mean, sat["o"].mean) == (0.0, 1.0, -1.0, 1.0)
        else:
            assert (sat["r"].mean, sat["z"].mean) == (1.0, 0.0)
        assert np.all(np.isfinite(c.arrays["h"]))
