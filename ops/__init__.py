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
    set_backend(backend, device=None) / use_backend(...)   what backend='auto' calls run
    available_backends(device='cpu')

Backends ('ref', 'torch', 'c', 'triton', 'auto'; 'cpu' is the old name of "c, else torch") and
the table that resolves 'auto': :mod:`vmamba_ops.dispatch`.

Layouts: cross_scan (B, C, H, W) -> (B, K, C, H*W) [channel-last (B, H, W, C) -> (B, H*W, K, C)];
cross_merge (B, K, C, H, W) -> (B, C, H, W) [channel-last (B, H, W, K, C) -> (B, H, W, C)], the
adjoint (sum over routes). The routes of every pattern: ``vmamba_ops.cross_scan.routes``.
For 'cascade' each row / column is its own sequence: ``segment_length`` says how long, and
``to_segments`` / ``from_segments`` reshape a route (B, C, L) to / from a batch of segments
(B * n, C, seg) so that selective_scan carries no state from one row (column) to the next.
"""

from .cross_scan.interface import (
    cross_merge,
    cross_scan,
    from_segments,
    segment_length,
    to_segments,
)
from .cross_scan.routes import K_OF_PATTERN, PATTERNS
from .dispatch import BACKENDS, available_backends, get_backend, set_backend, use_backend
from .selective_scan.flops import (
    FLOP_HANDLES,
    selective_scan_flop_handle,
    selective_scan_flops,
)
from .selective_scan.interface import low_rank_delta, selective_scan
from .selective_scan.reference import selective_scan_ref

__all__ = [
    "BACKENDS",
    "FLOP_HANDLES",
    "K_OF_PATTERN",
    "PATTERNS",
    "available_backends",
    "cross_merge",
    "cross_scan",
    "from_segments",
    "get_backend",
    "low_rank_delta",
    "segment_length",
    "selective_scan",
    "selective_scan_flop_handle",
    "selective_scan_flops",
    "selective_scan_ref",
    "set_backend",
    "to_segments",
    "use_backend",
]
