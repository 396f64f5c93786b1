"""The GRU cell, PyTorch's ``nn.GRU`` formulation: the reset gate acts after the recurrent product.

    r_t  = σ(W_ir·x_t + b_ir + W_hr·h_{t−1} + b_hr)                       gru-1  reset gate
    z_t  = σ(W_iz·x_t + b_iz + W_hz·h_{t−1} + b_hz)                       gru-2  update gate
    hn_t = W_hn·h_{t−1} + b_hn                                            gru-3  (the recurrent part of n)
    n_t  = tanh(W_in·x_t + b_in + r_t ⊙ hn_t)                             gru-4  candidate
    h_t  = (1 − z_t) ⊙ n_t + z_t ⊙ h_{t−1}                                gru-5

Parameters as PyTorch's: w_ih = [W_ir; W_iz; W_in] (3H, I), w_hh = [W_hr; W_hz; W_hn] (3H, H),
b_ih = [b_ir; b_iz; b_in], b_hh = [b_hr; b_hz; b_hn] (3H,); state (h,). Initialisation U(±1/√H)
for all (PyTorch's). b_hn is not redundant with b_in: it is multiplied by the reset gate.

BPTT, with δa the gradient of a pre-activation and ∂E/∂h_t from above given:

    ∂E/∂h_t     = (from above) + W_hhᵀ·δr_{t+1} + ∂E/∂h_{t+1} ⊙ z_{t+1}     gru-6
    ∂E/∂n_t     = ∂E/∂h_t ⊙ (1 − z_t)                                     gru-7
    ∂E/∂z_t     = ∂E/∂h_t ⊙ (h_{t−1} − n_t)                               gru-8
    δa_n        = ∂E/∂n_t ⊙ (1 − n_t²)                                    gru-9
    ∂E/∂hn_t    = δa_n ⊙ r_t                                              gru-10
    ∂E/∂r_t     = δa_n ⊙ hn_t                                             gru-11
    δa_r        = ∂E/∂r_t ⊙ r_t(1 − r_t),  δa_z = ∂E/∂z_t ⊙ z_t(1 − z_t)  gru-12, gru-13
    ∂E/∂w_ih    = Σ_t [δa_r; δa_z; δa_n]·x_tᵀ                             gru-14
    ∂E/∂w_hh    = Σ_t [δa_r; δa_z; ∂E/∂hn]·h_{t−1}ᵀ   (= Σ_t δr_t·h_{t−1}ᵀ) gru-15
    ∂E/∂b_ih    = Σ_t [δa_r; δa_z; δa_n],  ∂E/∂b_hh = Σ_t δr_t             gru-16, gru-17
    ∂E/∂h_{t−1} = W_hhᵀ·δr_t + ∂E/∂h_t ⊙ z_t                              gru-18
    ∂E/∂x_t     = W_ihᵀ·[δa_r; δa_z; δa_n]                                gru-19  (to the layer below)

The direct path ∂E/∂h_t ⊙ z_t (gru-18) is the GRU's cell-state path: with z ≈ 1 the gradient passes
back unchanged.

Fast path: gate blocks in the order (z, r, n) forward. Going back, one (T·B, 4H) array holds
[δa_n, δa_z, δa_r, ∂E/∂hn] per row: its first three blocks are the input side (order n, z, r), its
last three the recurrent side (order z, r, n), so both are contiguous column ranges.
"""

from __future__ import annotations

import numpy as np

from .base import Cache, Cell, Equation, ParamSpec, RefBackward, RefForward, _sq, blocks, col, figures, sigmoid


class GRU(Cell):
    """PyTorch's nn.GRU cell."""

    name = "gru"
    gates = ("r", "z", "n")
    state_names = ("h",)
    order = (1, 0, 2)  # internal (z, r, n)
    back_in_order = (2, 1, 0)  # the input-side δa in the backward: (n, z, r)
    scales = (-1.0, -1.0, 1.0)
    equations = (
        Equation("gru-1", "rₜ = σ(W_ir·xₜ + b_ir + W_hr·hₜ₋₁ + b_hr)"),
        Equation("gru-2", "zₜ = σ(W_iz·xₜ + b_iz + W_hz·hₜ₋₁ + b_hz)"),
        Equation("gru-3", "hnₜ = W_hn·hₜ₋₁ + b_hn"),
        Equation("gru-4", "nₜ = tanh(W_in·xₜ + b_in + rₜ ⊙ hnₜ)"),
        Equation("gru-5", "hₜ = (1 − zₜ) ⊙ nₜ + zₜ ⊙ hₜ₋₁"),
        Equation("gru-6", "∂E/∂hₜ = (from above) + W_hhᵀ·δrₜ₊₁ + ∂E/∂hₜ₊₁ ⊙ zₜ₊₁"),
        Equation("gru-7", "∂E/∂nₜ = ∂E/∂hₜ ⊙ (1 − zₜ)"),
        Equation("gru-8", "∂E/∂zₜ = ∂E/∂hₜ ⊙ (hₜ₋₁ − nₜ)"),
        Equation("gru-9", "δa_n = ∂E/∂nₜ ⊙ (1 − nₜ²)"),
        Equation("gru-10", "∂E/∂hnₜ = δa_n ⊙ rₜ"),
        Equation("gru-11", "∂E/∂rₜ = δa_n ⊙ hnₜ"),
        Equation("gru-12", "δa_r = ∂E/∂rₜ ⊙ rₜ(1 − rₜ)"),
        Equation("gru-13", "δa_z = ∂E/∂zₜ ⊙ zₜ(1 − zₜ)"),
        Equation("gru-14", "∂E/∂W_ih = Σₜ [δa_r; δa_z; δa_n]·xₜᵀ"),
        Equation("gru-15", "∂E/∂W_hh = Σₜ [δa_r; δa_z; ∂E/∂hnₜ]·hₜ₋₁ᵀ"),
        Equation("gru-16", "∂E/∂b_ih = Σₜ [δa_r; δa_z; δa_n]"),
        Equation("gru-17", "∂E/∂b_hh = Σₜ [δa_r; δa_z; ∂E/∂hnₜ]"),
        Equation("gru-18", "∂E/∂hₜ₋₁ = W_hhᵀ·[δa_r; δa_z; ∂E/∂hnₜ] + ∂E/∂hₜ ⊙ zₜ"),
        Equation("gru-19", "∂E/∂xₜ = W_ihᵀ·[δa_r; δa_z; δa_n]"),
    )

    def specs(self, input_size: int, hidden_size: int) -> tuple[ParamSpec, ...]:
        I, H = int(input_size), int(hidden_size)  # noqa: E741
        return (ParamSpec("w_ih", (3 * H, I), "weight", self.gates, "weight_ih"),
                ParamSpec("w_hh", (3 * H, H), "weight", self.gates, "weight_hh"),
                ParamSpec("b_ih", (3 * H,), "bias", self.gates, "bias_ih"),
                ParamSpec("b_hh", (3 * H,), "bias", self.gates, "bias_hh"))

    # -- fast path ---------------------------------------------------------------------------------------------------
    def _internal_bias(self, params: dict, c: Cache) -> np.ndarray:
        """b_ih, plus b_hr and b_hz (b_hn stays inside, under the reset gate), internal order, times ``scales``."""
        H = c.H
        b = c.array("bsum", (3 * H,))
        np.copyto(b, params["b_ih"])
        b[:2 * H] += params["b_hh"][:2 * H]
        bias = np.take(b, c.arrays["perm"], out=c.array("bias", (3 * H,)))
        np.copyto(c.array("bhn", (H,)), params["b_hh"][2 * H:])
        return np.multiply(bias, c.arrays["scale"], out=bias)

    def _make_views(self, a: dict, T: int, B: int, H: int) -> dict:
        G3, h3, hh3 = a["G"].reshape(T, B, 3 * H), a["h"].reshape(T + 1, B, H), a["hh"].reshape(T, B, 3 * H)
        v = {"fwd": [(h3[s], h3[s + 1], G3[s][:, :2 * H], G3[s][:, :H], G3[s][:, H:2 * H], G3[s][:, 2 * H:], hh3[s],
                      hh3[s][:, :2 * H], hh3[s][:, 2 * H:]) for s in range(T)]}
        if "FZ" in a:
            FZ4, CR4 = a["FZ"].reshape(T, B, 2, H), a["CR"].reshape(T, B, 2, H)
            v["factors"] = [(FZ4[s], CR4[s], G3[s][:, :H]) for s in range(T)]
        if "carry" in a:
            D2, ca3 = a["D"].reshape(T, B, 4 * H), a["carry"].reshape(T, B, H)
            v["grads"] = [self._d_views(D2[s]) + (ca3[s],) for s in range(T)]
        return v

    @staticmethod
    def _d_views(D: np.ndarray) -> tuple:
        """A step's (B, 4H) [δa_n, δa_z, δa_r, ∂E/∂hn]: its (δa_n, δa_z) and (δa_r, ∂E/∂hn) pairs as (B, 2, H), δa_n
        as (B, 1, H) and the recurrent side [δa_z, δa_r, ∂E/∂hn] (B, 3H)."""
        D4 = D.reshape(D.shape[0], 4, -1)
        return D4[:, :2], D4[:, 2:], D4[:, :1], D[:, D4.shape[2]:]

    def _recur(self, c: Cache) -> None:
        c.array("hh", (c.N, 3 * c.H))
        tmp = c.array("tmp", (c.B, c.H))
        Wf, bhn = c.arrays["Wf"], c.arrays["bhn"]
        for h_prev, h, zr, z, r, n, q, q_zr, hn in self._views(c)["fwd"]:
            np.matmul(h_prev, Wf, out=q)  # W_hh·h_{t−1} for the three gates (−1 × for z and r)
            np.add(zr, q_zr, out=zr)  # + W_ih·x_t + biases: −a for z and r
            np.exp(zr, out=zr)
            np.add(zr, 1, out=zr)
            np.reciprocal(zr, out=zr)  # z, r = σ(a)
            np.add(hn, bhn, out=hn)  # gru-3
            np.multiply(r, hn, out=tmp)
            np.add(n, tmp, out=n)
            np.tanh(n, out=n)  # gru-4
            np.subtract(h_prev, n, out=h)
            np.multiply(h, z, out=h)
            np.add(h, n, out=h)  # gru-5: h = n + z ⊙ (h_{t−1} − n)

    def _factors(self, c: Cache) -> None:
        """FZ = [(1 − z)(1 − n²), (h_{t−1} − n)·z(1 − z)] (δa_n and δa_z from ∂E/∂h) and CR = [hn·r(1 − r), r]
        (δa_r and ∂E/∂hn from δa_n), for every step."""
        N, H = c.N, c.H
        G, hn, hprev = c.arrays["G"], c.arrays["hh"][:, 2 * H:], c.arrays["h"][:N]
        z, r, n = G[:, :H], G[:, H:2 * H], G[:, 2 * H:]
        FZ, CR = c.array("FZ", (N, 2 * H)), c.array("CR", (N, 2 * H))
        A, Bz, Cr = FZ[:, :H], FZ[:, H:], CR[:, :H]
        omz = np.subtract(1, z, out=CR[:, H:])  # 1 − z, for now
        np.multiply(n, n, out=A)
        np.subtract(1, A, out=A)
        np.multiply(A, omz, out=A)
        np.subtract(hprev, n, out=Bz)
        np.multiply(Bz, z, out=Bz)
        np.multiply(Bz, omz, out=Bz)
        np.subtract(1, r, out=Cr)
        np.multiply(Cr, r, out=Cr)
        np.multiply(Cr, hn, out=Cr)
        np.copyto(CR[:, H:], r)

    @staticmethod
    def _back_step(Wb, dh, FZ, CR, z, D_nz, D_rh, D_n, D_rec, carry, tmp) -> None:
        """One step back from ∂E/∂h_t ``dh`` (total) into the step's [δa_n, δa_z, δa_r, ∂E/∂hn] (through its views
        ``D_nz``, ``D_rh``, ``D_n``, ``D_rec``, see _d_views) and ``carry`` = ∂E/∂h_{t−1} (gru-18). ``FZ``, ``CR``
        (B, 2, H) and ``z`` are the step's factors and update gate."""
        np.multiply(FZ, dh[:, None, :], out=D_nz)  # gru-7, 9 and gru-8, 13: δa_n, δa_z
        np.multiply(CR, D_n, out=D_rh)  # gru-10 … 12: δa_r, ∂E/∂hn
        np.matmul(D_rec, Wb, out=carry)  # W_hhᵀ·[δa_z, δa_r, ∂E/∂hn]
        np.multiply(dh, z, out=tmp)
        np.add(carry, tmp, out=carry)  # gru-18: + ∂E/∂h_t ⊙ z_t

    def _back_loop(self, c: Cache, dh_top: np.ndarray):
        N, H, T = c.N, c.H, c.T
        c.array("D", (N, 4 * H))
        c.array("carry", (N, H))
        tmp = c.array("tmp", (c.B, H))
        v, Wb = self._views(c), c.arrays["Wb"]
        factors, grads = v["factors"], v["grads"]
        dh3 = dh_top.reshape(T, c.B, H)
        carry_next = None
        for s in range(T - 1, -1, -1):
            dh = dh3[s]
            if carry_next is not None:
                np.add(dh, carry_next, out=dh)  # gru-6
            carry_next = grads[s][-1]
            self._back_step(Wb, dh, *factors[s], *grads[s], tmp)
        D = c.arrays["D"]
        return (carry_next.copy(),), D[:, :3 * H], D[:, H:]

    def _bias_grads(self, c: Cache, db_in, da_rec, grads: dict) -> None:
        self._unpermute(db_in, self._in_order, grads["b_ih"])  # gru-16
        self._unpermute(da_rec.sum(axis=0), self.order, grads["b_hh"])  # gru-17

    def _reach_work(self, c: Cache) -> dict:
        B, H = c.B, c.H
        z = lambda k=H: np.zeros((B, k), c.dtype)  # noqa: E731
        return {"carried": [z()], "dh": z(), "D": z(4 * H), "tmp": z(), "dx": z(c.I)}

    def _reach_step(self, c: Cache, s: int, inject, work: dict):
        (carry,), dh, D = work["carried"], work["dh"], work["D"]
        if inject is None:
            np.copyto(dh, carry)
        else:
            np.add(inject, carry, out=dh)
        self._back_step(c.arrays["Wb"], dh, *self._views(c)["factors"][s], *self._d_views(D), carry, work["tmp"])
        return (_sq(dh),), D[:, :3 * c.H]

    def saturation(self, cache: Cache) -> tuple:
        H, G = cache.H, cache.arrays["G"]
        return (figures("r", "sigmoid", G[:, H:2 * H]), figures("z", "sigmoid", G[:, :H]),
                figures("n", "tanh", G[:, 2 * H:]))

    # -- the reference, batch in columns --------------------------------------------------------------------------
    def reference_step(self, params: dict, x, state: tuple):
        W_ir, W_iz, W_in = blocks(params["w_ih"], 3)
        W_hr, W_hz, W_hn = blocks(params["w_hh"], 3)
        b_ir, b_iz, b_in = (col(b) for b in blocks(params["b_ih"], 3))
        b_hr, b_hz, b_hn = (col(b) for b in blocks(params["b_hh"], 3))
        (h_prev,) = state
        r = sigmoid(np.dot(W_ir, x) + b_ir + np.dot(W_hr, h_prev) + b_hr)  # gru-1: reset gate
        z = sigmoid(np.dot(W_iz, x) + b_iz + np.dot(W_hz, h_prev) + b_hz)  # gru-2: update gate
        hn = np.dot(W_hn, h_prev) + b_hn  # gru-3: the recurrent part of the candidate
        n = np.tanh(np.dot(W_in, x) + b_in + r * hn)  # gru-4: candidate, reset after the product
        h = (1 - z) * n + z * h_prev  # gru-5
        return (h,), {"x": x, "h_prev": h_prev, "r": r, "z": z, "hn": hn, "n": n, "h": h}

    def reference_bptt(self, params: dict, fwd: RefForward, dhs: list) -> RefBackward:
        w_ih, w_hh = params["w_ih"], params["w_hh"]
        dtype = np.result_type(w_ih, w_hh, fwd.steps[0]["h"], dhs[0])
        dw_ih, dw_hh = np.zeros(w_ih.shape, dtype), np.zeros(w_hh.shape, dtype)
        db_ih, db_hh = np.zeros(w_ih.shape[0], dtype), np.zeros(w_hh.shape[0], dtype)
        T = len(fwd.steps)
        dh_next = np.zeros_like(fwd.steps[0]["h"], dtype=dtype)
        steps, dxs = [None] * T, [None] * T
        for t in reversed(range(T)):
            x, h_prev, r, z, hn, n = (fwd.steps[t][k] for k in ("x", "h_prev", "r", "z", "hn", "n"))
            dh = dhs[t] + dh_next  # gru-6: from above, plus what step t+1 sent back
            dn = dh * (1 - z)  # gru-7
            dz = dh * (h_prev - n)  # gru-8
            da_n = dn * (1 - n * n)  # gru-9: back through tanh
            dhn = da_n * r  # gru-10
            dr = da_n * hn  # gru-11
            da_r = dr * r * (1 - r)  # gru-12: back through σ
            da_z = dz * z * (1 - z)  # gru-13
            da_i = np.concatenate([da_r, da_z, da_n])  # the input side's pre-activations (3H, B)
            da_h = np.concatenate([da_r, da_z, dhn])  # the recurrent side's
            dw_ih += np.dot(da_i, x.T)  # gru-14
            dw_hh += np.dot(da_h, h_prev.T)  # gru-15
            db_ih += da_i.sum(axis=1)  # gru-16
            db_hh += da_h.sum(axis=1)  # gru-17
            dh_next = np.dot(w_hh.T, da_h) + dh * z  # gru-18: through the gates, and directly
            dxs[t] = np.dot(w_ih.T, da_i)  # gru-19: to the layer below
            steps[t] = {"dh": dh, "dn": dn, "dz": dz, "da_n": da_n, "dhn": dhn, "dr": dr, "da_r": da_r,
                        "da_z": da_z, "dh_next": dh_next}
        grads = {"w_ih": dw_ih, "w_hh": dw_hh, "b_ih": db_ih, "b_hh": db_hh}
        return RefBackward(grads, (dh_next,), dxs, steps)
