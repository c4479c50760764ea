"""Scans of the linear recurrence ``h_t = a_t * h_{t-1} + x_t`` along the last axis, in PyTorch.

Two forms, both without a loop over L:

- :func:`doubling_scan`: log-depth doubling (Hillis-Steele); ``ceil(log2 L)`` passes that only
  multiply decays and add weighted states, so it is stable for any input. Pure tensor ops with
  no data-dependent control flow: it is also the export decomposition of the scan.
- the chunked form (:func:`scan_`, :func:`rscan_`, :func:`chunk_scan`): in chunks of T steps,
  with ``S_t`` the running sum of the log-decays since the chunk start,

      h_t = exp(S_t) * (h_start + sum_{s <= t} exp(-S_s) * x_s),

  i.e. a cumsum, an exp and a second cumsum over the whole block at once; the chunk start
  states follow a short recurrence over the L/T chunks. ``exp(-S)`` must not overflow: when a
  chunk's ``|S|`` exceeds ``MAX_LOG_RANGE`` (or holds a NaN) the block falls back to the doubling
  scan over the full length.

The chunked functions work in place on (M, n_chunks, T) buffers (see :mod:`.torch_scan`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

MAX_LOG_RANGE = 60.0  # exp(60) * |x| * T stays far from the float32 maximum (3.4e38)
_MAX_LOG_RANGE_64 = 600.0  # the same bound for the float64 carry across chunks


def _shift(t: Tensor, k: int, fill: float) -> Tensor:
    """``out[..., i] = t[..., i - k]`` (``fill`` for i < k) along the last axis; any k >= 1."""
    return F.pad(t, (k, 0), value=fill)[..., : t.shape[-1]]


def passes_for(length) -> int | None:
    """Doubling passes that make :func:`doubling_scan` exact for ``length`` (None if symbolic)."""
    if not isinstance(length, int):
        return None
    return math.ceil(math.log2(length)) if length > 1 else 0


def doubling_scan(a: Tensor, x: Tensor, passes: int | None = None) -> Tensor:
    """All states of ``h_t = a_t h_{t-1} + x_t`` (h_{-1} = 0) along the last axis.

    Args:
        a: (..., L) decays.
        x: (..., L) inputs, same shape and dtype.
        passes: doubling passes; exact when ``2**passes >= L``. Default: enough for L (give a
            bound when L is symbolic, e.g. under torch.export).

    Returns:
        (..., L) states (new tensors; the inputs are not modified).
    """
    if passes is None:
        passes = passes_for(x.shape[-1])
    h = x
    k = 1
    for _ in range(passes):
        # compose each step with the one k positions back: both updates read the old values
        h = h + a * _shift(h, k, 0.0)
        a = a * _shift(a, k, 1.0)
        k *= 2
    return h


def pick_chunk(length: int, limit: int = 128) -> int:
    """A chunk length <= ``limit`` that divides L when possible (no padding), else a power of 2."""
    limit = max(8, min(limit, 128))
    if length <= limit:
        return max(length, 1)
    for t in (64, 56, 49, 48, 72, 80, 96, 112, 128, 40, 32, 28, 24, 16, 14, 12, 8):
        if t <= limit and length % t == 0:
            return t
    return 1 << (limit.bit_length() - 1)


def _chunk_carry(log_dec: Tensor, x: Tensor) -> Tensor:
    """H_c = exp(log_dec_c) * H_{c-1} + x_c (H_{-1} = 0) over the chunk axis, (M, n_chunks).

    Same cumsum trick as inside a chunk, in float64 (exp is safe up to ~700); the doubling scan
    is the fallback.
    """
    s = log_dec.double().cumsum(-1)
    lo, hi = torch.aminmax(s)
    if not (float(lo) >= -_MAX_LOG_RANGE_64 and float(hi) <= _MAX_LOG_RANGE_64):
        return doubling_scan(log_dec.exp(), x)
    acc = torch.exp(-s).mul_(x).cumsum_(-1)
    return acc.mul_(s.exp_()).to(x.dtype)


def _range_ok(s: Tensor, monotone: bool, first: bool) -> bool:
    """Whether exp(+-s) is safe (False for NaN); s are within-chunk running log-decay sums
    (M, n_chunks, T)."""
    if s.numel() == 0:
        return True
    if monotone:  # s <= 0 and monotone inside each chunk: its extreme sits at one end
        return float(s[..., 0 if first else -1].min()) >= -MAX_LOG_RANGE
    lo, hi = torch.aminmax(s)
    return float(lo) >= -MAX_LOG_RANGE and float(hi) <= MAX_LOG_RANGE


def scan_(s: Tensor, h: Tensor, monotone: bool) -> None:
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
        h.copy_(doubling_scan(la.reshape(m, -1).exp_(), h.reshape(m, -1)).view_as(h))
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


def rscan_(s: Tensor, h: Tensor, tmp: Tensor, monotone: bool) -> None:
    """In place: g_t = exp(la'_t) g_{t+1} + e_t (g after the end = 0), the adjoint scan.

    Inside a chunk, with R_t = sum_{j=t}^{end} la'_j (suffix sums),
    g_t = exp(R_t) * (g_next_chunk + sum_{s >= t} exp(-R_s) e_s).

    Args:
        s: (M, n_chunks, T) shifted log-decays la'_t = la_{t+1}; destroyed.
        h: (M, n_chunks, T) inputs e; overwritten with g.
        tmp: scratch of the same shape.
        monotone: la' <= 0 everywhere.
    """
    n_chunks = s.shape[1]
    torch.cumsum(s, -1, out=tmp)
    s.sub_(tmp).add_(tmp[..., -1:])  # suffix sums R (inclusive)
    if not _range_ok(s, monotone, first=True):
        la = s.clone()
        la[..., :-1] -= s[..., 1:]
        m = s.shape[0]
        flat = doubling_scan(la.reshape(m, -1).flip(-1).exp_(), h.reshape(m, -1).flip(-1))
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
    t = pick_chunk(length)
    n_chunks = math.ceil(length / t)
    lp = n_chunks * t
    s = log_a.new_zeros(*shape[:-1], lp)
    h = x.new_zeros(*shape[:-1], lp)
    h[..., :length] = x
    view = (-1, n_chunks, t)
    if reverse:
        s[..., : length - 1] = log_a[..., 1:]
        rscan_(s.view(view), h.view(view), torch.empty_like(h).view(view), monotone=False)
    else:
        s[..., :length] = log_a
        scan_(s.view(view), h.view(view), monotone=False)
    return h[..., :length]


__all__ = ["MAX_LOG_RANGE", "chunk_scan", "doubling_scan", "passes_for", "pick_chunk"]
