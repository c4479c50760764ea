"""Export-friendly decompositions of the ``vmamba_ops`` custom ops into standard torch ops.

``vmamba_ops::selective_scan``, ``vmamba_ops::cross_scan`` and ``vmamba_ops::cross_merge`` are
opaque ``torch.library`` custom ops: ``torch.compile`` and ``torch.export`` keep each one as a
single node (no graph break), but ONNX has no such operator. For deployment we rewrite those
nodes of an exported program into plain tensor ops that every backend knows
(:func:`decompose_vmamba_ops`), with no data-dependent control flow and no Python loop over the
sequence, so the result stays valid for dynamic H and W. Nothing is written twice: the pieces
are the ones ``vmamba_ops`` runs itself.

- selective scan: the reference's time steps, group expansion and skip / gate
  (:mod:`vmamba_ops.selective_scan.reference`) around the doubling scan of
  :mod:`vmamba_ops.selective_scan.linear_recurrence` (``ceil(log2 L)`` passes, or
  ``max_passes`` when L is symbolic; it only multiplies decays and adds weighted states, so it
  is stable for any input), in float32 (float64 for float64 inputs) like the kernels.
- cross scan / merge: the 'torch' backend (:mod:`vmamba_ops.cross_scan.torch_views`): flips,
  transposes and reshapes, no gather table, so H and W may vary.

These are inference-only forward graphs; training keeps using the kernels.
"""

from __future__ import annotations

import torch
from torch import Tensor

from vmamba_ops.cross_scan.torch_views import cross_merge_torch, cross_scan_torch
from vmamba_ops.selective_scan.interface import low_rank_delta
from vmamba_ops.selective_scan.linear_recurrence import doubling_scan, passes_for
from vmamba_ops.selective_scan.reference import (
    compute_dtype,
    expand_groups,
    skip_and_gate,
    time_steps,
)

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
    ct = compute_dtype(u)
    dim, length = u.shape[1], u.shape[2]
    uf = u.to(ct)
    dt = time_steps(delta, delta_bias, delta_softplus, ct)
    decay = (dt.unsqueeze(2) * A.to(ct)[None, :, :, None]).exp()  # (b, dim, N, L)
    x = (dt * uf).unsqueeze(2) * expand_groups(B.to(ct), dim)
    passes = passes_for(length)
    h = doubling_scan(decay, x, max_passes if passes is None else passes)
    y = (h * expand_groups(C.to(ct), dim)).sum(2)
    return skip_and_gate(y, uf, D, z).to(u.dtype), h[..., -1]


def cross_scan_decomposed(
    x: Tensor, pattern: str = "cross", channel_first: bool = True, backend: str = "auto"
) -> Tensor:
    """``vmamba_ops::cross_scan`` with flips and transposes (``backend`` is ignored).

    Args:
        x: (B, C, H, W) if channel_first else (B, H, W, C).

    Returns:
        (B, 4, C, H*W) if channel_first else (B, H*W, 4, C).
    """
    return cross_scan_torch(x, pattern, channel_first)


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
    return cross_merge_torch(y, pattern, channel_first)


def export_decompositions(max_passes: int = DEFAULT_MAX_PASSES) -> dict:
    """Decomposition table ``{OpOverload: fn}`` for ``ExportedProgram.run_decompositions``.

    Includes torch's default (core ATen) decompositions, so the result is what ONNX export
    expects; the ``vmamba_ops`` forward ops map to the functions of this module (the fused
    low-rank scan, which a captured graph does not hold, to the bmm and the scan).
    """
    table = dict(torch.export.default_decompositions())

    def scan(u, delta, A, B, C, D, z, delta_bias, delta_softplus, backend):
        return selective_scan_decomposed(
            u, delta, A, B, C, D, z, delta_bias, delta_softplus, backend, max_passes
        )

    def scan_lowrank(u, delta_low, delta_proj, A, B, C, D, z, delta_bias, delta_softplus):
        delta = low_rank_delta(delta_low, delta_proj)
        return scan(u, delta, A, B, C, D, z, delta_bias, delta_softplus, "auto")

    ops = torch.ops.vmamba_ops
    table[ops.selective_scan.default] = scan
    table[ops.selective_scan_lowrank.default] = scan_lowrank
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
