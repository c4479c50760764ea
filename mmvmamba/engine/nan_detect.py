"""Stop training at the first NaN/inf, naming the module, input, loss or gradient that made it.

Switch it on in a config::

    custom_hooks = [dict(type='NaNDetectHook')]

It is a debugging aid: every check reads a flag back from the device (a synchronisation per
module), so expect a slower run while it is on.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import torch
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from torch import Tensor, nn

from ..registry import register_hook

__all__ = ["NaNDetectHook", "NonFiniteError", "first_nonfinite"]

_ADVICE = (
    "Things to try: lower the learning rate or add gradient clipping "
    "(optim_wrapper.clip_grad=dict(max_norm=...)); under fp16 AMP use bf16 or a dynamic loss "
    "scale; check the data for broken images or labels."
)


class NonFiniteError(FloatingPointError):
    """A NaN or inf appeared during training; the message names where it first appeared."""


def _tensors(obj: Any, path: str = "") -> Iterator[tuple[str, Tensor]]:
    """(path, tensor) for every floating tensor inside nested tuples/lists/dicts/data samples."""
    if isinstance(obj, Tensor):
        if obj.is_floating_point() or obj.is_complex():
            yield path, obj
    elif isinstance(obj, Mapping):
        for key, value in obj.items():
            yield from _tensors(value, f"{path}[{key!r}]")
    elif isinstance(obj, (list, tuple)):
        for i, value in enumerate(obj):
            yield from _tensors(value, f"{path}[{i}]")


def first_nonfinite(obj: Any) -> tuple[str, str] | None:
    """Find the first floating tensor in ``obj`` holding a NaN or inf.

    Args:
        obj: a tensor or nested tuples/lists/dicts of tensors (other leaves are skipped).

    Returns:
        ``(path, description)``, e.g. ``("[0]", "3 nan, 0 inf of 64 values, shape (2, 32)")``,
        or None when every value is finite.
    """
    for path, t in _tensors(obj):
        if bool(torch.isfinite(t).all()):
            continue
        n_nan = int(torch.isnan(t).sum())
        n_inf = int(torch.isinf(t).sum())
        return path, f"{n_nan} nan, {n_inf} inf of {t.numel()} values, shape {tuple(t.shape)}"
    return None


@register_hook
class NaNDetectHook(Hook):
    """Raise :class:`NonFiniteError` at the first NaN/inf of a training iteration.

    Checked, in the order they happen:

    1. the batch (``before_train_iter``): names the batch index and the image files;
    2. every module's output (forward hooks, innermost module first): names the first module
       whose output is not finite and says whether its inputs already were (then the value
       came from code between modules, in the parent's ``forward``);
    3. every parameter's gradient (when it is accumulated, before the optimizer step): names the
       parameter; skipped under fp16 AMP with loss scaling, where inf gradients are expected
       and the step is skipped by the scaler;
    4. the logged losses (``after_train_iter``): names the loss key.

    Args:
        check_inputs: check the batch of images.
        check_modules: check the outputs of every module.
        check_grads: check the gradients.
        check_loss: check the parsed losses.
        interval: check every ``interval`` iterations (1 = every iteration).
    """

    priority = "VERY_HIGH"

    def __init__(
        self,
        check_inputs: bool = True,
        check_modules: bool = True,
        check_grads: bool = True,
        check_loss: bool = True,
        interval: int = 1,
    ) -> None:
        if not isinstance(interval, int) or interval < 1:
            raise ValueError(f"NaNDetectHook: interval must be an int >= 1, got {interval!r}")
        self.check_inputs = check_inputs
        self.check_modules = check_modules
        self.check_grads = check_grads
        self.check_loss = check_loss
        self.interval = interval
        self._handles: list = []
        self._active = False
        self._where = ""

    # -- installation --------------------------------------------------------------------------
    @staticmethod
    def _model(runner) -> nn.Module:
        return runner.model.module if is_model_wrapper(runner.model) else runner.model

    def before_train(self, runner) -> None:
        """Install the forward hooks on every module and the gradient hooks on every parameter."""
        self._remove()
        model = self._model(runner)
        if self.check_modules:
            for name, module in model.named_modules():
                label = f"'{name}' ({type(module).__name__})" if name else type(module).__name__
                self._handles.append(module.register_forward_hook(self._module_hook(label)))
        grads = self.check_grads
        optim = getattr(runner, "optim_wrapper", None)
        if grads and getattr(optim, "cast_dtype", None) == torch.float16:
            runner.logger.info("NaNDetectHook: fp16 AMP with loss scaling, gradients not checked")
            grads = False
        if grads:
            for name, param in model.named_parameters():
                if param.requires_grad:
                    self._handles.append(
                        param.register_post_accumulate_grad_hook(self._grad_hook(name))
                    )

    def after_train(self, runner) -> None:
        """Remove every hook this object installed."""
        self._remove()

    def _remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
        self._active = False

    # -- checks --------------------------------------------------------------------------------
    def _module_hook(self, label: str):
        def hook(module: nn.Module, args: tuple, output: Any) -> None:
            if not self._active:
                return
            bad = first_nonfinite(output)
            if bad is None:
                return
            self._active = False  # report once; the parents' outputs are non-finite as well
            path, what = bad
            bad_in = first_nonfinite(args)
            if bad_in is None:
                origin = "its inputs were all finite, so this module produced them"
            elif label.startswith("'data_preprocessor'"):
                origin = (
                    f"its input{bad_in[0]} (the batch from the data loader) was already "
                    f"non-finite ({bad_in[1]}): check the data and the data pipeline"
                )
            else:
                origin = (
                    f"its input{bad_in[0]} was already non-finite ({bad_in[1]}): the values "
                    "come from code that runs between modules, in the forward of its parent"
                )
            raise NonFiniteError(
                f"NaNDetectHook: the output{path} of module {label} is not finite ({what}) "
                f"{self._where}; {origin}. {_ADVICE}"
            )

        return hook

    def _grad_hook(self, name: str):
        def hook(param: Tensor) -> None:
            if not self._active or param.grad is None:
                return
            bad = first_nonfinite(param.grad)
            if bad is not None:
                self._active = False
                raise NonFiniteError(
                    f"NaNDetectHook: the gradient of parameter '{name}' is not finite "
                    f"({bad[1]}) {self._where}, while the forward pass was finite. {_ADVICE}"
                )

        return hook

    def before_train_iter(self, runner, batch_idx: int, data_batch: Any = None) -> None:
        """Check the batch and arm the module and gradient checks for this iteration."""
        self._active = runner.iter % self.interval == 0
        self._where = f"at iteration {runner.iter + 1} (epoch {runner.epoch + 1})"
        if not (self._active and self.check_inputs and data_batch is not None):
            return
        inputs = data_batch
        if isinstance(data_batch, Mapping) and "inputs" in data_batch:
            inputs = data_batch["inputs"]
        bad = first_nonfinite(inputs)
        if bad is not None:
            self._active = False
            files = _image_files(data_batch)
            raise NonFiniteError(
                f"NaNDetectHook: batch {batch_idx} has non-finite inputs{bad[0]} ({bad[1]}) "
                f"{self._where}; images: {files or 'unknown'}. Check those files and the "
                "data pipeline."
            )

    def after_train_iter(
        self, runner, batch_idx: int, data_batch: Any = None, outputs: Any = None
    ) -> None:
        """Check the parsed losses and disarm the per-module checks."""
        was_active = self._active
        self._active = False
        if not (was_active and self.check_loss and isinstance(outputs, Mapping)):
            return
        for key, value in outputs.items():
            if isinstance(value, Tensor):
                finite = bool(torch.isfinite(value).all())
            elif isinstance(value, float):
                finite = value == value and abs(value) != float("inf")
            else:
                continue
            if not finite:
                raise NonFiniteError(
                    f"NaNDetectHook: loss '{key}' = {value} {self._where}. {_ADVICE}"
                )


def _image_files(data_batch: Any) -> list[str]:
    """The ``img_path`` of every sample of a batch, when the data samples carry one."""
    samples = data_batch.get("data_samples") if isinstance(data_batch, Mapping) else None
    files = []
    for sample in samples or []:
        path = getattr(sample, "img_path", None)
        if path is None and hasattr(sample, "metainfo"):
            path = sample.metainfo.get("img_path")
        if path is not None:
            files.append(str(path))
    return files
