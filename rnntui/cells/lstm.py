"""The LSTM cell, PyTorch's ``nn.LSTM`` formulation (gates i, f, g, o; no peepholes).

    i_t = σ(W_ii·x_t + b_ii + W_hi·h_{t−1} + b_hi)                        lstm-1  input gate
    f_t = σ(W_if·x_t + b_if + W_hf·h_{t−1} + b_hf)                        lstm-2  forget gate
    g_t = tanh(W_ig·x_t + b_ig + W_hg·h_{t−1} + b_hg)                     lstm-3  candidate
    o_t = σ(W_io·x_t + b_io + W_ho·h_{t−1} + b_ho)                        lstm-4  output gate
    c_t = f_t ⊙ c_{t−1} + i_t ⊙ g_t                                       lstm-5  cell state
    h_t = o_t ⊙ tanh(c_t)                                                 lstm-6

Parameters as PyTorch's: w_ih = [W_ii; W_if; W_ig; W_io] (4H, I), w_hh = [W_hi; W_hf; W_hg; W_ho] (4H, H),
b_ih = [b_ii; b_if; b_ig; b_io] (4H,), b_hh likewise; state (h, c). Initialisation U(±1/√H) for all
(PyTorch's), then the forget gate's bias b_if + b_hf = ``forget_bias`` (1, as Jozefowicz, Zaremba &
Sutskever 2015 recommend: b_if = forget_bias, b_hf = 0; None keeps PyTorch's draw).

BPTT, with δa the gradient of a gate's pre-activation and ∂E/∂h_t from above given:

    ∂E/∂h_t     = (from above) + W_hhᵀ·δa_{t+1}                           lstm-7
    ∂E/∂o_t     = ∂E/∂h_t ⊙ tanh(c_t)                                     lstm-8
    ∂E/∂c_t     = ∂E/∂h_t ⊙ o_t ⊙ (1 − tanh²(c_t)) + f_{t+1} ⊙ ∂E/∂c_{t+1}  lstm-9
    ∂E/∂i_t     = ∂E/∂c_t ⊙ g_t                                           lstm-10
    ∂E/∂f_t     = ∂E/∂c_t ⊙ c_{t−1}                                       lstm-11
    ∂E/∂g_t     = ∂E/∂c_t ⊙ i_t                                           lstm-12
    δa_i = ∂E/∂i ⊙ i(1 − i),  δa_f = ∂E/∂f ⊙ f(1 − f)                     lstm-13, lstm-14
    δa_g = ∂E/∂g ⊙ (1 − g²),  δa_o = ∂E/∂o ⊙ o(1 − o)                     lstm-15, lstm-16
    ∂E/∂w_ih    = Σ_t δa_t·x_tᵀ       (δa_t = [δa_i; δa_f; δa_g; δa_o])    lstm-17
    ∂E/∂w_hh    = Σ_t δa_t·h_{t−1}ᵀ                                       lstm-18
    ∂E/∂b_ih    = ∂E/∂b_hh = Σ_t δa_t                                     lstm-19
    ∂E/∂h_{t−1} = W_hhᵀ·δa_t                                              lstm-20
    ∂E/∂c_{t−1} = ∂E/∂c_t ⊙ f_t                                           lstm-21  (the cell state's path)
    ∂E/∂x_t     = W_ihᵀ·δa_t                                              lstm-22  (to the layer below)

lstm-21 is why the LSTM keeps its gradient: along c it is multiplied by f alone, no weight matrix and
no squashing derivative, so with f ≈ 1 it reaches far back.

Fast path: gate blocks in the order (o, i, f, g), so the three sigmoid gates are adjacent (one exp, add and
reciprocal over all four blocks, then g = 2σ(2a) − 1 on the last) and, going back, δa_o comes from ∂E/∂h and δa_i, δa_f,
δa_g from ∂E/∂c (one broadcast product for the three).
"""

from __future__ import annotations

import numpy as np

from .base import Cache, Cell, Equation, ParamSpec, RefBackward, RefForward, _sq, blocks, col, figures, sigmoid


class LSTM(Cell):
    """PyTorch's nn.LSTM cell; ``forget_bias`` is the forget gate's initial total bias (None: as drawn)."""

    name = "lstm"
    gates = ("i", "f", "g", "o")
    state_names = ("h", "c")
    order = (3, 0, 1, 2)  # internal (o, i, f, g)
    scales = (-1.0, -1.0, -1.0, -2.0)
    equations = (
        Equation("lstm-1", "iₜ = σ(W_ii·xₜ + b_ii + W_hi·hₜ₋₁ + b_hi)"),
        Equation("lstm-2", "fₜ = σ(W_if·xₜ + b_if + W_hf·hₜ₋₁ + b_hf)"),
        Equation("lstm-3", "gₜ = tanh(W_ig·xₜ + b_ig + W_hg·hₜ₋₁ + b_hg)"),
        Equation("lstm-4", "oₜ = σ(W_io·xₜ + b_io + W_ho·hₜ₋₁ + b_ho)"),
        Equation("lstm-5", "cₜ = fₜ ⊙ cₜ₋₁ + iₜ ⊙ gₜ"),
        Equation("lstm-6", "hₜ = oₜ ⊙ tanh(cₜ)"),
        Equation("lstm-7", "∂E/∂hₜ = (from above) + W_hhᵀ·δaₜ₊₁"),
        Equation("lstm-8", "∂E/∂oₜ = ∂E/∂hₜ ⊙ tanh(cₜ)"),
        Equation("lstm-9", "∂E/∂cₜ = ∂E/∂hₜ ⊙ oₜ ⊙ (1 − tanh²cₜ) + fₜ₊₁ ⊙ ∂E/∂cₜ₊₁"),
        Equation("lstm-10", "∂E/∂iₜ = ∂E/∂cₜ ⊙ gₜ"),
        Equation("lstm-11", "∂E/∂fₜ = ∂E/∂cₜ ⊙ cₜ₋₁"),
        Equation("lstm-12", "∂E/∂gₜ = ∂E/∂cₜ ⊙ iₜ"),
        Equation("lstm-13", "δa_i = ∂E/∂iₜ ⊙ iₜ(1 − iₜ)"),
        Equation("lstm-14", "δa_f = ∂E/∂fₜ ⊙ fₜ(1 − fₜ)"),
        Equation("lstm-15", "δa_g = ∂E/∂gₜ ⊙ (1 − gₜ²)"),
        Equation("lstm-16", "δa_o = ∂E/∂oₜ ⊙ oₜ(1 − oₜ)"),
        Equation("lstm-17", "∂E/∂W_ih = Σₜ δaₜ·xₜᵀ"),
        Equation("lstm-18", "∂E/∂W_hh = Σₜ δaₜ·hₜ₋₁ᵀ"),
        Equation("lstm-19", "∂E/∂b_ih = ∂E/∂b_hh = Σₜ δaₜ"),
        Equation("lstm-20", "∂E/∂hₜ₋₁ = W_hhᵀ·δaₜ"),
        Equation("lstm-21", "∂E/∂cₜ₋₁ = ∂E/∂cₜ ⊙ fₜ"),
        Equation("lstm-22", "∂E/∂xₜ = W_ihᵀ·δaₜ"),
    )

    def __init__(self, forget_bias: float | None = 1.0):
        self.forget_bias = forget_bias

    def __repr__(self) -> str:
        return f"LSTM(forget_bias={self.forget_bias!r})"

    def specs(self, input_size: int, hidden_size: int) -> tuple[ParamSpec, ...]:
        I, H = int(input_size), int(hidden_size)  # noqa: E741
        return (ParamSpec("w_ih", (4 * H, I), "weight", self.gates, "weight_ih"),
                ParamSpec("w_hh", (4 * H, H), "weight", self.gates, "weight_hh"),
                ParamSpec("b_ih", (4 * H,), "bias", self.gates, "bias_ih"),
                ParamSpec("b_hh", (4 * H,), "bias", self.gates, "bias_hh"))

    def init(self, rng: np.random.Generator, params: dict, scheme: str = "scaled") -> None:
        super().init(rng, params, scheme)
        if self.forget_bias is not None:
            H = params["w_hh"].shape[1]
            params["b_ih"][H:2 * H] = self.forget_bias
            params["b_hh"][H:2 * H] = 0

    # -- fast path ---------------------------------------------------------------------------------------------------
    def _internal_bias(self, params: dict, c: Cache) -> np.ndarray:
        b = np.add(params["b_ih"], params["b_hh"], out=c.array("bsum", (4 * c.H,)))
        bias = np.take(b, c.arrays["perm"], out=c.array("bias", (4 * c.H,)))
        return np.multiply(bias, c.arrays["scale"], out=bias)

    def _load_state(self, c: Cache, state0: tuple) -> None:
        super()._load_state(c, state0)
        c.array("c", ((c.T + 1) * c.B, c.H))[:c.B] = state0[1]

    def _last_state(self, c: Cache) -> tuple:
        last = c.T * c.B
        return c.arrays["h"][last:].copy(), c.arrays["c"][last:].copy()

    def _make_views(self, a: dict, T: int, B: int, H: int) -> dict:
        G3, h3, c3, tc3 = (a["G"].reshape(T, B, 4 * H), a["h"].reshape(T + 1, B, H), a["c"].reshape(T + 1, B, H),
                           a["tc"].reshape(T, B, H))
        v = {"fwd": [(G3[s], h3[s], h3[s + 1], c3[s], c3[s + 1], tc3[s], G3[s][:, :H], G3[s][:, H:2 * H],
                      G3[s][:, 2 * H:3 * H], G3[s][:, 3 * H:]) for s in range(T)]}
        if "K" in a:
            K3, FQ4 = a["K"].reshape(T, B, H), a["FQ"].reshape(T, B, 4, H)
            v["factors"] = [(K3[s], FQ4[s], G3[s][:, 2 * H:3 * H]) for s in range(T)]
        if "carry" in a:
            dc3, da2, dcn3, ca3 = (a["dc"].reshape(T, B, H), a["da"].reshape(T, B, 4 * H), a["dcn"].reshape(T, B, H),
                                   a["carry"].reshape(T, B, H))
            v["grads"] = [(dc3[s], da2[s], da2[s].reshape(B, 4, H), dcn3[s], ca3[s]) for s in range(T)]
        return v

    def _recur(self, c: Cache) -> None:
        c.array("tc", (c.N, c.H))
        ig = c.array("ig", (c.B, c.H))
        tmp = c.array("tmp", (c.B, 4 * c.H))
        Wf = c.arrays["Wf"]
        for g, h_prev, h, c_prev, c_t, tc, o, i, f, gg in self._views(c)["fwd"]:
            np.matmul(h_prev, Wf, out=tmp)  # W_hh·h_{t−1} for the four gates
            np.add(g, tmp, out=g)  # + W_ih·x_t + b: −a for o, i, f and −2a for g
            np.exp(g, out=g)
            np.add(g, 1, out=g)
            np.reciprocal(g, out=g)  # o, i, f = σ(a); σ(2a) for g
            np.multiply(gg, 2, out=gg)
            np.subtract(gg, 1, out=gg)  # g = 2σ(2a) − 1 = tanh(a)
            np.multiply(f, c_prev, out=c_t)
            np.multiply(i, gg, out=ig)
            np.add(c_t, ig, out=c_t)  # lstm-5: c = f ⊙ c_{t−1} + i ⊙ g
            np.tanh(c_t, out=tc)
            np.multiply(o, tc, out=h)  # lstm-6

    def _factors(self, c: Cache) -> None:
        """FQ = [tanh(c)·σ'(o), g·σ'(i), c_{t−1}·σ'(f), i·(1 − g²)] (what δa_o takes from ∂E/∂h and δa_i, δa_f,
        δa_g from ∂E/∂c) and K = o·(1 − tanh²c) (∂h_t/∂c_t), for every step."""
        N, H = c.N, c.H
        G, tc, cprev = c.arrays["G"], c.arrays["tc"], c.arrays["c"][:N]
        o, i, g = G[:, :H], G[:, H:2 * H], G[:, 3 * H:]
        FQ = c.array("FQ", (N, 4 * H))
        S, F3 = G[:, :3 * H], FQ[:, :3 * H]
        np.subtract(1, S, out=F3)
        np.multiply(F3, S, out=F3)  # s(1 − s) of o, i, f
        np.multiply(FQ[:, :H], tc, out=FQ[:, :H])
        np.multiply(FQ[:, H:2 * H], g, out=FQ[:, H:2 * H])
        np.multiply(FQ[:, 2 * H:3 * H], cprev, out=FQ[:, 2 * H:3 * H])
        P = FQ[:, 3 * H:]
        np.multiply(g, g, out=P)
        np.subtract(1, P, out=P)
        np.multiply(P, i, out=P)
        K = c.array("K", (N, H))
        np.multiply(tc, tc, out=K)
        np.subtract(1, K, out=K)
        np.multiply(K, o, out=K)

    @staticmethod
    def _back_step(Wb, dh, K, fq, f, dc_next, dc, da, da3, dc_prev, carry) -> None:
        """One step back: ∂E/∂h_t ``dh`` (total) and f_{t+1}⊙∂E/∂c_{t+1} ``dc_next`` (None: 0) → ∂E/∂c_t ``dc``,
        δa ``da`` (B, 4H; ``da3`` its (B, 4, H) view), f_t⊙∂E/∂c_t ``dc_prev``, W_hhᵀ·δa ``carry``. ``K``,
        ``fq`` (B, 4, H) and ``f`` are the step's factors and forget gate; ``dc_prev`` may be ``dc_next``."""
        np.multiply(dh, K, out=dc)
        if dc_next is not None:
            np.add(dc, dc_next, out=dc)  # lstm-9
        np.multiply(dh, fq[:, 0], out=da3[:, 0])  # lstm-8, lstm-16: δa_o
        np.multiply(fq[:, 1:], dc[:, None, :], out=da3[:, 1:])  # lstm-10 … 15: δa_i, δa_f, δa_g
        np.multiply(dc, f, out=dc_prev)  # lstm-21
        np.matmul(da, Wb, out=carry)  # lstm-20

    def _back_loop(self, c: Cache, dh_top: np.ndarray):
        N, H, T = c.N, c.H, c.T
        for name, width in (("da", 4 * H), ("dc", H), ("dcn", H), ("carry", H)):
            c.array(name, (N, width))
        v, Wb = self._views(c), c.arrays["Wb"]
        factors, grads = v["factors"], v["grads"]
        dh3 = dh_top.reshape(T, c.B, H)
        dc_next = carry_next = None
        for s in range(T - 1, -1, -1):
            K, fq, f = factors[s]
            dc, da, da3, dcn, carry = grads[s]
            dh = dh3[s]
            if carry_next is not None:
                np.add(dh, carry_next, out=dh)  # lstm-7
            self._back_step(Wb, dh, K, fq, f, dc_next, dc, da, da3, dcn, carry)
            dc_next, carry_next = dcn, carry
        da = c.arrays["da"]
        return (carry_next.copy(), dc_next.copy()), da, da

    def _bias_grads(self, c: Cache, db_in, da_rec, grads: dict) -> None:
        self._unpermute(db_in, self._in_order, grads["b_ih"])
        np.copyto(grads["b_hh"], grads["b_ih"])  # lstm-19

    def _reach_work(self, c: Cache) -> dict:
        B, H = c.B, c.H
        z = lambda k=H: np.zeros((B, k), c.dtype)  # noqa: E731
        da = z(4 * H)
        return {"carried": [z(), z()], "dh": z(), "dc": z(), "da": da, "da3": da.reshape(B, 4, H), "dx": z(c.I)}

    def _reach_step(self, c: Cache, s: int, inject, work: dict):
        carry, dcn = work["carried"]
        dh = work["dh"]
        if inject is None:
            np.copyto(dh, carry)
        else:
            np.add(inject, carry, out=dh)
        K, fq, f = self._views(c)["factors"][s]
        self._back_step(c.arrays["Wb"], dh, K, fq, f, dcn, work["dc"], work["da"], work["da3"], dcn, carry)
        return (_sq(dh), _sq(work["dc"])), work["da"]

    def saturation(self, cache: Cache) -> tuple:
        H, G = cache.H, cache.arrays["G"]
        return (figures("i", "sigmoid", G[:, H:2 * H]), figures("f", "sigmoid", G[:, 2 * H:3 * H]),
                figures("g", "tanh", G[:, 3 * H:]), figures("o", "sigmoid", G[:, :H]),
                figures("tanh(c)", "tanh", cache.arrays["tc"]))

    # -- the reference, batch in columns --------------------------------------------------------------------------
    def reference_step(self, params: dict, x, state: tuple):
        W_ii, W_if, W_ig, W_io = blocks(params["w_ih"], 4)
        W_hi, W_hf, W_hg, W_ho = blocks(params["w_hh"], 4)
        b_ii, b_if, b_ig, b_io = (col(b) for b in blocks(params["b_ih"], 4))
        b_hi, b_hf, b_hg, b_ho = (col(b) for b in blocks(params["b_hh"], 4))
        h_prev, c_prev = state
        i = sigmoid(np.dot(W_ii, x) + b_ii + np.dot(W_hi, h_prev) + b_hi)  # lstm-1: input gate
        f = sigmoid(np.dot(W_if, x) + b_if + np.dot(W_hf, h_prev) + b_hf)  # lstm-2: forget gate
        g = np.tanh(np.dot(W_ig, x) + b_ig + np.dot(W_hg, h_prev) + b_hg)  # lstm-3: candidate
        o = sigmoid(np.dot(W_io, x) + b_io + np.dot(W_ho, h_prev) + b_ho)  # lstm-4: output gate
        c = f * c_prev + i * g  # lstm-5: the cell state
        tanh_c = np.tanh(c)
        h = o * tanh_c  # lstm-6
        return (h, c), {"x": x, "h_prev": h_prev, "c_prev": c_prev, "i": i, "f": f, "g": g, "o": o, "c": c,
                        "tanh_c": tanh_c, "h": h}

    def reference_bptt(self, params: dict, fwd: RefForward, dhs: list) -> RefBackward:
        w_ih, w_hh = params["w_ih"], params["w_hh"]
        dtype = np.result_type(w_ih, w_hh, fwd.steps[0]["h"], dhs[0])
        dw_ih, dw_hh = np.zeros(w_ih.shape, dtype), np.zeros(w_hh.shape, dtype)
        db = np.zeros(w_ih.shape[0], dtype)
        T = len(fwd.steps)
        dh_next = np.zeros_like(fwd.steps[0]["h"], dtype=dtype)
        dc_next = np.zeros_like(dh_next)
        steps, dxs = [None] * T, [None] * T
        for t in reversed(range(T)):
            x, h_prev, c_prev, i, f, g, o, tanh_c = (fwd.steps[t][k] for k in
                                                     ("x", "h_prev", "c_prev", "i", "f", "g", "o", "tanh_c"))
            dh = dhs[t] + dh_next  # lstm-7: from above, plus what step t+1 sent back
            do = dh * tanh_c  # lstm-8
            dc = dh * o * (1 - tanh_c * tanh_c) + dc_next  # lstm-9: through h_t, and along the cell state
            di = dc * g  # lstm-10
            df = dc * c_prev  # lstm-11
            dg = dc * i  # lstm-12
            da_i = di * i * (1 - i)  # lstm-13: back through σ
            da_f = df * f * (1 - f)  # lstm-14
            da_g = dg * (1 - g * g)  # lstm-15: back through tanh
            da_o = do * o * (1 - o)  # lstm-16
            da = np.concatenate([da_i, da_f, da_g, da_o])  # (4H, B), PyTorch's gate order
            dw_ih += np.dot(da, x.T)  # lstm-17
            dw_hh += np.dot(da, h_prev.T)  # lstm-18
            db += da.sum(axis=1)  # lstm-19: b_ih and b_hh alike
            dh_next = np.dot(w_hh.T, da)  # lstm-20: to h_{t−1}
            dc_next = dc * f  # lstm-21: to c_{t−1}, multiplied by f alone
            dxs[t] = np.dot(w_ih.T, da)  # lstm-22: to the layer below
            steps[t] = {"dh": dh, "do": do, "dc": dc, "di": di, "df": df, "dg": dg, "da": da, "dh_next": dh_next,
                        "dc_next": dc_next}
        grads = {"w_ih": dw_ih, "w_hh": dw_hh, "b_ih": db, "b_hh": db.copy()}
        return RefBackward(grads, (dh_next, dc_next), dxs, steps)
