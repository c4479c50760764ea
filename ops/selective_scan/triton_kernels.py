"""Triton selective-scan kernels (forward, backward); launched from ``.triton``.

Each program owns BLOCK_D channels of one B/C group and one batch element, keeps the state
h (BLOCK_D, BLOCK_N) in float32 registers and walks L in tiles of BLOCK_L, scanning each tile
with ``tl.associative_scan`` over (decay, input) pairs. The backward recomputes the states: a
first sweep stores only the tile-start states (batch, dim, n_tiles, N), a second sweep walks
the tiles backwards, recomputes each tile's states and runs the adjoint scan
(``reverse=True``). Sums over channels (dB, dC) and over the batch (dA, dD, d delta_bias) are
written as per-program partials and reduced afterwards in a fixed order: no atomics, the
result is deterministic.

Shapes (L, dim, ...) are runtime arguments; only the block sizes (``triton_configs``) and the
presence flags (HAS_D, HAS_Z, ...) are compile-time constants.
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def _combine(a1, b1, a2, b2):
    # composition of the affine maps h -> a1 h + b1 then h -> a2 h + b2
    return a1 * a2, b1 * a2 + b2


@triton.jit
def _load_dt(
    delta_ptr,
    bias_ptr,
    row_off,
    offs_d,
    offs_l,
    mask_dl,
    mask_d,
    HAS_BIAS: tl.constexpr,
    SOFTPLUS: tl.constexpr,
):
    """dt tile (BLOCK_D, BLOCK_L) = softplus(delta + bias); 0 outside the mask; also returns pre."""
    pre = tl.load(delta_ptr + row_off[:, None] + offs_l[None, :], mask=mask_dl, other=0.0)
    pre = pre.to(tl.float32)
    if HAS_BIAS:
        pre += tl.load(bias_ptr + offs_d, mask=mask_d, other=0.0).to(tl.float32)[:, None]
    dt = pre
    if SOFTPLUS:
        dt = tl.where(pre <= 20.0, tl.log(1.0 + tl.exp(tl.minimum(pre, 20.0))), pre)
    dt = tl.where(mask_dl, dt, 0.0)
    return dt, pre


@triton.jit
def _program(L, dim, dg, n_dblk, N, BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr):
    """This program's batch element, group, channel block, channel / state offsets and masks,
    and the int64 row offsets of its channels in (batch, dim, L) and of its group's B / C rows
    in (batch, G, N, L)."""
    pid = tl.program_id(0)
    pid_b = tl.program_id(1).to(tl.int64)
    grp = pid // n_dblk
    dblk = pid % n_dblk
    offs_dg = dblk * BLOCK_D + tl.arange(0, BLOCK_D)  # channel inside the group
    offs_d = grp * dg + offs_dg
    offs_n = tl.arange(0, BLOCK_N)
    row_off = (pid_b * dim + offs_d) * L  # (BLOCK_D,)
    bc_off = ((pid_b * (dim // dg) + grp) * N + offs_n) * L  # (BLOCK_N,)
    return pid_b, grp, dblk, offs_d, offs_dg < dg, offs_n, offs_n < N, row_off, bc_off


@triton.jit
def _tile_masks(offs_l, L, mask_d, mask_n):
    """(BLOCK_D, BLOCK_L) and (BLOCK_N, BLOCK_L) masks of the tile at positions offs_l."""
    mask_l = offs_l < L
    return mask_d[:, None] & mask_l[None, :], mask_n[:, None] & mask_l[None, :]


@triton.jit
def _tile_scan(
    u_ptr, delta_ptr, B_ptr, bias_ptr, A, h, row_off, bc_off, offs_d, offs_l, mask_dl, mask_nl,
    mask_d, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
):  # fmt: skip
    """States of one tile: hh (BLOCK_D, BLOCK_N, BLOCK_L) from the state h before it; also
    returns the tile's dt, softplus input, u, B (float32) and inputs x = dt u B."""
    dt, pre = _load_dt(
        delta_ptr, bias_ptr, row_off, offs_d, offs_l, mask_dl, mask_d, HAS_BIAS, SOFTPLUS
    )
    u = tl.load(u_ptr + row_off[:, None] + offs_l[None, :], mask=mask_dl, other=0.0)
    u = u.to(tl.float32)
    Bt = tl.load(B_ptr + bc_off[:, None] + offs_l[None, :], mask=mask_nl, other=0.0)
    Bt = Bt.to(tl.float32)
    decay = tl.exp(dt[:, None, :] * A[:, :, None])  # (D, N, L); 1 on padded steps
    x = (dt * u)[:, None, :] * Bt[None, :, :]
    acc_a, hh = tl.associative_scan((decay, x), 2, _combine)
    hh += acc_a * h[:, :, None]
    return hh, dt, pre, u, Bt, x


@triton.jit(do_not_specialize=["L", "dim", "dg", "n_dblk", "N"])
def _fwd_kernel(
    u_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr,  # inputs
    y_ptr, last_ptr,  # outputs
    L, dim, dg, n_dblk, N,  # sizes
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr,  # options
    HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
    BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_L: tl.constexpr,  # blocks
):  # fmt: skip
    pid_b, grp, _dblk, offs_d, mask_d, offs_n, mask_n, row_off, bc_off = _program(
        L, dim, dg, n_dblk, N, BLOCK_D, BLOCK_N
    )
    A = tl.load(
        A_ptr + offs_d[:, None] * N + offs_n[None, :],
        mask=mask_d[:, None] & mask_n[None, :],
        other=0.0,
    ).to(tl.float32)
    if HAS_D:
        Dv = tl.load(D_ptr + offs_d, mask=mask_d, other=0.0).to(tl.float32)
    h = tl.zeros((BLOCK_D, BLOCK_N), dtype=tl.float32)
    lane = tl.arange(0, BLOCK_L)
    for l0 in range(0, L, BLOCK_L):
        offs_l = l0 + lane
        mask_dl, mask_nl = _tile_masks(offs_l, L, mask_d, mask_n)
        hh, dt, _pre, u, _Bt, _x = _tile_scan(
            u_ptr, delta_ptr, B_ptr, bias_ptr, A, h, row_off, bc_off, offs_d, offs_l, mask_dl,
            mask_nl, mask_d, HAS_BIAS, SOFTPLUS,
        )  # fmt: skip
        Ct = tl.load(C_ptr + bc_off[:, None] + offs_l[None, :], mask=mask_nl, other=0.0)
        y = tl.sum(hh * Ct.to(tl.float32)[None, :, :], axis=1)  # (D, L)
        if HAS_D:
            y += Dv[:, None] * u
        if HAS_Z:
            zt = tl.load(z_ptr + row_off[:, None] + offs_l[None, :], mask=mask_dl, other=0.0)
            zt = zt.to(tl.float32)
            y *= zt * tl.sigmoid(zt)
        tl.store(
            y_ptr + row_off[:, None] + offs_l[None, :], y.to(y_ptr.dtype.element_ty), mask=mask_dl
        )
        # padded steps keep the state, so the chunk's last column is the state at min(end, L-1)
        h = tl.sum(tl.where(lane[None, None, :] == BLOCK_L - 1, hh, 0.0), axis=2)
    tl.store(
        last_ptr + (pid_b * dim + offs_d)[:, None] * N + offs_n[None, :],
        h,
        mask=mask_d[:, None] & mask_n[None, :],
    )


@triton.jit(do_not_specialize=["L", "dim", "dg", "n_dblk", "N", "n_chunks"])
def _bwd_kernel(
    u_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr,  # inputs
    dy_ptr, dlast_ptr, starts_ptr,  # output gradient, last-state gradient, tile-start states
    du_ptr, ddelta_ptr, dz_ptr,  # input gradients
    dA_ptr, dB_ptr, dC_ptr, dD_ptr, dbias_ptr,  # per-program partial sums
    L, dim, dg, n_dblk, N, n_chunks,  # sizes
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr,  # options
    SOFTPLUS: tl.constexpr, HAS_DLAST: tl.constexpr,
    BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_L: tl.constexpr,  # blocks
):  # fmt: skip
    pid_b, grp, dblk, offs_d, mask_d, offs_n, mask_n, row_off, bc_off = _program(
        L, dim, dg, n_dblk, N, BLOCK_D, BLOCK_N
    )
    mask_dn = mask_d[:, None] & mask_n[None, :]
    G = dim // dg
    # partial dB / dC of this program: (batch, dim // BLOCK_D-ish programs, N, L)
    part_off = (((pid_b * G + grp) * n_dblk + dblk) * N + offs_n) * L
    dn_off = (pid_b * dim + offs_d)[:, None] * N + offs_n[None, :]
    start_off = ((pid_b * dim + offs_d)[:, None] * n_chunks) * N + offs_n[None, :]
    A = tl.load(A_ptr + offs_d[:, None] * N + offs_n[None, :], mask=mask_dn, other=0.0)
    A = A.to(tl.float32)
    if HAS_D:
        Dv = tl.load(D_ptr + offs_d, mask=mask_d, other=0.0).to(tl.float32)
    lane = tl.arange(0, BLOCK_L)

    # sweep 1: chunk-start states
    h = tl.zeros((BLOCK_D, BLOCK_N), dtype=tl.float32)
    for c in range(0, n_chunks):
        tl.store(starts_ptr + start_off + c * N, h, mask=mask_dn)
        offs_l = c * BLOCK_L + lane
        mask_dl, mask_nl = _tile_masks(offs_l, L, mask_d, mask_n)
        hh, _dt, _pre, _u, _Bt, _x = _tile_scan(
            u_ptr, delta_ptr, B_ptr, bias_ptr, A, h, row_off, bc_off, offs_d, offs_l, mask_dl,
            mask_nl, mask_d, HAS_BIAS, SOFTPLUS,
        )  # fmt: skip
        h = tl.sum(tl.where(lane[None, None, :] == BLOCK_L - 1, hh, 0.0), axis=2)

    # sweep 2: chunks backwards, adjoint state g carried from the next chunk
    if HAS_DLAST:
        g = tl.load(dlast_ptr + dn_off, mask=mask_dn, other=0.0).to(tl.float32)
    else:
        g = tl.zeros((BLOCK_D, BLOCK_N), dtype=tl.float32)
    dA_acc = tl.zeros((BLOCK_D, BLOCK_N), dtype=tl.float32)
    dD_acc = tl.zeros((BLOCK_D,), dtype=tl.float32)
    dbias_acc = tl.zeros((BLOCK_D,), dtype=tl.float32)
    for i in range(0, n_chunks):
        c = n_chunks - 1 - i
        offs_l = c * BLOCK_L + lane
        mask_dl, mask_nl = _tile_masks(offs_l, L, mask_d, mask_n)
        tile = row_off[:, None] + offs_l[None, :]
        dt, pre = _load_dt(
            delta_ptr, bias_ptr, row_off, offs_d, offs_l, mask_dl, mask_d, HAS_BIAS, SOFTPLUS
        )
        mask_nx = mask_d[:, None] & (offs_l + 1 < L)[None, :]
        dt_next, _ = _load_dt(
            delta_ptr, bias_ptr, row_off, offs_d, offs_l + 1, mask_nx, mask_d, HAS_BIAS, SOFTPLUS
        )
        u = tl.load(u_ptr + tile, mask=mask_dl, other=0.0).to(tl.float32)
        Bt = tl.load(B_ptr + bc_off[:, None] + offs_l[None, :], mask=mask_nl, other=0.0)
        Bt = Bt.to(tl.float32)
        Ct = tl.load(C_ptr + bc_off[:, None] + offs_l[None, :], mask=mask_nl, other=0.0)
        Ct = Ct.to(tl.float32)
        dy = tl.load(dy_ptr + tile, mask=mask_dl, other=0.0).to(tl.float32)
        h0 = tl.load(starts_ptr + start_off + c * N, mask=mask_dn, other=0.0)
        # the tile's states again (from its start state h0), keeping dt u and x for the adjoint
        decay = tl.exp(dt[:, None, :] * A[:, :, None])
        dtu = dt * u
        x = dtu[:, None, :] * Bt[None, :, :]
        acc_a, hh = tl.associative_scan((decay, x), 2, _combine)
        hh += acc_a * h0[:, :, None]
        if HAS_Z:
            zt = tl.load(z_ptr + tile, mask=mask_dl, other=0.0).to(tl.float32)
            sz = tl.sigmoid(zt)
            y0 = tl.sum(hh * Ct[None, :, :], axis=1)
            if HAS_D:
                y0 += Dv[:, None] * u
            dz = dy * y0 * sz * (1.0 + zt * (1.0 - sz))
            tl.store(dz_ptr + tile, dz.to(dz_ptr.dtype.element_ty), mask=mask_dl)
            dy = dy * zt * sz
        # adjoint: g_t = a_{t+1} g_{t+1} + C_t dy_t, suffix scan inside the chunk
        decay_next = tl.exp(dt_next[:, None, :] * A[:, :, None])
        e = dy[:, None, :] * Ct[None, :, :]
        acc_g, gg = tl.associative_scan((decay_next, e), 2, _combine, reverse=True)
        gg += acc_g * g[:, :, None]
        g = tl.sum(tl.where(lane[None, None, :] == 0, gg, 0.0), axis=2)

        gh = gg * (hh - x)  # dL/dlog_a = g_t a_t h_{t-1}
        dA_acc += tl.sum(gh * dt[:, None, :], axis=2)
        tl.store(
            dC_ptr + part_off[:, None] + offs_l[None, :],
            tl.sum(hh * dy[:, None, :], axis=0),
            mask=mask_nl,
        )
        tl.store(
            dB_ptr + part_off[:, None] + offs_l[None, :],
            tl.sum(gg * dtu[:, None, :], axis=0),
            mask=mask_nl,
        )
        ddtu = tl.sum(gg * Bt[None, :, :], axis=1)  # (D, L)
        ddt = tl.sum(gh * A[:, :, None], axis=1) + ddtu * u
        du = ddtu * dt
        if HAS_D:
            du += Dv[:, None] * dy
            dD_acc += tl.sum(tl.where(mask_dl, dy * u, 0.0), axis=1)
        if SOFTPLUS:
            ddt = ddt * tl.sigmoid(pre)
        ddt = tl.where(mask_dl, ddt, 0.0)
        dbias_acc += tl.sum(ddt, axis=1)
        tl.store(du_ptr + tile, du.to(du_ptr.dtype.element_ty), mask=mask_dl)
        tl.store(ddelta_ptr + tile, ddt.to(ddelta_ptr.dtype.element_ty), mask=mask_dl)

    tl.store(dA_ptr + dn_off, dA_acc, mask=mask_dn)
    if HAS_D:
        tl.store(dD_ptr + pid_b * dim + offs_d, dD_acc, mask=mask_d)
    if HAS_BIAS:
        tl.store(dbias_ptr + pid_b * dim + offs_d, dbias_acc, mask=mask_d)
