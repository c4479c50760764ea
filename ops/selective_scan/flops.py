"""FLOPs of the selective scan, and the handles the FLOP counters call for the vmamba_ops ops."""

from __future__ import annotations

from typing import Any

from torch import Tensor


def selective_scan_flops(
    B: int, L: int, D: int, N: int, with_D: bool = True, with_Z: bool = False
) -> int:
    """FLOPs of one selective scan (state-spaces/mamba#110, as VMamba counts them).

    ``9 * B * L * D * N`` (+ ``B * D * L`` with D) (+ ``B * D * L`` with z); D = channels.
    """
    flops = 9 * B * L * D * N
    if with_D:
        flops += B * D * L
    if with_Z:
        flops += B * D * L
    return flops


def _value_shape(v: Any) -> list | None:
    """Shape of a traced graph value (torch._C.Value) or a tensor; None for None."""
    if v is None:
        return None
    if isinstance(v, Tensor):
        return list(v.shape)
    if v.type().kind() == "NoneType":
        return None
    if v.isCompleteTensor():
        return v.type().sizes()
    return None


def selective_scan_flop_handle(inputs: list, outputs: list) -> int:
    """FLOP handle for fvcore / mmengine ``FlopAnalyzer.set_op_handle`` (jit-traced op inputs)."""
    u_shape, a_shape = _value_shape(inputs[0]), _value_shape(inputs[2])
    if u_shape is None or a_shape is None:
        raise ValueError("selective_scan FLOP handle: u / A have no static shape in the trace")
    b, d, length = u_shape
    n = a_shape[1]
    with_d = _value_shape(inputs[5]) is not None
    with_z = _value_shape(inputs[6]) is not None
    return selective_scan_flops(b, length, d, n, with_D=with_d, with_Z=with_z)


def selective_scan_lowrank_flop_handle(inputs: list, outputs: list) -> int:
    """FLOP handle of the fused low-rank op: the scan plus the projection of delta,
    ``batch * dim * R * L`` multiply-adds (what the unfused path's bmm counts)."""
    u_shape, proj_shape, a_shape = (_value_shape(inputs[i]) for i in (0, 2, 3))
    if u_shape is None or proj_shape is None or a_shape is None:
        raise ValueError("selective_scan FLOP handle: u / delta_proj / A have no static shape")
    b, d, length = u_shape
    with_d = _value_shape(inputs[6]) is not None
    with_z = _value_shape(inputs[7]) is not None
    scan = selective_scan_flops(b, length, d, a_shape[1], with_D=with_d, with_Z=with_z)
    return scan + b * d * proj_shape[1] * length


def _zero_flop_handle(inputs: list, outputs: list) -> int:
    return 0


FLOP_HANDLES = {
    "vmamba_ops::selective_scan": selective_scan_flop_handle,
    "vmamba_ops::selective_scan_lowrank": selective_scan_lowrank_flop_handle,
    # pure data movement: registered so the analyzers do not report them as unsupported
    "vmamba_ops::cross_scan": _zero_flop_handle,
    "vmamba_ops::cross_merge": _zero_flop_handle,
}


__all__ = [
    "FLOP_HANDLES",
    "selective_scan_flop_handle",
    "selective_scan_flops",
    "selective_scan_lowrank_flop_handle",
]
