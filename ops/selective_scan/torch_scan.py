"""The 'torch' selective scan: chunked scan in plain PyTorch, hand-written backward, any device.

The recurrence ``h_t = a_t * h_{t-1} + x_t`` (``a_t = exp(dt_t * A)``, ``x_t = dt_t * B_t * u_t``)
runs through the chunked scans of :mod:`.linear_recurrence` (no loop over L). Everything
accumulates in float32 (float64 for float64 inputs).

The backward recomputes the states (nothing but the inputs is saved) and runs the adjoint
recurrence ``g_t = a_{t+1} * g_{t+1} + C_t * dy_t`` with the same chunked scheme, using suffix
sums instead of prefix sums.

Memory: the channels are processed in blocks of about ``_BLOCK_BYTES`` per buffer, and all
intermediates live in a few scratch buffers allocated once per call and written in place
(``out=`` / ``op_``): on the CPU, fresh large allocations page-fault and cost more than the math.

Layout inside this module: rows = (batch * G) "groups" x (dim // G) channels x N states x L.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .linear_recurrence import MAX_LOG_RANGE, pick_chunk, rscan_, scan_

_BLOCK_BYTES = 1 << 20  # per scratch buffer (the block's buffers stay in the CPU caches)


def _chunk_limit(delta: Tensor, delta_bias: Tensor | None, A: Tensor, softplus: bool) -> int:
    """The longest chunk whose running log-decay sum |dt * A| stays within MAX_LOG_RANGE.

    Mamba-style models (d_state 16, A down to -16, dt up to 0.1..1) exceed the range with
    64-step chunks; shorter chunks keep the fast cumsum path instead of the doubling fallback.
    A NaN in delta, the bias or A gives the longest chunk: the scans then see the NaN and
    propagate it (through their fallback) as the reference does.
    """
    if delta.numel() == 0 or A.numel() == 0:
        return 128
    bias_max = float(delta_bias.abs().max()) if delta_bias is not None else 0.0
    if softplus:
        top = float(delta.max()) + bias_max
        dt_max = top if top > 20 else math.log1p(math.exp(top))
    else:
        dt_max = float(delta.abs().max()) + bias_max
    rate = dt_max * float(A.abs().max())
    if not rate > 0:  # zero, or NaN
        return 128
    return int(min(MAX_LOG_RANGE / rate, 128.0))


class _Plan:
    """Shapes, casts and block schedule shared by the forward and backward of one call."""

    def __init__(self, u, delta, A, B, C, D, z, delta_bias, delta_softplus):
        self.ct = ct = torch.float64 if u.dtype == torch.float64 else torch.float32
        b, dim, length = u.shape
        if B.dim() == 3:
            B, C = B.unsqueeze(1), C.unsqueeze(1)
        g, n = B.shape[1], B.shape[2]
        dg = dim // g
        self.b, self.dim, self.L, self.g, self.n, self.dg = b, dim, length, g, n, dg
        self.bg = bg = b * g
        self.chunk = pick_chunk(length, _chunk_limit(delta, delta_bias, A, delta_softplus))
        self.n_chunks = math.ceil(length / self.chunk) if length else 0
        self.lp = self.n_chunks * self.chunk
        self.softplus = delta_softplus
        self.u = u.contiguous().view(bg, dg, length)
        self.delta = delta.contiguous().view(bg, dg, length)
        self.z = z.contiguous().view(bg, dg, length) if z is not None else None
        self.B = B.contiguous().view(bg, 1, n, length)
        self.C = C.contiguous().view(bg, 1, n, length)

        def per_row(t):  # (G*dg, ...) parameter -> (b*G, dg, ...) rows, compute dtype
            if t is None:
                return None
            t = t.to(ct).view(g, dg, *t.shape[1:])
            return t.unsqueeze(0).expand(b, *t.shape).reshape(bg, dg, *t.shape[2:])

        self.A = per_row(A)  # (bg, dg, n)
        self.D = per_row(D)  # (bg, dg)
        self.bias = per_row(delta_bias)  # (bg, dg)
        # la = dt * A <= 0 everywhere lets the scans check their range on chunk ends only
        monotone = A.numel() == 0 or float(A.max()) <= 0
        if monotone and not delta_softplus and length > 0:
            lowest = float(delta.min()) + (float(delta_bias.min()) if delta_bias is not None else 0)
            monotone = lowest >= 0
        self.monotone = monotone

    def blocks(self):
        """(g0, g1, d0, d1) blocks of rows whose per-buffer footprint is ~_BLOCK_BYTES."""
        row_bytes = max(1, self.n * self.lp * (8 if self.ct == torch.float64 else 4))
        rows = max(1, _BLOCK_BYTES // row_bytes)
        if rows >= self.dg:
            k = rows // self.dg
            for g0 in range(0, self.bg, k):
                yield g0, min(g0 + k, self.bg), 0, self.dg
        else:
            rows = math.ceil(self.dg / math.ceil(self.dg / rows))  # equal-sized blocks
            for g0 in range(self.bg):
                for d0 in range(0, self.dg, rows):
                    yield g0, g0 + 1, d0, min(d0 + rows, self.dg)

    def max_rows(self) -> int:
        return max((g1 - g0) * (d1 - d0) for g0, g1, d0, d1 in self.blocks())

    def scratch(self, n_seq: int, n_state: int):
        """Scratch buffers for the biggest block: n_seq of (rows, L), n_state of (rows, N, Lp)."""
        rows = self.max_rows()
        kw = dict(dtype=self.ct, device=self.u.device)
        seq = [torch.empty(rows * self.L, **kw) for _ in range(n_seq)]
        st = [torch.empty(rows * self.n * self.lp, **kw) for _ in range(n_state)]
        return seq, st

    def dt_(self, blk, out: Tensor, tmp: Tensor) -> None:
        """out = softplus(delta + bias) for the block (in the compute dtype); tmp: scratch."""
        g0, g1, d0, d1 = blk
        delta = self.delta[g0:g1, d0:d1]
        if self.bias is not None:
            torch.add(delta, self.bias[g0:g1, d0:d1, None], out=out)
        else:
            out.copy_(delta)
        if self.softplus:
            # log(1 + exp(min(x, 20))), then max with x (= F.softplus with threshold 20)
            torch.clamp(out, max=20.0, out=tmp)
            tmp.exp_().add_(1.0).log_()
            torch.maximum(tmp, out, out=out)

    def states_(self, blk, dt: Tensor, s: Tensor, h: Tensor, dtu: Tensor) -> Tensor:
        """Fill dtu = dt*u, scan into h (rows, N, Lp); returns the (rows, N, L) view of h."""
        g0, g1, d0, d1 = blk
        ng, nd, n, length = g1 - g0, d1 - d0, self.n, self.L
        s = s.view(ng, nd, n, self.lp)
        h = h.view(ng, nd, n, self.lp)
        torch.mul(dt.unsqueeze(2), self.A[g0:g1, d0:d1, :, None], out=s[..., :length])
        torch.mul(dt, self.u[g0:g1, d0:d1], out=dtu)
        torch.mul(dtu.unsqueeze(2), self.B[g0:g1], out=h[..., :length])
        if self.lp > length:
            s[..., length:] = 0
            h[..., length:] = 0
        view = (ng * nd * n, self.n_chunks, self.chunk)
        scan_(s.view(view), h.view(view), self.monotone)
        return h[..., :length]

    def seq(self, buf: Tensor, blk) -> Tensor:
        g0, g1, d0, d1 = blk
        return buf[: (g1 - g0) * (d1 - d0) * self.L].view(g1 - g0, d1 - d0, self.L)

    def state(self, buf: Tensor, blk) -> Tensor:
        g0, g1, d0, d1 = blk
        return buf[: (g1 - g0) * (d1 - d0) * self.n * self.lp]


def _contract_c(h: Tensor, C: Tensor, out: Tensor) -> None:
    """out (rows..., L) = sum_n C * h; h (ng, nd, N, L) is destroyed when N > 1."""
    if h.shape[2] == 1:
        torch.mul(h[:, :, 0], C[:, :, 0], out=out)
    else:
        torch.sum(h.mul_(C), 2, out=out)


@torch.no_grad()
def selective_scan_fwd(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
    """Forward pass; shapes as in :func:`vmamba_ops.selective_scan`.

    Returns:
        y (batch, dim, L) in u's dtype and last_state (batch, dim, N) in float32
        (float64 for float64 inputs).
    """
    p = _Plan(u, delta, A, B, C, D, z, delta_bias, delta_softplus)
    ct, length = p.ct, p.L
    last = torch.zeros(p.bg, p.dg, p.n, dtype=ct, device=u.device)
    if length == 0:
        return u.new_empty(u.shape), last.view(p.b, p.dim, p.n)
    y = torch.empty(p.bg, p.dg, length, dtype=ct, device=u.device)
    (dt_buf, tmp_buf), (s_buf, h_buf) = p.scratch(2, 2)
    for blk in p.blocks():
        g0, g1, d0, d1 = blk
        dt, tmp = p.seq(dt_buf, blk), p.seq(tmp_buf, blk)
        p.dt_(blk, dt, tmp)
        h = p.states_(blk, dt, p.state(s_buf, blk), p.state(h_buf, blk), tmp)
        last[g0:g1, d0:d1] = h[..., -1]
        yb = y[g0:g1, d0:d1]
        _contract_c(h, p.C[g0:g1], yb)
        ub = p.u[g0:g1, d0:d1]
        if p.D is not None:
            yb.addcmul_(p.D[g0:g1, d0:d1, None], ub)
        if p.z is not None:
            zb = p.z[g0:g1, d0:d1]
            torch.sigmoid(zb, out=tmp)
            yb.mul_(tmp.mul_(zb))
    return y.view(u.shape).to(u.dtype), last.view(p.b, p.dim, p.n)


@torch.no_grad()
def selective_scan_bwd(u, delta, A, B, C, D, z, delta_bias, delta_softplus, dy, dlast=None):
    """Backward pass (states recomputed from the inputs).

    Args:
        dy: (batch, dim, L) gradient of y.
        dlast: optional (batch, dim, N) gradient of the last state.

    Returns:
        (du, ddelta, dA, dB, dC, dD, dz, ddelta_bias), each in its input's dtype and shape
        (None for inputs that were None).
    """
    p = _Plan(u, delta, A, B, C, D, z, delta_bias, delta_softplus)
    ct, length, n, bg, dg = p.ct, p.L, p.n, p.bg, p.dg
    kw = dict(dtype=ct, device=u.device)
    du = torch.zeros(bg, dg, length, **kw)
    ddt_all = torch.zeros(bg, dg, length, **kw)
    dz = torch.zeros(bg, dg, length, **kw) if z is not None else None
    dA = torch.zeros(bg, dg, n, **kw)
    dB = torch.zeros(bg, n, length, **kw)
    dC = torch.zeros(bg, n, length, **kw)
    dD = torch.zeros(bg, dg, **kw)
    dbias = torch.zeros(bg, dg, **kw)
    if length > 0:
        dy = dy.contiguous().view(bg, dg, length)
        dlast = dlast.to(ct).view(bg, dg, n) if dlast is not None else None
        seqs, states = p.scratch(4, 4)
        for blk in p.blocks():
            _bwd_block(p, blk, dy, dlast, seqs, states, du, ddt_all, dz, dA, dB, dC, dD, dbias)

    def fold(t, like):  # (b*G, dg, ...) per-row parameter grads -> (G*dg, ...), summed over b
        if like is None:
            return None
        return t.view(p.b, p.g * dg, *t.shape[2:]).sum(0).to(like.dtype)

    return (
        du.view(u.shape).to(u.dtype),
        ddt_all.view(u.shape).to(delta.dtype),
        fold(dA, A),
        dB.view(B.shape).to(B.dtype),
        dC.view(C.shape).to(C.dtype),
        fold(dD, D),
        dz.view(u.shape).to(z.dtype) if z is not None else None,
        fold(dbias, delta_bias),
    )


def _bwd_block(p, blk, dy, dlast, seqs, states, du, ddt_all, dz, dA, dB, dC, dD, dbias):
    """Gradients of one block of rows; writes into the preallocated outputs."""
    g0, g1, d0, d1 = blk
    ng, nd, n, length, lp = g1 - g0, d1 - d0, p.n, p.L, p.lp
    dt, dtu, w1, w2 = (p.seq(buf, blk) for buf in seqs)
    s, h, e, tmp = (p.state(buf, blk) for buf in states)
    ub, Ab, Bb, Cb = p.u[g0:g1, d0:d1], p.A[g0:g1, d0:d1], p.B[g0:g1], p.C[g0:g1]
    p.dt_(blk, dt, w1)
    hv = p.states_(blk, dt, s, h, dtu)  # (ng, nd, n, L)

    # gradient reaching y before the gate: dyz = dy * silu(z)
    dyb = dy[g0:g1, d0:d1]
    if p.z is not None:
        zb = p.z[g0:g1, d0:d1]
        y0 = w2
        _contract_c(hv.clone() if n > 1 else hv, Cb, y0)
        if p.D is not None:
            y0.addcmul_(p.D[g0:g1, d0:d1, None], ub)
        torch.sigmoid(zb, out=w1)
        # dz = dy * y0 * silu'(z), silu'(z) = s * (1 + z * (1 - s))
        dzb = dz[g0:g1, d0:d1]
        torch.mul(dyb, y0, out=dzb)
        torch.sub(1.0, w1, out=y0)
        dzb.mul_(y0.mul_(zb).add_(1.0).mul_(w1))
        dyz = w1.mul_(zb).mul_(dyb)  # dy * silu(z)
    else:
        dyz = dyb

    # adjoint states g: e_t = C_t dy_t (+ dlast at the end), decays shifted by one step
    s4 = s.view(ng, nd, n, lp)
    e4 = e.view(ng, nd, n, lp)
    torch.mul(dt[..., 1:].unsqueeze(2), Ab[..., None], out=s4[..., : length - 1])
    s4[..., length - 1 :] = 0
    torch.mul(dyz.unsqueeze(2), Cb, out=e4[..., :length])
    if lp > length:
        e4[..., length:] = 0
    if dlast is not None:
        e4[..., length - 1] += dlast[g0:g1, d0:d1]
    view = (ng * nd * n, p.n_chunks, p.chunk)
    rscan_(s.view(view), e.view(view), tmp.view(view), p.monotone)
    gv = e4[..., :length]
    t4 = tmp.view(ng, nd, n, lp)[..., :length]

    # dC = sum over the group's channels of dy * h
    torch.mul(hv, dyz.unsqueeze(2), out=t4)
    dC[g0:g1] += t4.sum(1)
    # dL/dlog_a_t = g_t a_t h_{t-1} = g_t (h_t - x_t)
    torch.mul(dtu.unsqueeze(2), Bb, out=t4)
    gh = hv.sub_(t4).mul_(gv)
    torch.mul(gh, dt.unsqueeze(2), out=t4)
    dA[g0:g1, d0:d1] = t4.sum(-1)
    # dB = sum over channels of g * dt * u
    torch.mul(gv, dtu.unsqueeze(2), out=t4)
    dB[g0:g1] += t4.sum(1)
    gv.mul_(Bb)  # dL/d(dt*u) per state
    ddt = ddt_all[g0:g1, d0:d1]
    if n == 1:
        torch.mul(gh[:, :, 0], Ab, out=ddt)
        ddtu = gv[:, :, 0]
    else:
        torch.sum(gh.mul_(Ab[..., None]), 2, out=ddt)
        ddtu = w2
        torch.sum(gv, 2, out=ddtu)
    ddt.addcmul_(ddtu, ub)
    dub = du[g0:g1, d0:d1]
    torch.mul(ddtu, dt, out=dub)
    if p.D is not None:
        dub.addcmul_(dyz, p.D[g0:g1, d0:d1, None])
        dD[g0:g1, d0:d1] = (dyz * ub).sum(-1)
    if p.softplus:
        # d softplus(x)/dx = sigmoid(x), x = delta + bias
        x = w1
        if p.bias is not None:
            torch.add(p.delta[g0:g1, d0:d1], p.bias[g0:g1, d0:d1, None], out=x)
        else:
            x.copy_(p.delta[g0:g1, d0:d1])
        ddt.mul_(x.sigmoid_())
    if p.bias is not None:
        dbias[g0:g1, d0:d1] = ddt.sum(-1)
