"""Parameter and FLOP counting, the way the VMamba paper counts.

The official numbers come from fvcore's ``flop_count`` on a batch-1 input: one multiply-add is
one flop (convs, linears, einsums, matmuls), LayerNorm is ``5 * numel``, adaptive average pooling
``numel``; element-wise ops (add, mul, SiLU, GELU, exp, neg, flip, ...) and the cross-scan /
cross-merge data movement are not counted, and the selective scan counts
``9 * B * L * D * N + B * D * L`` (:func:`vmamba_ops.selective_scan_flops`).

mmengine's :class:`~mmengine.analysis.FlopAnalyzer` is a copy of fvcore's counter with the same
default handles, so :func:`count_flops` uses it plus the handles of :data:`vmamba_ops.FLOP_HANDLES`
and reproduces the paper's GFLOPs exactly (see ``tests/test_tools/test_analysis_flops.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

__all__ = [
    "UNCOUNTED_OPS",
    "FlopsReport",
    "count_flops",
    "count_params",
    "scan_flop_handles",
]

# Ops the official counter lists with a ``None`` handle (silu, neg, exp, flip, gelu), plus the
# other element-wise / data-movement ops fvcore leaves uncounted anyway: registering them as
# ignored changes no total, it only silences "unsupported operator" warnings.
UNCOUNTED_OPS: tuple[str, ...] = (
    "aten::silu",
    "aten::silu_",
    "aten::neg",
    "aten::exp",
    "aten::flip",
    "aten::gelu",
    "aten::gelu_",
    "aten::add",
    "aten::add_",
    "aten::sub",
    "aten::rsub",
    "aten::mul",
    "aten::mul_",
    "aten::div",
    "aten::div_",
    "aten::sigmoid",
    "aten::softplus",
    "aten::softmax",
    "aten::log_softmax",
    "aten::repeat",
    "aten::pad",
    "aten::mean",
    "aten::sum",
    "aten::pow",
    "aten::sqrt",
    "aten::rsqrt",
    "aten::layer_norm_backward",
    "aten::expand_as",
    "aten::ones_like",
    "aten::rand",
    "aten::randn",
    "aten::floor_divide",
    "aten::scaled_dot_product_attention",  # see count_flops: counted when attention is used
)


@dataclass
class FlopsReport:
    """What :func:`count_flops` measured.

    Attributes:
        flops: total flops (one multiply-add = 1) of one forward on ``input_shape``.
        params: number of parameters (every tensor of ``model.parameters()``, counted once).
        input_shape: (B, C, H, W) of the traced input.
        by_operator: flops per counted op type (``'conv'``, ``'selective_scan'``, ...).
        by_module: flops per module name ('' = whole model).
        unsupported: ops met while tracing that have no handle (not counted), with their counts.
    """

    flops: int
    params: int
    input_shape: tuple[int, ...]
    by_operator: dict[str, int] = field(default_factory=dict)
    by_module: dict[str, int] = field(default_factory=dict)
    unsupported: dict[str, int] = field(default_factory=dict)

    @property
    def gflops(self) -> float:
        return self.flops / 1e9

    def module_rows(self, max_depth: int = 2) -> list[dict]:
        """One row per module up to ``max_depth`` dots deep: name, GFLOPs, share of the total."""
        rows = []
        for name, value in self.by_module.items():
            if name and name.count(".") + 1 > max_depth:
                continue
            rows.append(
                dict(
                    module=name or "(total)",
                    gflops=value / 1e9,
                    percent=100.0 * value / max(self.flops, 1),
                )
            )
        return rows


def count_params(model: nn.Module) -> int:
    """Number of parameters of ``model`` (shared tensors counted once)."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


def scan_flop_handles() -> dict[str, Callable]:
    """``{traced op name: mmengine handle}`` for the vmamba_ops custom ops.

    These are :data:`vmamba_ops.FLOP_HANDLES`: the handles read shapes from traced values.
    """
    import vmamba_ops

    return dict(vmamba_ops.FLOP_HANDLES)


def _op_label(name: str) -> str:
    return name.split("::")[-1]


def count_flops(
    model: nn.Module,
    input_shape: Sequence[int] = (1, 3, 224, 224),
    inputs: tuple | None = None,
    extra_handles: dict[str, Callable] | None = None,
    count_attention: bool = True,
) -> FlopsReport:
    """Trace one forward of ``model`` and count its flops as the VMamba paper does.

    Args:
        model: a module whose ``forward`` takes the input batch (wrap framework models in
            :class:`mmvmamba.analysis.models.TensorForward`). Put into eval mode here.
        input_shape: (B, C, H, W) of the random input (batch 1 as in the paper), or (C, H, W).
        inputs: explicit forward inputs instead of ``input_shape``.
        extra_handles: more ``{op name: handle}`` (a ``None`` handle ignores the op).
        count_attention: count ``aten::scaled_dot_product_attention`` as its two matmuls
            (``2 * B * heads * Lq * Lk * d``) so transformers compare fairly; fvcore (the
            official counter) ignores it, which does not affect VMamba.

    Returns:
        A :class:`FlopsReport`.
    """
    from mmengine.analysis import FlopAnalyzer

    if inputs is None:
        shape = tuple(int(s) for s in input_shape)
        if len(shape) == 3:
            shape = (1, *shape)
        if len(shape) != 4 or min(shape) < 1:
            raise ValueError(f"input_shape must be (B, C, H, W) or (C, H, W), got {input_shape}")
        param = next(model.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
        inputs = (torch.randn(shape, device=device),)
    elif isinstance(inputs, Tensor):
        inputs = (inputs,)
    shape = tuple(inputs[0].shape)

    was_training = model.training
    model.eval()
    analyzer = FlopAnalyzer(model, inputs)
    analyzer.set_op_handle(**{op: None for op in UNCOUNTED_OPS})
    if count_attention:
        analyzer.set_op_handle(**{"aten::scaled_dot_product_attention": _sdpa_flop_handle})
    analyzer.set_op_handle(**scan_flop_handles())
    if extra_handles:
        analyzer.set_op_handle(**extra_handles)
    analyzer.unsupported_ops_warnings(False)
    analyzer.uncalled_modules_warnings(False)
    analyzer.tracer_warnings("none")
    try:
        with torch.no_grad():
            total = int(analyzer.total())
            by_operator = {_op_label(k): int(v) for k, v in analyzer.by_operator().items()}
            by_module = {k: int(v) for k, v in analyzer.by_module().items()}
            unsupported = dict(analyzer.unsupported_ops())
    finally:
        model.train(was_training)
    from .models import TensorForward

    if isinstance(model, TensorForward):  # names relative to the wrapped model
        by_module = {_unwrap_name(k): v for k, v in by_module.items() if k != ""}
    return FlopsReport(
        flops=total,
        params=count_params(model),
        input_shape=shape,
        by_operator=by_operator,
        by_module=by_module,
        unsupported=unsupported,
    )


def _unwrap_name(name: str) -> str:
    """Module names relative to the wrapped model of a ``TensorForward`` (``model.`` dropped)."""
    if name == "model":
        return ""
    return name[len("model.") :] if name.startswith("model.") else name


def _sdpa_flop_handle(inputs: list, outputs: list) -> int:
    """``softmax(Q K^T) V``: two matmuls of B*heads*Lq*Lk*d multiply-adds each."""
    from mmengine.analysis.jit_handles import get_shape

    q, k = get_shape(inputs[0]), get_shape(inputs[1])
    if q is None or k is None:
        return 0
    lead = 1
    for s in q[:-2]:
        lead *= s
    return 2 * lead * q[-2] * k[-2] * q[-1]
