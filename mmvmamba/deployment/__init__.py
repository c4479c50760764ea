"""Deployment: torch.export / ONNX export of VMamba classifiers and backbones, and CPU
inference fusion.

See :mod:`mmvmamba.deployment.export` for the route and ``tools/deployment/pytorch2onnx.py`` for
the command line; :func:`fuse_for_cpu` (:mod:`mmvmamba.deployment.fuse`) swaps in fused CPU
inference blocks.
"""

from .decompose import (
    DEFAULT_MAX_PASSES,
    cross_merge_decomposed,
    cross_scan_decomposed,
    decompose_vmamba_ops,
    export_decompositions,
    selective_scan_decomposed,
)
from .export import (
    ExportError,
    ExportWrapper,
    build_model_from_config,
    export_onnx,
    export_program,
    verify_onnx,
)
from .fuse import fuse_for_cpu, shared_copy

__all__ = [
    "DEFAULT_MAX_PASSES",
    "ExportError",
    "ExportWrapper",
    "build_model_from_config",
    "cross_merge_decomposed",
    "cross_scan_decomposed",
    "decompose_vmamba_ops",
    "export_decompositions",
    "export_onnx",
    "export_program",
    "fuse_for_cpu",
    "selective_scan_decomposed",
    "shared_copy",
    "verify_onnx",
]
