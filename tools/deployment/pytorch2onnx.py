"""Export a VMamba classifier or backbone to ONNX, and check it against PyTorch in onnxruntime.

    python tools/deployment/pytorch2onnx.py CONFIG CHECKPOINT [--shape H W] [--out model.onnx]
        [--part {classifier,backbone}] [--static] [--verify] [--verify-shape H W ...]
        [--atol 1e-4] [--non-strict]

CHECKPOINT is an mmengine checkpoint (or a plain state dict), read with ``weights_only=True``;
``none`` exports the initial weights (for benchmarks and tests). The ONNX model takes the
normalised image batch ``input`` (B, 3, H, W) float32 and returns ``output`` (B, num_classes)
logits (classifier) or ``feat0..featN`` (backbone). Batch, H and W are dynamic axes unless
``--static``. ``--verify`` runs the file in onnxruntime at the export shape and at every
``--verify-shape`` (default: one more resolution) and fails if any output differs from PyTorch
by more than ``--atol`` (+ the same relative tolerance).
"""

# ruff: noqa: E402  (the frameworks are imported after quiet_known_warnings())
from __future__ import annotations

from mmvmamba.utils import quiet_known_warnings

quiet_known_warnings()  # the frameworks' known deprecation notes are not the user's

import argparse
import sys
import time


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line arguments (see the module docstring)."""
    parser = argparse.ArgumentParser(description="Export a classifier/backbone to ONNX")
    parser.add_argument("config", help="config file")
    parser.add_argument("checkpoint", help="checkpoint file, or 'none' for the initial weights")
    parser.add_argument("--shape", type=int, nargs=2, default=[224, 224], metavar=("H", "W"))
    parser.add_argument("--out", default="model.onnx", help="output .onnx file")
    parser.add_argument("--part", choices=["classifier", "backbone"], default="classifier")
    parser.add_argument("--static", action="store_true", help="fixed batch/H/W axes")
    parser.add_argument("--verify", action="store_true", help="compare with PyTorch in ORT")
    parser.add_argument(
        "--verify-shape",
        type=int,
        nargs=2,
        action="append",
        metavar=("H", "W"),
        help="another (H, W) to verify at (repeatable; default: H+32, W+64)",
    )
    parser.add_argument("--atol", type=float, default=1e-4, help="verification tolerance")
    parser.add_argument("--non-strict", action="store_true", help="allow a partial load")
    parser.add_argument("--opset", type=int, default=None, help="ONNX opset version")
    args = parser.parse_args(argv)
    for v in args.shape + sum(args.verify_shape or [], []):
        if v < 1:
            parser.error(f"shapes must be positive, got {v}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import mmvmamba  # noqa: F401  (registries, checkpoint allow-list)
    from mmvmamba.checkpoint.io import CheckpointError
    from mmvmamba.deployment import (
        ExportError,
        ExportWrapper,
        build_model_from_config,
        export_onnx,
        verify_onnx,
    )

    ckpt = None if args.checkpoint.lower() == "none" else args.checkpoint
    try:
        model = build_model_from_config(args.config, ckpt, strict=not args.non_strict)
        module = ExportWrapper(model, args.part)
        t0 = time.time()
        out = export_onnx(
            module, args.out, tuple(args.shape), dynamic=not args.static, opset=args.opset
        )
        print(
            f"exported {args.part} of {args.config} to {out} in {time.time() - t0:.1f} s "
            f"({'static' if args.static else 'dynamic batch/H/W'})"
        )
        if args.verify:
            h, w = args.shape
            shapes = [tuple(args.shape)]
            if not args.static:
                shapes += [tuple(s) for s in args.verify_shape or [(h + 32, w + 64)]]
            for r in verify_onnx(out, module, shapes, atol=args.atol, rtol=args.atol):
                print(
                    f"verify {r['shape'][0]}x{r['shape'][1]}: max abs error "
                    f"{r['max_abs_err']:.2e} (tolerance {args.atol:g}) OK"
                )
    except (FileNotFoundError, ValueError, CheckpointError, ExportError, ImportError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
