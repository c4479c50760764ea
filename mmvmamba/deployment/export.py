"""Export a classifier or a backbone to ``torch.export`` / ONNX, and check the result.

Route (no change to the model or the kernels is needed)::

    model (eval) --torch.export--> ExportedProgram with vmamba_ops::* nodes
      --decompose_vmamba_ops--> standard ATen ops only (doubling scan, flips, transposes)
      --torch.onnx.export--> model.onnx, dynamic batch / H / W
      --onnxruntime--> compared with the PyTorch model at each requested shape

The exported graph takes the *normalised* image batch ``(B, 3, H, W)`` float32 (the model's
``data_preprocessor``, i.e. mean/std and BGR->RGB, is not part of it) and returns the logits
``(B, num_classes)`` for ``part='classifier'`` or the tuple of backbone feature maps
``(B, C_i, H_i, W_i)`` for ``part='backbone'``.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from .decompose import DEFAULT_MAX_PASSES, decompose_vmamba_ops

__all__ = [
    "ExportError",
    "ExportWrapper",
    "build_model_from_config",
    "export_onnx",
    "export_program",
    "verify_onnx",
]

PARTS = ("classifier", "backbone")


class ExportError(RuntimeError):
    """Export failed, or the exported model does not match PyTorch."""


def build_model_from_config(
    config: str | os.PathLike, checkpoint: str | os.PathLike | None = None, strict: bool = True
) -> nn.Module:
    """Build the ``model`` of an OpenMMLab config and load a checkpoint into it, safely.

    Args:
        config: a config file (mmpretrain, mmdet or mmseg; ``custom_imports`` are honoured).
        checkpoint: a ``.pth`` with ``state_dict`` (mmengine) or a plain state dict; None keeps
            the initial weights. Read with ``weights_only=True`` and loaded strictly.
        strict: if False, load the matching keys and log the others.

    Returns:
        The model in eval mode on the CPU.

    Raises:
        FileNotFoundError: the config does not exist.
        mmvmamba.checkpoint.CheckpointError: the checkpoint cannot be read or does not fit.
    """
    from mmengine.config import Config
    from mmengine.registry import MODELS, init_default_scope

    from ..checkpoint.io import load_checkpoint_file, load_state_dict_checked, unwrap_checkpoint

    if not Path(config).is_file():
        raise FileNotFoundError(f"config file not found: '{config}'")
    cfg = Config.fromfile(str(config))
    init_default_scope(cfg.get("default_scope", "mmpretrain"))
    model_cfg = cfg.model.copy()
    # the weights come from `checkpoint`; do not fetch the backbone's pretrained file
    if checkpoint is not None and isinstance(model_cfg.get("backbone"), dict):
        model_cfg.backbone.pop("init_cfg", None)
    model = MODELS.build(model_cfg)
    if checkpoint is None:
        if hasattr(model, "init_weights"):
            model.init_weights()
    else:
        state = unwrap_checkpoint(load_checkpoint_file(checkpoint))
        load_state_dict_checked(model, state, strict=strict, source=f"checkpoint '{checkpoint}'")
    return model.eval()


class ExportWrapper(nn.Module):
    """Expose one tensor-in, tensors-out forward of an OpenMMLab model.

    Args:
        model: an mmpretrain ``ImageClassifier`` (``part='classifier'``), or any model with a
            ``backbone`` attribute, or a backbone itself (``part='backbone'``).
        part: ``'classifier'``: ``(B, 3, H, W) -> (B, num_classes)`` logits (before softmax);
            ``'backbone'``: ``(B, 3, H, W) -> tuple of (B, C_i, H_i, W_i)``.
    """

    def __init__(self, model: nn.Module, part: str = "classifier") -> None:
        super().__init__()
        if part not in PARTS:
            raise ValueError(f"ExportWrapper: part must be one of {PARTS}, got {part!r}")
        if part == "classifier" and not (hasattr(model, "head") and hasattr(model, "backbone")):
            raise ValueError(
                f"ExportWrapper: part='classifier' needs an image classifier with a backbone and "
                f"a head, got {type(model).__name__}; export the backbone with part='backbone'"
            )
        self.part = part
        self.model = model

    def forward(self, x: Tensor) -> Tensor | tuple[Tensor, ...]:
        """(B, 3, H, W) normalised images -> logits or feature maps (see the class docstring)."""
        if self.part == "classifier":
            return self.model(x, mode="tensor")
        backbone = getattr(self.model, "backbone", self.model)
        return tuple(backbone(x))


def _dynamic_shapes(dynamic: bool):
    if not dynamic:
        return None
    auto = torch.export.Dim.AUTO
    return {"x": {0: auto, 2: auto, 3: auto}}


def export_program(
    module: nn.Module,
    shape: Sequence[int],
    batch: int = 2,
    dynamic: bool = True,
    max_passes: int = DEFAULT_MAX_PASSES,
) -> torch.export.ExportedProgram:
    """``torch.export`` a module taking ``(B, 3, H, W)``, with vmamba_ops decomposed.

    Args:
        module: e.g. an :class:`ExportWrapper` (put in eval mode here).
        shape: example (H, W).
        batch: example batch size (>= 2 when dynamic: torch specialises sizes 0 and 1).
        dynamic: make batch, H and W dynamic (torch infers the allowed values); a warning
            names any axis torch had to fix.
        max_passes: scan passes for dynamic lengths (exact up to L = 2**max_passes).

    Returns:
        An ExportedProgram of standard ATen ops.
    """
    h, w = (int(s) for s in shape)
    in_ch = _in_channels(module)
    x = torch.randn(batch, in_ch, h, w)
    module = module.eval()
    try:
        program = torch.export.export(module, (x,), dynamic_shapes=_dynamic_shapes(dynamic))
    except Exception as err:  # torch's message is long; say which step failed first
        raise ExportError(
            f"torch.export failed for input (B={batch}, C={in_ch}, H={h}, W={w}): "
            f"{type(err).__name__}: {err}"
        ) from err
    if dynamic:
        fixed = _static_axes(program)
        if fixed:
            warnings.warn(
                f"torch.export fixed the input axes {fixed} to the example shape "
                f"{(batch, in_ch, h, w)}: the exported model only accepts those sizes",
                stacklevel=2,
            )
    return decompose_vmamba_ops(program, max_passes=max_passes)


def _static_axes(program: torch.export.ExportedProgram) -> list[str]:
    """Names of the input axes (batch/H/W) that are plain ints in the exported graph."""
    user_input = program.graph_signature.user_inputs[0]
    node = next(n for n in program.graph.nodes if n.op == "placeholder" and n.name == user_input)
    shape = node.meta["val"].shape
    return [name for name, i in (("batch", 0), ("H", 2), ("W", 3)) if isinstance(shape[i], int)]


def _in_channels(module: nn.Module) -> int:
    for sub in module.modules():
        if isinstance(sub, nn.Conv2d):
            return sub.in_channels
    return 3


def export_onnx(
    module: nn.Module,
    out: str | os.PathLike,
    shape: Sequence[int] = (224, 224),
    dynamic: bool = True,
    opset: int | None = None,
    max_passes: int = DEFAULT_MAX_PASSES,
) -> Path:
    """Export ``module`` to an ONNX file (input ``input``, outputs ``output`` or ``feat{i}``).

    Args:
        module: a module taking ``(B, 3, H, W)``, e.g. an :class:`ExportWrapper`.
        out: the ``.onnx`` file to write.
        shape: example (H, W).
        dynamic: dynamic batch, H and W axes.
        opset: ONNX opset (default: the exporter's).
        max_passes: scan passes for dynamic lengths.

    Returns:
        The path written.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    program = export_program(module, shape, dynamic=dynamic, max_passes=max_passes)
    with torch.no_grad():
        sample = program.module()(torch.randn(2, _in_channels(module), *shape))
    n_out = len(sample) if isinstance(sample, (tuple, list)) else 1
    output_names = ["output"] if n_out == 1 else [f"feat{i}" for i in range(n_out)]
    kwargs = {} if opset is None else {"opset_version": opset}
    try:
        onnx_program = torch.onnx.export(
            program,
            input_names=["input"],
            output_names=output_names,
            dynamo=True,
            verbose=False,
            **kwargs,
        )
    except Exception as err:
        raise ExportError(f"ONNX translation failed: {type(err).__name__}: {err}") from err
    onnx_program.save(str(out))
    return out


def verify_onnx(
    onnx_file: str | os.PathLike,
    module: nn.Module,
    shapes: Sequence[Sequence[int]],
    batch: int = 2,
    atol: float = 1e-4,
    rtol: float = 1e-4,
    seed: int = 0,
) -> list[dict]:
    """Run the ONNX file in onnxruntime (CPU) and compare it with ``module`` at each shape.

    Args:
        onnx_file: from :func:`export_onnx`.
        module: the PyTorch module that was exported.
        shapes: (H, W) pairs to check.
        batch: batch size of the random inputs.
        atol, rtol: ``|onnx - torch| <= atol + rtol * |torch|`` elementwise.
        seed: seed of the random inputs.

    Returns:
        One dict per shape: ``shape``, ``max_abs_err``, ``ok``.

    Raises:
        ImportError: onnxruntime is not installed (says how to install it).
        ExportError: a shape does not run, or an output differs beyond the tolerance.
    """
    try:
        import onnxruntime as ort
    except ImportError as err:
        raise ImportError(
            "verifying an ONNX export needs onnxruntime: pip install onnxruntime"
        ) from err
    session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    gen = torch.Generator().manual_seed(seed)
    in_ch = _in_channels(module)
    results = []
    module = module.eval()
    for h, w in shapes:
        x = torch.randn(batch, in_ch, int(h), int(w), generator=gen)
        with torch.no_grad():
            ref = module(x)
        refs = list(ref) if isinstance(ref, (tuple, list)) else [ref]
        try:
            outs = session.run(None, {input_name: x.numpy()})
        except Exception as err:
            raise ExportError(
                f"onnxruntime cannot run '{onnx_file}' at input shape {tuple(x.shape)}: {err}. "
                "If the model was exported with --static, export it at this shape."
            ) from err
        max_err, ok = 0.0, True
        for r, o in zip(refs, outs):
            o = torch.from_numpy(o)
            if o.shape != r.shape:
                raise ExportError(
                    f"ONNX output shape {tuple(o.shape)} != PyTorch {tuple(r.shape)} at input "
                    f"{tuple(x.shape)}"
                )
            err = (o - r).abs()
            max_err = max(max_err, float(err.max()))
            ok &= bool((err <= atol + rtol * r.abs()).all())
        results.append({"shape": (int(h), int(w)), "max_abs_err": max_err, "ok": ok})
        if not ok:
            raise ExportError(
                f"ONNX output differs from PyTorch at input {tuple(x.shape)}: max abs error "
                f"{max_err:.3e} > atol {atol} + rtol {rtol} * |ref|"
            )
    return results
