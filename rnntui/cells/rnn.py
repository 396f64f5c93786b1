"""The lecture's vanilla tanh cell in the cell interface (:mod:`rnntui.cells.base`).

    h_t = tanh(u·x_t + w·h_{t−1} + b_h)                                   eq-8

BPTT, from ∂E/∂h_t from above (the output layer's vᵀ(ŷ_t − y_t), or the layer above):

    ∂E/∂h_t     = (from above) + wᵀ·dhraw_{t+1}                           (dhnext of the step after)
    dhraw_t     = (1 − h_t²) ⊙ ∂E/∂h_t                                    eq-7
    ∂E/∂u       = Σ_t dhraw_t·x_tᵀ                                        eq-9
    ∂E/∂w       = Σ_t dhraw_t·h_{t−1}ᵀ                                    eq-11
    ∂E/∂b_h     = Σ_t dhraw_t
    ∂E/∂h_{t−1} = wᵀ·dhraw_t                                              eq-13
    ∂E/∂x_t     = uᵀ·dhraw_t                                              (to the layer below)

The names and the equation numbers are the lecture's (``rnntui.lecture``). In PyTorch's ``nn.RNN``
(tanh) terms: weight_ih = u, weight_hh = w, bias_ih + bias_hh = b_h (one bias: the two are redundant).
Initialisation as ``CharRNN``'s: u and w drawn in that order from U(±1/√H) ("scaled") or N(0, 0.01²)
("lecture"), b_h = 0; so a vanilla model starts from the weights it started from before.
"""

from __future__ import annotations

import numpy as np

from .base import Cache, Cell, Equation, ParamSpec, RefBackward, RefForward, _sq, _transpose_scaled, col, figures


class RNN(Cell):
    """h_t = tanh(u·x_t + w·h_{t−1} + b_h): parameters u (H, I), w (H, H), bh (H,); state (h,)."""

    name = "rnn"
    gates = ("",)
    state_names = ("h",)
    w_ih, w_hh = "u", "w"
    equations = (
        Equation("eq-8", "hₜ = tanh(u·xₜ + w·hₜ₋₁ + b_h)"),
        Equation("dh", "∂E/∂hₜ = (from above) + wᵀ·dhrawₜ₊₁", "dh:"),
        Equation("eq-7", "dhrawₜ = (1 − hₜ²) ⊙ ∂E/∂hₜ"),
        Equation("b_h", "∂E/∂b_h = Σₜ dhrawₜ", "b_h:"),
        Equation("eq-9", "∂E/∂u = Σₜ dhrawₜ·xₜᵀ"),
        Equation("eq-11", "∂E/∂w = Σₜ dhrawₜ·hₜ₋₁ᵀ"),
        Equation("eq-13", "∂E/∂hₜ₋₁ = wᵀ·dhrawₜ"),
        Equation("dx", "∂E/∂xₜ = uᵀ·dhrawₜ", "dx:"),
    )

    def specs(self, input_size: int, hidden_size: int) -> tuple[ParamSpec, ...]:
        I, H = int(input_size), int(hidden_size)  # noqa: E741
        return (ParamSpec("u", (H, I), "weight", torch="weight_ih"),
                ParamSpec("w", (H, H), "weight", torch="weight_hh"),
                ParamSpec("bh", (H,), "zeros", torch="bias_ih"))

    def torch_tensors(self, params: dict) -> dict[str, np.ndarray]:
        out = super().torch_tensors(params)
        out["bias_hh"] = np.zeros_like(out["bias_ih"])
        return out

    def from_torch(self, tensors: dict) -> dict[str, np.ndarray]:
        out = super().from_torch(tensors)
        out["bh"] = out["bh"] + np.asarray(tensors["bias_hh"])
        return out

    # -- fast path: the gates buffer is h_1 … h_T itself ----------------------------------------------------------
    def _internal_bias(self, params: dict, c: Cache) -> np.ndarray:
        return params["bh"]

    def _gates_buffer(self, c: Cache) -> np.ndarray:
        return c.array("h", ((c.T + 1) * c.B, c.H))[c.B:]

    def _prepare(self, params: dict, c: Cache) -> None:
        """As :meth:`Cell._prepare`, with one block and no factors: plain copies (``Wf`` = wᵀ, ``Wb`` = w, the table
        uᵀ + b_h), a few calls fewer for the cell whose pass is the shortest."""
        I, H = c.I, c.H  # noqa: E741
        w, u = params["w"], params["u"]
        np.copyto(c.array("Wb", (H, H)), w)
        _transpose_scaled(w, None, c.array("Wf", (H, H)))
        if c.onehot:
            table = _transpose_scaled(u, None, c.array("table", (I, H)))
            np.add(table, params["bh"], out=table)
        else:
            _transpose_scaled(u, None, c.array("Wi", (I, H)))
            np.copyto(c.array("bi", (H,)), params["bh"])
            np.copyto(c.array("Wi_b", (H, I)), u)

    def _make_views(self, a: dict, T: int, B: int, H: int) -> dict:
        steps = lambda x, n=T: list(x.reshape(n, B, H))  # noqa: E731
        h = steps(a["h"], T + 1)
        v = {"fwd": list(zip(h[:-1], h[1:], strict=True))}  # (h_{t−1}, h_t)
        if "D" in a:
            v["factors"] = steps(a["D"])  # 1 − h_t²
        if "carry" in a:
            v["grads"] = list(zip(steps(a["da"]), steps(a["carry"]), strict=True))  # (dhraw_t, carry_t)
        return v

    def _recur(self, c: Cache) -> None:
        tmp = c.array("tmp", (c.B, c.H))
        Wf = c.arrays["Wf"]
        dot = np.dot  # (less call overhead than np.matmul)
        for h_prev, h in self._views(c)["fwd"]:  # h holds u·x_t + b_h
            dot(h_prev, Wf, out=tmp)  # w·h_{t−1}, in rows
            np.add(h, tmp, out=h)
            np.tanh(h, out=h)  # eq-8

    def _factors(self, c: Cache) -> None:
        hs = c.arrays["h"][c.B:]
        D = c.array("D", (c.N, c.H))
        np.multiply(hs, hs, out=D)
        np.subtract(1, D, out=D)  # eq-7: 1 − h_t²

    @staticmethod
    def _back_step(Wb, dh, D, da, carry) -> None:
        np.multiply(D, dh, out=da)  # eq-7: dhraw = (1 − h²) ⊙ ∂E/∂h
        np.dot(da, Wb, out=carry)  # eq-13: wᵀ·dhraw, to h_{t−1}

    def _back_loop(self, c: Cache, dh_top: np.ndarray):
        c.array("da", (c.N, c.H))
        c.array("carry", (c.N, c.H))
        v, Wb = self._views(c), c.arrays["Wb"]
        factors, grads = v["factors"], v["grads"]
        dh3 = dh_top.reshape(c.T, c.B, c.H)
        carry_next = None
        multiply, dot = np.multiply, np.dot
        for s in range(c.T - 1, -1, -1):  # _back_step, inline: the loop is most of the cell's backward
            dh = dh3[s]
            if carry_next is not None:
                np.add(dh, carry_next, out=dh)  # from above + what step t+1 sent back
            da, carry_next = grads[s]
            multiply(factors[s], dh, out=da)  # eq-7: dhraw = (1 − h²) ⊙ ∂E/∂h
            dot(da, Wb, out=carry_next)  # eq-13: wᵀ·dhraw, to h_{t−1}
        da = c.arrays["da"]
        return (carry_next.copy(),), da, da

    def _bias_grads(self, c: Cache, db_in, da_rec, grads: dict) -> None:
        np.copyto(grads["bh"], db_in)

    def _reach_work(self, c: Cache) -> dict:
        B = c.B
        return {"carried": [np.zeros((B, c.H), c.dtype)], "dh": np.empty((B, c.H), c.dtype),
                "da": np.empty((B, c.H), c.dtype), "dx": np.empty((B, c.I), c.dtype)}

    def _reach_step(self, c: Cache, s: int, inject, work: dict):
        (carry,), dh = work["carried"], work["dh"]
        if inject is None:
            np.copyto(dh, carry)
        else:
            np.add(inject, carry, out=dh)
        self._back_step(c.arrays["Wb"], dh, self._views(c)["factors"][s], work["da"], carry)
        return (_sq(dh),), work["da"]

    def saturation(self, cache: Cache) -> tuple:
        return (figures("h", "tanh", cache.arrays["h"][cache.B:]),)

    # -- the reference, batch in columns --------------------------------------------------------------------------
    def reference_step(self, params: dict, x, state: tuple):
        u, w, bh = params["u"], params["w"], params["bh"]
        (h_prev,) = state
        h = np.tanh(np.dot(u, x) + np.dot(w, h_prev) + col(bh))  # eq-8: u·x_t picks column x_t of u (one-hot)
        return (h,), {"x": x, "h_prev": h_prev, "h": h}

    def reference_bptt(self, params: dict, fwd: RefForward, dhs: list) -> RefBackward:
        u, w = params["u"], params["w"]
        dtype = np.result_type(u, w, fwd.steps[0]["h"], dhs[0])
        du, dw, dbh = np.zeros(u.shape, dtype), np.zeros(w.shape, dtype), np.zeros(u.shape[0], dtype)
        T = len(fwd.steps)
        dhnext = np.zeros_like(fwd.steps[0]["h"], dtype=dtype)
        steps, dxs = [None] * T, [None] * T
        for t in reversed(range(T)):
            x, h_prev, h = (fwd.steps[t][k] for k in ("x", "h_prev", "h"))
            dh = dhs[t] + dhnext  # dh: ∂E/∂h_t = from above + what step t+1 sent back
            dhraw = (1 - h * h) * dh  # eq-7: back through the tanh
            dbh += dhraw.sum(axis=1)  # b_h: Σ_t dhraw_t
            du += np.dot(dhraw, x.T)  # eq-9: dhraw·xᵀ
            dw += np.dot(dhraw, h_prev.T)  # eq-11: dhraw·h_{t−1}ᵀ
            dhnext = np.dot(w.T, dhraw)  # eq-13: wᵀ·dhraw goes to the step before
            dxs[t] = np.dot(u.T, dhraw)  # dx: uᵀ·dhraw goes to the layer below
            steps[t] = {"dh": dh, "dhraw": dhraw, "dhnext": dhnext}
        return RefBackward({"u": du, "w": dw, "bh": dbh}, (dhnext,), dxs, steps)
