"""Export-friendly decompositions of the ``vmamba_ops`` custom ops into standard torch ops.

``vmamba_ops::selective_scan``, ``vmamba_ops::cross_scan`` and ``vmamba_ops::cross_merge`` are
opaque ``torch.library`` custom ops: ``torch.compile`` and ``torch.export`` keep each one as a
single node (no graph break), but ONNX has no such operator. For deployment we rewrite those
nodes of an exported program into plain tensor ops that every backend knows
(:func:`decompose_vmamba_ops`), with no data-dependent control flow and no Python loop over the
sequence, so the result stays valid for dynamic H and W:

- selective scan: ``h_t = a_t h_{t-1} + x_t`` by a Hillis-Steele doubling scan
  (``ceil(log2 L)`` passes, or ``max_passes`` when L is symbolic); it only multiplies decays and
  adds weighted states, so it is stable for any input, and it runs in float32 (float64 for
  float64 inputs) like the kernels.
- cross scan / merge: flips, transposes and reshapes (the index formulas of
  ``vmamba_ops.cross_scan.naive``, written without a gather table so H and W may vary).

These are inference-only forward graphs; training keeps using the kernels.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "DEFAULT_MAX_PASSES",
    "cross_merge_decomposed",
    "cross_scan_decomposed",
    "decompose_vmamba_ops",
    "export_decompositions",
    "selective_scan_decomposed",
]

DEFAULT_MAX_PASSES = 20
"""Doubling passes used when the sequence length is symbolic: exact for L <= 2**20 (a 4096x4096
image at patch size 4 has L = 2**20)."""


def _shift(t: Tensor, k: int, fill: float) -> Tensor:
    """``out[..., i] = t[..., i - k]`` (``fill`` for i < k) along the last axis; any k >= 1."""
    length = t.shape[-1]
    return F.pad(t, (k, 0), value=fill)[..., :length]


def _doubling_scan(log_a: Tensor, x: Tensor, passes: int) -> Tensor:
    """All states of ``h_t = exp(log_a_t) h_{t-1} + x_t`` (h_{-1} = 0) along the last axis.

    Args:
        log_a: (..., L) log-decays.
        x: (..., L) inputs, same shape and dtype.
        passes: number of doubling passes; exact when ``2**passes >= L``.

    Returns:
        (..., L) states.
    """
    a = log_a.exp()
    h = x
    k = 1
    for _ in range(passes):
        # compose the step with the one k positions back: both updates read the old values
        h = h + a * _shift(h, k, 0.0)
        a = a * _shift(a, k, 1.0)
        k *= 2
    return h


def _passes_for(length, max_passes: int) -> int:
    if isinstance(length, int):
        return max(0, math.ceil(math.log2(length))) if length > 1 else 0
    return max_passes  # symbolic (dynamic) length: enough passes for any L <= 2**max_passes


def selective_scan_decomposed(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None,
    z: Tensor | None,
    delta_bias: Tensor | None,
    delta_softplus: bool,
    backend: str = "auto",
    max_passes: int = DEFAULT_MAX_PASSES,
) -> tuple[Tensor, Tensor]:
    """Forward of ``vmamba_ops::selective_scan`` in standard torch ops (same signature).

    Args:
        u, delta: (batch, dim, L).
        A: (dim, N).
        B, C: (batch, G, N, L) (the op always receives the grouped layout).
        D, delta_bias: optional (dim,).
        z: optional (batch, dim, L) gate.
        delta_softplus: apply softplus to ``delta + delta_bias``.
        backend: ignored (kept so the signature matches the op's schema).
        max_passes: doubling passes when L is symbolic.

    Returns:
        y (batch, dim, L) in u's dtype and the last state (batch, dim, N) in float32
        (float64 for float64 inputs).
    """
    ct = torch.float64 if u.dtype == torch.float64 else torch.float32
    b, dim, length = u.shape
    g, n = B.shape[1], B.shape[2]
    dt = delta.to(ct)
    if delta_bias is not None:
        dt = dt + delta_bias.to(ct)[None, :, None]
    if delta_softplus:
        dt = F.softplus(dt)
    uf = u.to(ct)

    def per_channel(bc: Tensor) -> Tensor:  # (b, G, N, L) -> (b, dim, N, L)
        bc = bc.to(ct).unsqueeze(2).expand(b, g, dim // g, n, length)
        return bc.reshape(b, dim, n, length)

    log_a = dt.unsqueeze(2) * A.to(ct)[None, :, :, None]  # (b, dim, N, L)
    x = (dt * uf).unsqueeze(2) * per_channel(B)
    h = _doubling_scan(log_a, x, _passes_for(length, max_passes))
    y = (h * per_channel(C)).sum(2)
    if D is not None:
        y = y + D.to(ct)[None, :, None] * uf
    if z is not None:
        y = y * F.silu(z.to(ct))
    return y.to(u.dtype), h[..., -1]


def cross_scan_decomposed(
    x: Tensor, pattern: str = "cross", channel_first: bool = True, backend: str = "auto"
) -> Tensor:
    """``vmamba_ops::cross_scan`` with flips and transposes.

    Args:
        x: (B, C, H, W) if channel_first else (B, H, W, C).

    Returns:
        (B, 4, C, H*W) if channel_first else (B, H*W, 4, C).
    """
    if not channel_first:
        x = x.permute(0, 3, 1, 2)
    row = x.flatten(2)  # l = h * W + w
    col = x.transpose(2, 3).flatten(2)  # l = w * H + h
    if pattern == "cross":
        routes = [row, col, row.flip(-1), col.flip(-1)]
    elif pattern == "unidi":
        routes = [row, row, row, row]
    elif pattern == "bidi":
        routes = [row, row, row.flip(-1), row.flip(-1)]
    elif pattern == "cascade":
        routes = [row, x.flip(3).flatten(2), col, x.flip(2).transpose(2, 3).flatten(2)]
    else:
        raise ValueError(f"cross_scan: unknown pattern {pattern!r}")
    ys = torch.stack(routes, dim=1)  # (B, K, C, L)
    return ys.permute(0, 3, 1, 2).contiguous() if not channel_first else ys


def cross_merge_decomposed(
    y: Tensor, pattern: str = "cross", channel_first: bool = True, backend: str = "auto"
) -> Tensor:
    """``vmamba_ops::cross_merge`` (adjoint of cross_scan) with flips and transposes.

    Args:
        y: (B, 4, C, H, W) if channel_first else (B, H, W, 4, C), sequence position
            ``l = i * W + j`` stored at ``[..., i, j]``.

    Returns:
        (B, C, H, W) if channel_first else (B, H, W, C).
    """
    if not channel_first:
        y = y.permute(0, 3, 4, 1, 2)
    b, _, c, h, w = y.shape
    seq = y.flatten(3)  # (B, K, C, L)

    def as_row(s: Tensor) -> Tensor:  # l = h * W + w
        return s.reshape(b, c, h, w)

    def as_col(s: Tensor) -> Tensor:  # l = w * H + h
        return s.reshape(b, c, w, h).transpose(2, 3)

    s0, s1, s2, s3 = seq.unbind(1)
    if pattern == "cross":
        out = as_row(s0) + as_col(s1) + as_row(s2.flip(-1)) + as_col(s3.flip(-1))
    elif pattern == "unidi":
        out = as_row(s0 + s1 + s2 + s3)
    elif pattern == "bidi":
        out = as_row(s0 + s1) + as_row((s2 + s3).flip(-1))
    elif pattern == "cascade":
        out = (
            as_row(s0)
            + as_row(s1).flip(3)
            + as_col(s2)
            + s3.reshape(b, c, w, h).flip(3).transpose(2, 3)
        )
    else:
        raise ValueError(f"cross_merge: unknown pattern {pattern!r}")
    return out.permute(0, 2, 3, 1).contiguous() if not channel_first else out


def export_decompositions(max_passes: int = DEFAULT_MAX_PASSES) -> dict:
    """Decomposition table ``{OpOverload: fn}`` for ``ExportedProgram.run_decompositions``.

    Includes torch's default (core ATen) decompositions, so the result is what ONNX export
    expects; the three ``vmamba_ops`` forward ops map to the functions of this module.
    """
    import vmamba_ops  # noqa: F401  (registers torch.ops.vmamba_ops)

    table = dict(torch.export.default_decompositions())

    def scan(u, delta, A, B, C, D, z, delta_bias, delta_softplus, backend):
        return selective_scan_decomposed(
            u, delta, A, B, C, D, z, delta_bias, delta_softplus, backend, max_passes
        )

    ops = torch.ops.vmamba_ops
    table[ops.selective_scan.default] = scan
    table[ops.cross_scan.default] = cross_scan_decomposed
    table[ops.cross_merge.default] = cross_merge_decomposed
    return table


def decompose_vmamba_ops(
    program: torch.export.ExportedProgram, max_passes: int = DEFAULT_MAX_PASSES
) -> torch.export.ExportedProgram:
    """Rewrite every ``vmamba_ops`` node of an exported program into standard ATen ops.

    Args:
        program: from ``torch.export.export(model, ...)`` (eval mode, inference).
        max_passes: doubling passes of the scan when the sequence length is dynamic.

    Returns:
        A new ExportedProgram with no ``vmamba_ops`` nodes (ready for ``torch.onnx.export``).

    Raises:
        RuntimeError: a ``vmamba_ops`` node survived (e.g. a new op this table does not know).
    """
    out = program.run_decompositions(export_decompositions(max_passes))
    left = sorted(
        {
            str(node.target)
            for node in out.graph.nodes
            if node.op == "call_function" and "vmamba_ops" in str(node.target)
        }
    )
    if left:
        raise RuntimeError(
            f"decompose_vmamba_ops: no export decomposition for {left}; add one to "
            "mmvmamba.deployment.decompose.export_decompositions"
        )
    return out
