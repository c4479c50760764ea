"""Input checks of :func:`vmamba_ops.selective_scan`: errors that name the bad argument."""

from __future__ import annotations

import torch
from torch import Tensor

_FLOAT = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _check(name: str, t: Tensor | None, shape: tuple, optional: bool = False) -> None:
    if t is None:
        if optional:
            return
        raise ValueError(f"selective_scan: `{name}` is required")
    if not isinstance(t, Tensor):
        raise TypeError(f"selective_scan: `{name}` must be a torch.Tensor, got {type(t).__name__}")
    if t.dtype not in _FLOAT:
        raise TypeError(
            f"selective_scan: `{name}` has dtype {t.dtype}; expected one of float16/bfloat16/"
            "float32/float64 (complex A is not supported)"
        )
    if tuple(t.shape) != tuple(shape):
        raise ValueError(
            f"selective_scan: `{name}` has shape {tuple(t.shape)}, expected {tuple(shape)}"
        )


def _check_groups(dim: int, g: int) -> None:
    if g < 1 or dim % g != 0:
        raise ValueError(
            f"selective_scan: dim={dim} is not divisible by the number of B/C groups G={g}"
        )


def validate_inputs(u, delta, A, B, C, D=None, z=None, delta_bias=None) -> None:
    """Raise ValueError/TypeError naming the first bad argument (shapes per `selective_scan`)."""
    if not isinstance(u, Tensor) or u.dim() != 3:
        got = tuple(u.shape) if isinstance(u, Tensor) else type(u).__name__
        raise ValueError(f"selective_scan: `u` must be (batch, dim, L), got {got}")
    b, dim, length = u.shape
    _check("u", u, (b, dim, length))
    _check("delta", delta, (b, dim, length))
    if not isinstance(A, Tensor) or A.dim() != 2:
        got = tuple(A.shape) if isinstance(A, Tensor) else type(A).__name__
        raise ValueError(f"selective_scan: `A` must be (dim, N) = ({dim}, N), got {got}")
    n = A.shape[1]
    _check("A", A, (dim, n))
    if not isinstance(B, Tensor) or B.dim() not in (3, 4):
        raise ValueError(
            "selective_scan: `B` must be (batch, N, L) or (batch, G, N, L), got "
            f"{tuple(B.shape) if isinstance(B, Tensor) else type(B).__name__}"
        )
    g = B.shape[1] if B.dim() == 4 else 1
    _check_groups(dim, g)
    bc_shape = (b, g, n, length) if B.dim() == 4 else (b, n, length)
    _check("B", B, bc_shape)
    _check("C", C, bc_shape)
    _check("D", D, (dim,), optional=True)
    _check("z", z, (b, dim, length), optional=True)
    _check("delta_bias", delta_bias, (dim,), optional=True)
    devices = {t.device for t in (u, delta, A, B, C, D, z, delta_bias) if t is not None}
    if len(devices) > 1:
        raise ValueError(
            f"selective_scan: inputs are on different devices {sorted(map(str, devices))}"
        )


def check_low_rank(u: Tensor, delta: Tensor, delta_proj: Tensor, B: Tensor) -> None:
    """Shapes of a low-rank delta: delta (batch, G, R, L) / (batch, R, L), delta_proj (dim, R)."""
    if not isinstance(u, Tensor) or u.dim() != 3:
        raise ValueError("selective_scan: `u` must be (batch, dim, L)")
    if not isinstance(delta_proj, Tensor) or delta_proj.dim() != 2:
        raise ValueError("selective_scan: `delta_proj` must be a (dim, R) tensor")
    b, dim, length = u.shape
    r = delta_proj.shape[1]
    _check("delta_proj", delta_proj, (dim, r))
    g = B.shape[1] if isinstance(B, Tensor) and B.dim() == 4 else 1
    want = (b, g, r, length) if isinstance(B, Tensor) and B.dim() == 4 else (b, r, length)
    if not isinstance(delta, Tensor) or tuple(delta.shape) != want:
        got = tuple(delta.shape) if isinstance(delta, Tensor) else type(delta).__name__
        raise ValueError(
            f"selective_scan: with `delta_proj` ({dim}, {r}), `delta` holds the low-rank "
            f"factors and must have shape {want} (batch, [G,] R, L), got {got}"
        )
    _check("delta", delta, want)  # its dtype
    _check_groups(dim, g)


__all__ = ["check_low_rank", "validate_inputs"]
