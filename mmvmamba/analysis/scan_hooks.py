"""Replacing or recording the selective scan of a model's token mixers.

Every mixer (VMamba's :class:`~mmvmamba.models.layers.ss2d.SS2D`, Vim's
:class:`~mmvmamba.models.layers.bimamba.BiMambaV2`) calls its scan through its attribute
``scan_fn`` (by default :func:`vmamba_ops.selective_scan`); the tools here set that attribute on
the mixers of one model for the duration of a ``with`` block, and put the original back after:

* :func:`replace_scan`: ``scan_fn = wrapper(original)`` on every mixer of a model.
* :func:`identity_scan`: the scan returns its input, ``y = u`` (the "scan costs nothing"
  ablation of ``benchmark.py``: everything else in the model runs unchanged).
* :func:`capture_scan_inputs`: records the arguments of the scans run inside one module
  (``activation_map.py`` rebuilds the attention-like matrix of the scan from them).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch
from torch import Tensor, nn

from vmamba_ops import low_rank_delta

__all__ = ["capture_scan_inputs", "identity_scan", "replace_scan", "scan_mixers", "ss2d_layers"]


def scan_mixers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(name, module)`` of every module of ``model`` (itself included) with a ``scan_fn``."""
    return [(n, m) for n, m in model.named_modules() if callable(getattr(m, "scan_fn", None))]


def _full_delta(fn: Callable) -> Callable:
    """``fn`` called with the full ``delta`` (B, D, L): SS2D's low-rank form (``delta`` the
    (B, G, R, L) factor, ``delta_proj`` the (D, R) weight) is expanded first."""

    def scan(*args, **kwargs):
        proj = kwargs.pop("delta_proj", None)
        if proj is not None and len(args) > 1:
            args = (args[0], low_rank_delta(args[1], proj), *args[2:])
        elif proj is not None:
            kwargs["delta"] = low_rank_delta(kwargs["delta"], proj)
        return fn(*args, **kwargs)

    return scan


@contextlib.contextmanager
def replace_scan(model: nn.Module, wrapper: Callable[[Callable], Callable]) -> Iterator[list[int]]:
    """Set ``scan_fn = wrapper(original)`` on every mixer of ``model`` for the block.

    The replacement is called with the signature of :func:`vmamba_ops.selective_scan` and
    always with the full ``delta`` (B, D, L) (no ``delta_proj``).

    Yields a one-element list counting the calls of the replacements, so callers can check
    that the model really ran them.

    Raises:
        ValueError: ``model`` has no module with a ``scan_fn`` (no SS2D / BiMambaV2).
    """
    mixers = [m for _, m in scan_mixers(model)]
    if not mixers:
        raise ValueError(
            f"{type(model).__name__} has no selective-scan mixer (a module with a scan_fn, "
            "such as SS2D or BiMambaV2) to replace"
        )
    calls = [0]
    originals = [m.scan_fn for m in mixers]
    for mixer, original in zip(mixers, originals):
        replacement = _full_delta(wrapper(original))

        def counted(*args, _fn=replacement, **kwargs):
            calls[0] += 1
            return _fn(*args, **kwargs)

        mixer.scan_fn = counted
    try:
        yield calls
    finally:
        for mixer, original in zip(mixers, originals):
            mixer.scan_fn = original


def _identity(original: Callable) -> Callable:
    def scan(u: Tensor, delta: Tensor, A: Tensor, *args, return_last_state: bool = False, **kw):
        y = u.float() if u.dtype in (torch.float16, torch.bfloat16) else u
        if return_last_state:
            return y, u.new_zeros((u.shape[0], u.shape[1], A.shape[1]), dtype=torch.float32)
        return y

    return scan


@contextlib.contextmanager
def identity_scan(model: nn.Module) -> Iterator[list[int]]:
    """Every selective scan of ``model`` returns its input ``u`` (B, D, L) unchanged
    (ablation); yields the call counter of :func:`replace_scan`."""
    with replace_scan(model, _identity) as calls:
        yield calls


def ss2d_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(name, module)`` of every SS2D layer of ``model``, in forward order."""
    from mmvmamba.models.layers.ss2d import SS2D

    return [(name, m) for name, m in model.named_modules() if isinstance(m, SS2D)]


@contextlib.contextmanager
def capture_scan_inputs(layer: nn.Module) -> Iterator[list[dict]]:
    """Record the arguments of every selective scan run by the mixers in ``layer``.

    Yields a list that fills with one dict per scan call: ``u`` (B, D, L), ``delta``
    (B, D, L), ``A`` (D, N), ``B``/``C`` (B, G, N, L), ``D``, ``z``, ``delta_bias`` (D,),
    ``delta_softplus`` (bool), detached, plus ``hw`` = the last two dims of ``layer``'s input
    (the (H, W) of an SS2D's map). For SS2D, D = K*Di and G = K routes.
    """
    records: list[dict] = []
    hw: list[tuple[int, ...]] = [()]
    names = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias", "delta_softplus")

    def wrapper(original: Callable) -> Callable:
        def scan(*args, **kwargs):
            bound = dict(zip(names, args))
            bound.update({k: v for k, v in kwargs.items() if k in names})
            rec = {k: (v.detach() if isinstance(v, Tensor) else v) for k, v in bound.items()}
            rec["hw"] = hw[0]
            records.append(rec)
            return original(*args, **kwargs)

        return scan

    def remember_size(_module, inputs):
        hw[0] = tuple(inputs[0].shape[-2:])

    handle = layer.register_forward_pre_hook(remember_size)
    try:
        with replace_scan(layer, wrapper):
            yield records
    finally:
        handle.remove()
