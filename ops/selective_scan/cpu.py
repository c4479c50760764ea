"""Fast selective scan in plain PyTorch: chunked scan, hand-written backward, no loop over L.

The recurrence ``h_t = a_t * h_{t-1} + x_t`` (``a_t = exp(dt_t * A)``, ``x_t = dt_t * B_t * u_t``)
is evaluated in chunks of T steps. Inside a chunk, with ``S_t`` the running sum of the
log-decays ``dt * A`` since the chunk start,

    h_t = exp(S_t) * (h_start + sum_{s <= t} exp(-S_s) * x_s),

i.e. a cumsum, an exp and a second cumsum over the whole block at once. The chunk start states
``h_start`` follow a short recurrence over the L/T chunks, solved by a log-depth doubling scan.
``exp(-S)`` must not overflow: when some chunk has ``|S| > _MAX_LOG_RANGE`` (huge ``dt * |A|``)
the block falls back to a doubling scan over the full length, which only multiplies decays and
is stable for any input (slower: log2(L) passes). Everything accumulates in float32 (float64
for float64 inputs).

The backward recomputes the states (nothing but the inputs is saved) and runs the adjoint
recurrence ``g_t = a_{t+1} * g_{t+1} + C_t * dy_t`` with the same chunked scheme, using suffix
sums instead of prefix sums.

Speed: the channels are processed in blocks of about ``_BLOCK_BYTES`` per buffer, all
intermediates live in a few scratch buffers allocated once per call and written in place
(``out=`` / ``op_``). On CPU, fresh large allocations page-fault and cost more than the math.

Layout inside this module: rows = (batch * G) "groups" x (dim // G) channels x N states x L.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

_MAX_LOG_RANGE = 60.0  # exp(60) * |x| * T stays far from the float32 maximum (3.4e38)
_MAX_LOG_RANGE_64 = 600.0  # the same bound for the float64 carry across chunks
_BLOCK_BYTES = 1 << 20  # per scratch buffer; measured best of 256K..16M on a 2-core Xeon


def _pick_chunk(length: int, limit: int = 128) -> int:
    """A chunk length <= ``limit`` that divides L when possible (no padding), else a power of 2."""
    limit = max(8, min(limit, 128))
    if length <= limit:
        return max(length, 1)
    for t in (64, 56, 49, 48, 72, 80, 96, 112, 128, 40, 32, 28, 24, 16, 14, 12, 8):
        if t <= limit and length % t == 0:
            return t
    return 1 << (limit.bit_length() - 1)


def _chunk_limit(delta: Tensor, delta_bias: Tensor | None, A: Tensor, softplus: bool) -> int:
    """The longest chunk whose running log-decay sum |dt * A| stays within _MAX_LOG_RANGE.

    Mamba-style models (d_state 16, A down to -16, dt up to 0.1..1) exceed the range with
    64-step chunks; shorter chunks keep the fast cumsum path instead of the doubling fallback.
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
    return 128 if rate <= 0 else int(_MAX_LOG_RANGE / rate)


def _doubling_scan(a: Tensor, x: Tensor) -> Tensor:
    """Inclusive scan h_t = a_t h_{t-1} + x_t (h_{-1} = 0) along the last axis, log2(L) passes.

    Only products of decays and weighted sums appear, so it is stable for any input.
    """
    a = a.clone()
    h = x.clone()
    n = h.shape[-1]
    k = 1
    while k < n:
        h_new = h.clone()
        h_new[..., k:].addcmul_(a[..., k:], h[..., :-k])
        if 2 * k < n:
            a_new = a.clone()
            a_new[..., k:].mul_(a[..., :-k])
            a = a_new
        h = h_new
        k *= 2
    return h


def _chunk_carry(log_dec: Tensor, x: Tensor) -> Tensor:
    """H_c = exp(log_dec_c) * H_{c-1} + x_c (H_{-1} = 0) over the chunk axis, (M, n_chunks).

    Same cumsum trick as inside a chunk, in float64 (exp is safe up to ~700): a dozen small ops
    instead of the 4 * log2(n_chunks) of the doubling scan, which remains the fallback.
    """
    s = log_dec.double().cumsum(-1)
    lo, hi = torch.aminmax(s)
    if not (float(lo) >= -_MAX_LOG_RANGE_64 and float(hi) <= _MAX_LOG_RANGE_64):
        return _doubling_scan(log_dec.exp(), x)
    acc = torch.exp(-s).mul_(x).cumsum_(-1)
    return acc.mul_(s.exp_()).to(x.dtype)


def _range_ok(s: Tensor, monotone: bool, first: bool) -> bool:
    """Whether exp(+-s) is safe; s are within-chunk running log-decay sums (M, n_chunks, T)."""
    if s.numel() == 0:
        return True
    if monotone:  # s <= 0 and monotone inside each chunk: its extreme sits at one end
        return float(s[..., 0 if first else -1].min()) >= -_MAX_LOG_RANGE
    lo, hi = torch.aminmax(s)
    return float(lo) >= -_MAX_LOG_RANGE and float(hi) <= _MAX_LOG_RANGE


def _scan_(s: Tensor, h: Tensor, monotone: bool) -> None:
    """In place: h_t = exp(la_t) h_{t-1} + x_t along the flattened (n_chunks, T) axes.

    Args:
        s: (M, n_chunks, T) log-decays la; destroyed.
        h: (M, n_chunks, T) inputs x; overwritten with the states.
        monotone: la <= 0 everywhere (A <= 0, dt >= 0).
    """
    n_chunks = s.shape[1]
    s.cumsum_(-1)
    if not _range_ok(s, monotone, first=False):
        la = torch.diff(s, dim=-1, prepend=torch.zeros_like(s[..., :1]))
        m = s.shape[0]
        h.copy_(_doubling_scan(la.reshape(m, -1).exp_(), h.reshape(m, -1)).view_as(h))
        return
    s_end = s[..., -1].clone() if n_chunks > 1 else None  # each chunk's total log-decay
    e_s = s.exp_()
    h.div_(e_s).cumsum_(-1).mul_(e_s)  # local states, chunk start state 0
    if n_chunks > 1:
        # chunk c starts from H_{c-1}, with H_c = E_c * H_{c-1} + hloc_c(end)
        ends = _chunk_carry(s_end, h[..., -1])  # (M, n_chunks)
        start = torch.zeros_like(ends)
        start[:, 1:] = ends[:, :-1]
        h.addcmul_(e_s, start.unsqueeze(-1))


def _rscan_(s: Tensor, h: Tensor, tmp: Tensor, monotone: bool) -> None:
    """In place: g_t = exp(la'_t) g_{t+1} + e_t (g after the end = 0), the adjoint scan.

    Inside a chunk, with R_t = sum_{j=t}^{end} la'_j (suffix sums),
    g_t = exp(R_t) * (g_next_chunk + sum_{s >= t} exp(-R_s) e_s).

    Args:
        s: (M, n_chunks, T) shifted log-decays la'_t = la_{t+1}; destroyed.
        h: (M, n_chunks, T) inputs e; overwritten with g.
        tmp: scratch of the same shape.
    """
    n_chunks = s.shape[1]
    torch.cumsum(s, -1, out=tmp)
    s.sub_(tmp).add_(tmp[..., -1:])  # suffix sums R (inclusive)
    if not _range_ok(s, monotone, first=True):
        la = s.clone()
        la[..., :-1] -= s[..., 1:]
        m = s.shape[0]
        flat = _doubling_scan(la.reshape(m, -1).flip(-1).exp_(), h.reshape(m, -1).flip(-1))
        h.copy_(flat.flip(-1).view_as(h))
        return
    r_first = s[..., 0].clone() if n_chunks > 1 else None  # each chunk's total log-decay
    e_r = s.exp_()
    # suffix sums of exp(-R) e by a reversed cumsum (not total - prefix: exp(-R) grows towards
    # the chunk start, so the prefix form would cancel catastrophically)
    rev = torch.arange(s.shape[-1] - 1, -1, -1, device=s.device)
    torch.index_select(h.div_(e_r), -1, rev, out=tmp)
    torch.index_select(tmp.cumsum_(-1), -1, rev, out=h)
    h.mul_(e_r)  # local states, next-chunk state 0
    if n_chunks > 1:
        # G_c (state at chunk c's first step) = E_c * G_{c+1} + gloc_c(first)
        rev = _chunk_carry(r_first.flip(-1), h[..., 0].flip(-1)).flip(-1)
        nxt = torch.zeros_like(rev)
        nxt[:, :-1] = rev[:, 1:]
        h.addcmul_(e_r, nxt.unsqueeze(-1))


def chunk_scan(log_a: Tensor, x: Tensor, reverse: bool = False) -> Tensor:
    """All states of ``h_t = exp(log_a_t) h_{t-1} + x_t`` (h_{-1} = 0) along the last axis.

    With ``reverse=True``: ``h_t = exp(log_a_{t+1}) h_{t+1} + x_t`` (h_L = 0), the adjoint.

    Args:
        log_a: (..., L) log-decays (float32/float64).
        x: (..., L) inputs, same shape and dtype.

    Returns:
        (..., L) states (a new tensor; the inputs are not modified).
    """
    shape = x.shape
    length = shape[-1]
    if length == 0:
        return x.clone()
    t = _pick_chunk(length)
    n_chunks = math.ceil(length / t)
    lp = n_chunks * t
    s = log_a.new_zeros(*shape[:-1], lp)
    h = x.new_zeros(*shape[:-1], lp)
    h[..., :length] = x
    view = (-1, n_chunks, t)
    if reverse:
        s[..., : length - 1] = log_a[..., 1:]
        _rscan_(s.view(view), h.view(view), torch.empty_like(h).view(view), monotone=False)
    else:
        s[..., :length] = log_a
        _scan_(s.view(view), h.view(view), monotone=False)
    return h[..., :length]


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
        self.chunk = _pick_chunk(length, _chunk_limit(delta, delta_bias, A, delta_softplus))
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
        _scan_(s.view(view), h.view(view), self.monotone)
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
def selective_scan_fwd(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    z: Tensor | None = None,
    delta_bias: Tensor | None = None,
    delta_softplus: bool = False,
) -> tuple[Tensor, Tensor]:
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
def selective_scan_bwd(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None,
    z: Tensor | None,
    delta_bias: Tensor | None,
    delta_softplus: bool,
    dy: Tensor,
    dlast: Tensor | None = None,
) -> tuple[Tensor | None, ...]:
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
    _rscan_(s.view(view), e.view(view), tmp.view(view), p.monotone)
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
