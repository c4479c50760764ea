"""Intercepting the selective scan of SS2D layers without changing the layer.

:class:`mmvmamba.models.layers.ss2d.SS2D` calls :func:`vmamba_ops.selective_scan` through the
module-level name ``mmvmamba.models.layers.ss2d.selective_scan``; patching that name is the one
hook point the analysis tools use:

* :func:`identity_scan` replaces the scan by ``y = u`` (the "scan costs nothing" ablation of
  ``benchmark.py``: everything else in the model runs unchanged).
* :func:`capture_scan_inputs` records the arguments of the scans run inside one chosen module
  (``activation_map.py`` rebuilds the attention-like matrix of the scan from them).
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Callable, Iterator

import torch
from torch import Tensor, nn

from vmamba_ops import low_rank_delta

__all__ = ["capture_scan_inputs", "identity_scan", "patch_selective_scan", "ss2d_layers"]

# modules that call the scan through a module-level ``selective_scan`` name
_CALLERS = ("mmvmamba.models.layers.ss2d",)


@contextlib.contextmanager
def patch_selective_scan(wrapper: Callable[[Callable], Callable]) -> Iterator[list[int]]:
    """Replace ``selective_scan`` in the SS2D module by ``wrapper(original)`` for the block.

    The replacement is always called with the full ``delta`` (B, K*Di, L): SS2D's low-rank
    form (``delta_proj=``) is expanded first.

    Yields a one-element list counting the calls of the replacement, so callers can check the
    patch was actually used (a model that never calls it raises nothing by itself).
    """
    calls = [0]
    saved = []
    for name in _CALLERS:
        module = importlib.import_module(name)
        original = module.selective_scan
        replacement = wrapper(original)

        def counted(*args, _fn=replacement, **kwargs):
            calls[0] += 1
            proj = kwargs.pop("delta_proj", None)
            if proj is not None and len(args) > 1:  # replacements see the full delta
                args = (args[0], low_rank_delta(args[1], proj), *args[2:])
            elif proj is not None:
                kwargs["delta"] = low_rank_delta(kwargs["delta"], proj)
            return _fn(*args, **kwargs)

        saved.append((module, original))
        module.selective_scan = counted
    try:
        yield calls
    finally:
        for module, original in saved:
            module.selective_scan = original


def _identity(original: Callable) -> Callable:
    def scan(u: Tensor, delta: Tensor, A: Tensor, *args, return_last_state: bool = False, **kw):
        y = u.float() if u.dtype in (torch.float16, torch.bfloat16) else u
        if return_last_state:
            return y, u.new_zeros((u.shape[0], u.shape[1], A.shape[1]), dtype=torch.float32)
        return y

    return scan


@contextlib.contextmanager
def identity_scan() -> Iterator[list[int]]:
    """Every SS2D selective scan returns its input ``u`` (B, K*Di, L) unchanged (ablation)."""
    with patch_selective_scan(_identity) as calls:
        yield calls


def ss2d_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(name, module)`` of every SS2D layer of ``model``, in forward order."""
    from mmvmamba.models.layers.ss2d import SS2D

    return [(name, m) for name, m in model.named_modules() if isinstance(m, SS2D)]


@contextlib.contextmanager
def capture_scan_inputs(layer: nn.Module) -> Iterator[list[dict]]:
    """Record the arguments of every selective scan run inside ``layer``'s forward.

    Yields a list that fills with one dict per scan call: ``u`` (B, K*Di, L), ``delta``
    (B, K*Di, L), ``A`` (K*Di, N), ``B``/``C`` (B, K, N, L), ``D``, ``delta_bias`` (K*Di,),
    ``delta_softplus`` (bool), detached, plus ``hw`` = the (H, W) of the layer's input map.
    """
    records: list[dict] = []
    state = {"active": False, "hw": None}
    names = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias", "delta_softplus")

    def wrapper(original: Callable) -> Callable:
        def scan(*args, **kwargs):
            if state["active"]:
                bound = dict(zip(names, args))
                bound.update({k: v for k, v in kwargs.items() if k in names})
                rec = {k: (v.detach() if isinstance(v, Tensor) else v) for k, v in bound.items()}
                rec["hw"] = state["hw"]
                records.append(rec)
            return original(*args, **kwargs)

        return scan

    def pre(_module, inputs):
        state["active"] = True
        state["hw"] = tuple(inputs[0].shape[-2:])

    def post(_module, _inputs, _output):
        state["active"] = False

    handles = [layer.register_forward_pre_hook(pre), layer.register_forward_hook(post)]
    try:
        with patch_selective_scan(wrapper):
            yield records
    finally:
        for h in handles:
            h.remove()
