"""Official VMamba checkpoints -> converter (function and CLI) -> our models: identical outputs.

The "official" files are made from one of our models by renaming its keys to the official
names (facts §3: classifier, legacy v0 names, ``backbone.``-prefixed detection releases), so the
round trip checks the mapping in both directions, and the loaded model must reproduce the
source model's outputs exactly.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mmvmamba.checkpoint import CheckpointError
from mmvmamba.checkpoint.vmamba import convert_vmamba_checkpoint
from mmvmamba.models.backbones import VMamba

ROOT = Path(__file__).resolve().parents[2]
CLI = ROOT / "tools" / "model_converters" / "vmamba_to_mmvmamba.py"
NUM_CLASSES = 5

V2_ARCH = dict(VMamba.arch_zoo["tiny"], dims=8, depths=(1, 2, 1, 1))
V0_ARCH = dict(VMamba.arch_zoo["v0-tiny"], dims=8, depths=(1, 1, 2, 1))


def load_cli():
    """The CLI module, imported from its file (tools/ is not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("vmamba_to_mmvmamba", CLI)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def classifier_cfg(arch: dict) -> dict:
    """mmpretrain ImageClassifier as in configs/classification (backbone + GAP + linear)."""
    return dict(
        type="ImageClassifier",
        backbone=dict(type="VMamba", arch=arch, out_indices=(3,)),
        neck=dict(type="GlobalAveragePooling"),
        head=dict(type="LinearClsHead", num_classes=NUM_CLASSES, in_channels=64),
    )


def build_classifier(arch: dict):
    from mmpretrain.registry import MODELS

    return MODELS.build(classifier_cfg(arch)).eval()


def randomise(model: torch.nn.Module) -> torch.nn.Module:
    """Non-trivial values everywhere (norms too), so a mis-mapped tensor changes the output."""
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


def to_official_classifier(clf_sd: dict, legacy: bool = False) -> dict:
    """Our ImageClassifier state dict -> the official VSSM state dict (classifier.norm/head)."""
    out = {}
    for key, value in clf_sd.items():
        if key.startswith("head.fc."):
            key = "classifier.head." + key[len("head.fc.") :]
        else:
            key = key[len("backbone.") :]
            key = re.sub(r"^outnorm3\.", "classifier.norm.", key)
        if legacy:  # the oldest v0 names (facts §3.2)
            key = re.sub(r"^patch_embed\.0\.", "patch_embed.proj.", key)
            key = re.sub(r"^patch_embed\.2\.", "patch_embed.norm.", key)
            key = re.sub(r"\.blocks\.(\d+)\.norm\.", r".blocks.\1.ln_1.", key)
            key = re.sub(r"\.blocks\.(\d+)\.op\.", r".blocks.\1.self_attention.", key)
            key = re.sub(r"^classifier\.norm\.", "norm.", key)
            key = re.sub(r"^classifier\.head\.", "head.", key)
        out[key] = value.clone()
    return out


def official_file(tmp_path: Path, name: str, model_sd: dict, ema_sd: dict | None = None) -> Path:
    """An official-format classification file: model, model_ema and the training extras."""
    import argparse

    ckpt = {
        "model": model_sd,
        "optimizer": {},
        "lr_scheduler": {},
        "max_accuracy": 82.6,
        "epoch": 263,
        "config": argparse.Namespace(MODEL="vssm"),
    }
    if ema_sd is not None:
        ckpt["model_ema"] = ema_sd
    path = tmp_path / name
    torch.save(ckpt, path)
    return path


@pytest.mark.parametrize(
    "arch, legacy",
    [(V2_ARCH, False), (V0_ARCH, False), (V0_ARCH, True)],
    ids=["v2", "v0", "v0-legacy"],
)
@pytest.mark.parametrize("use_ema", [False, True], ids=["model", "ema"])
def test_classifier_round_trip_function_and_cli(tmp_path, arch, legacy, use_ema):
    src = randomise(build_classifier(arch))
    other = randomise(build_classifier(arch))  # a different net: the EMA/non-EMA decoy
    x = torch.randn(2, 3, 21, 19)
    with torch.no_grad():
        want = src(x, mode="tensor")
    model_sd = to_official_classifier((other if use_ema else src).state_dict(), legacy)
    ema_sd = to_official_classifier((src if use_ema else other).state_dict(), legacy)
    path = official_file(tmp_path, "official.pth", model_sd, ema_sd)

    # the pure function
    converted = convert_vmamba_checkpoint(torch.load(path, weights_only=False), use_ema=use_ema)
    dst = build_classifier(arch)
    dst.load_state_dict(converted, strict=True)
    with torch.no_grad():
        torch.testing.assert_close(dst(x, mode="tensor"), want, rtol=0, atol=0)

    # the CLI (in-process) writes a weights_only-loadable state dict
    main = load_cli().main
    out = tmp_path / "converted.pth"
    args = [str(path), str(out)] + (["--ema"] if use_ema else [])
    assert main(args) == 0
    state = torch.load(out, weights_only=True)
    assert state.keys() == converted.keys()
    dst = build_classifier(arch)
    dst.load_state_dict(state, strict=True)
    with torch.no_grad():
        torch.testing.assert_close(dst(x, mode="tensor"), want, rtol=0, atol=0)


@pytest.mark.slow
def test_cli_as_a_script_backbone_target(tmp_path):
    """``python tools/model_converters/vmamba_to_mmvmamba.py SRC DST --target backbone``."""
    src = randomise(build_classifier(V2_ARCH))
    path = official_file(tmp_path, "official.pth", to_official_classifier(src.state_dict()))
    out = tmp_path / "backbone.pth"
    proc = subprocess.run(
        [sys.executable, str(CLI), str(path), str(out), "--target", "backbone"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    state = torch.load(out, weights_only=True)
    assert "outnorm3.weight" in state and not any(
        k.startswith(("head", "classifier")) for k in state
    )
    backbone = VMamba(V2_ARCH, out_indices=(3,)).eval()
    backbone.load_state_dict(state, strict=True)
    x = torch.randn(1, 3, 19, 17)
    with torch.no_grad():
        torch.testing.assert_close(backbone(x)[0], src.backbone(x)[0], rtol=0, atol=0)


def test_cli_reports_missing_ema_and_bad_files(tmp_path):
    main = load_cli().main
    src = build_classifier(V2_ARCH)
    path = official_file(tmp_path, "noema.pth", to_official_classifier(src.state_dict()))
    assert main([str(path), str(tmp_path / "x.pth"), "--ema"]) == 1
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    assert main([str(bad), str(tmp_path / "y.pth")]) == 1
    assert not (tmp_path / "x.pth").exists() and not (tmp_path / "y.pth").exists()


def test_detection_release_to_backbone():
    """Detection/segmentation releases: ``backbone.*`` (with outnorm0..3) + neck/heads."""
    src = randomise(VMamba(V2_ARCH, out_indices=(0, 1, 2, 3)))
    det = {"backbone." + k: v for k, v in src.state_dict().items()}
    det["neck.lateral_convs.0.conv.weight"] = torch.zeros(4, 8, 1, 1)
    det["rpn_head.rpn_conv.weight"] = torch.zeros(4, 4, 3, 3)
    state = convert_vmamba_checkpoint({"state_dict": det, "meta": {}}, target="backbone")
    assert state.keys() == src.state_dict().keys()
    dst = VMamba(V2_ARCH, out_indices=(0, 1, 2, 3))
    dst.load_state_dict(state, strict=True)
    x = torch.randn(1, 3, 21, 18)
    with torch.no_grad():
        for a, b in zip(dst.eval()(x), src.eval()(x)):
            torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_converter_is_pure_and_idempotent():
    src = build_classifier(V2_ARCH)
    official = {"model": to_official_classifier(src.state_dict())}
    snapshot = dict(official["model"])
    ours = convert_vmamba_checkpoint(official)
    assert official["model"] == snapshot  # input untouched
    assert ours.keys() == src.state_dict().keys()
    again = convert_vmamba_checkpoint(ours)  # already native: unchanged
    assert again.keys() == ours.keys() and all(again[k] is ours[k] for k in ours)
    backbone = convert_vmamba_checkpoint(ours, target="backbone")
    assert backbone.keys() == src.backbone.state_dict().keys()
    assert convert_vmamba_checkpoint(backbone, target="backbone").keys() == backbone.keys()


def test_converter_errors():
    with pytest.raises(CheckpointError, match="model_ema"):
        convert_vmamba_checkpoint({"model": {"a": torch.zeros(1)}}, use_ema=True)
    with pytest.raises(ValueError, match="target 'detector'"):
        convert_vmamba_checkpoint({"a": torch.zeros(1)}, target="detector")
    with pytest.raises(CheckpointError, match="not tensors"):
        convert_vmamba_checkpoint({"model": {"a": "text"}})
    with pytest.raises(CheckpointError, match="prefix 'student.'"):
        convert_vmamba_checkpoint({"a.b": torch.zeros(1)}, prefix="student.")


# ------------------------------------------------------------------ loading without the converter
@pytest.mark.parametrize(
    "arch, legacy", [(V2_ARCH, False), (V0_ARCH, True)], ids=["v2", "v0-legacy"]
)
def test_official_file_converts_while_loading_into_the_classifier(tmp_path, arch, legacy):
    """The official file as released, loaded into the whole classifier by mmengine's
    ``load_checkpoint``, mmpretrain's ``get_model(..., pretrained=...)`` and a plain strict
    ``load_state_dict``: the same logits as the converter path, bit for bit."""
    from mmengine.config import Config
    from mmengine.runner import load_checkpoint
    from mmpretrain import get_model

    src = randomise(build_classifier(arch))
    official = to_official_classifier(src.state_dict(), legacy)
    path = official_file(tmp_path, "official.pth", official)
    x = torch.randn(2, 3, 21, 19)
    converted = build_classifier(arch)
    converted.load_state_dict(convert_vmamba_checkpoint(torch.load(path, weights_only=False)))
    with torch.no_grad():
        want = converted(x, mode="tensor")
        torch.testing.assert_close(want, src(x, mode="tensor"), rtol=0, atol=0)

    by_mmengine = build_classifier(arch)
    load_checkpoint(by_mmengine, str(path), map_location="cpu", strict=True)
    by_torch = build_classifier(arch)
    by_torch.load_state_dict(official)  # strict
    by_hub = get_model(Config(dict(model=classifier_cfg(arch))), pretrained=str(path)).eval()
    with torch.no_grad():
        torch.testing.assert_close(by_mmengine(x, mode="tensor"), want, rtol=0, atol=0)
        torch.testing.assert_close(by_torch(x, mode="tensor"), want, rtol=0, atol=0)
        torch.testing.assert_close(by_hub(x, mode="tensor"), want, rtol=0, atol=0)


def test_foreign_keys_in_an_official_file_are_named_not_skipped(tmp_path):
    """Strict loads of a converted-while-loading file still name every key that does not fit."""
    from mmengine.runner import load_checkpoint

    official = to_official_classifier(build_classifier(V2_ARCH).state_dict())
    official["pos_embed"] = torch.zeros(1, 4, 8)
    del official["layers.0.blocks.0.op.Ds"]
    path = official_file(tmp_path, "foreign.pth", official)
    with pytest.raises(RuntimeError, match="pos_embed") as info:
        load_checkpoint(build_classifier(V2_ARCH), str(path), map_location="cpu", strict=True)
    assert "layers.0.blocks.0.op.Ds" in str(info.value)
    with pytest.raises(RuntimeError, match=r"backbone\.pos_embed"):
        build_classifier(V2_ARCH).load_state_dict(official)
