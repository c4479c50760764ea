"""vmamba_ops: framework-free selective-scan and cross-scan kernels (torch + optional Triton).

Public API:
    selective_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                   return_last_state=False, backend='auto', delta_proj=None)
    low_rank_delta(delta, delta_proj)  the full delta of low-rank factors (delta_proj given)
    selective_scan_ref(...)          sequential reference, same signature minus `backend`
    cross_scan(x, pattern='cross', channel_first=True, backend='auto')
    cross_merge(y, pattern='cross', channel_first=True, backend='auto')
    selective_scan_flops(B, L, D, N, with_D=True, with_Z=False)
    FLOP_HANDLES                     {traced op name: handle(inputs, outputs)} for fvcore/mmengine
    K_OF_PATTERN                     {pattern: number of routes}
    available_backends(device='cpu')

Layouts: cross_scan (B, C, H, W) -> (B, K, C, H*W) [channel-last (B, H, W, C) -> (B, H*W, K, C)];
cross_merge (B, K, C, H, W) -> (B, C, H, W) [channel-last (B, H, W, K, C) -> (B, H, W, C)], the
adjoint (sum over routes). Routes per pattern are documented in ``vmamba_ops.cross_scan.naive``.
For 'cascade' each row / column is its own sequence: ``segment_length`` says how long, and
``to_segments`` / ``from_segments`` reshape a route (B, C, L) to / from a batch of segments
(B * n, C, seg) so that selective_scan carries no state from one row (column) to the next.
"""

from ._backend import BACKENDS, available_backends
from .cross_scan.interface import (
    cross_merge,
    cross_scan,
    from_segments,
    segment_length,
    to_segments,
)
from .cross_scan.naive import K_OF_PATTERN, PATTERNS
from .selective_scan.interface import (
    FLOP_HANDLES,
    low_rank_delta,
    selective_scan,
    selective_scan_flop_handle,
    selective_scan_flops,
)
from .selective_scan.naive import selective_scan_ref

__all__ = [
    "BACKENDS",
    "FLOP_HANDLES",
    "K_OF_PATTERN",
    "PATTERNS",
    "available_backends",
    "cross_merge",
    "cross_scan",
    "from_segments",
    "low_rank_delta",
    "segment_length",
    "selective_scan",
    "selective_scan_flop_handle",
    "selective_scan_flops",
    "selective_scan_ref",
    "to_segments",
]
