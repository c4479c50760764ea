"""Deployment: torch.export / ONNX export of VMamba classifiers and backbones.

See :mod:`mmvmamba.deployment.export` for the route and ``tools/deployment/pytorch2onnx.py`` for
the command line.
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
    "selective_scan_decomposed",
    "verify_onnx",
]
