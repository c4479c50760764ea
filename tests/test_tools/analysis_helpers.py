"""Shared bits of the analysis-tool tests: a tiny VMamba classifier config, tool loading."""

from __future__ import annotations

import importlib.util
import os

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

TINY_ARCH = dict(
    dims=8,
    depths=(1, 1, 1, 1),
    d_state=1,
    ssm_ratio=1.0,
    forward_type="v05_noz",
    mlp_ratio=2.0,
    patch_embed="v2",
    downsample="v3",
)


def tiny_classifier_model(num_classes: int = 4) -> dict:
    """ImageClassifier(VMamba tiny) -> GAP -> LinearClsHead, as a config dict."""
    return dict(
        type="ImageClassifier",
        data_preprocessor=dict(
            num_classes=num_classes,
            mean=[123.675, 116.28, 103.53],
            std=[58.395, 57.12, 57.375],
            to_rgb=True,
        ),
        backbone=dict(type="VMamba", arch=TINY_ARCH, out_indices=(3,)),
        neck=dict(type="GlobalAveragePooling"),
        head=dict(
            type="LinearClsHead",
            num_classes=num_classes,
            in_channels=64,
            loss=dict(type="CrossEntropyLoss"),
            topk=(1,),
        ),
    )


def write_tiny_config(path: str, extra: str = "") -> str:
    """A classification config file for the tiny classifier (plus ``extra`` config text)."""
    with open(path, "w") as f:
        f.write("default_scope = 'mmpretrain'\n")
        f.write("custom_imports = dict(imports=['mmvmamba'], allow_failed_imports=False)\n")
        f.write(f"model = {tiny_classifier_model()!r}\n")
        f.write(extra)
    return str(path)


def load_tool(name: str):
    """Import ``tools/analysis/<name>.py`` as a module (the tools are scripts, not a package)."""
    path = os.path.join(REPO, "tools", "analysis", f"{name}.py")
    spec = importlib.util.spec_from_file_location(f"analysis_tool_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def assert_png(path: str) -> None:
    """``path`` is a readable PNG image with a non-trivial size."""
    from PIL import Image

    assert os.path.isfile(path), path
    with Image.open(path) as img:
        img.verify()
    with Image.open(path) as img:
        assert img.format == "PNG"
        assert img.size[0] > 50 and img.size[1] > 50


def read_csv(path: str) -> list[dict]:
    import csv

    with open(path) as f:
        return list(csv.DictReader(f))
