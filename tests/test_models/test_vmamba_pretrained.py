"""``init_cfg=dict(type='Pretrained', ...)``: official files load strictly through the converter."""

from __future__ import annotations

import argparse

import pytest
import torch

from mmvmamba.checkpoint import CheckpointError
from mmvmamba.models.backbones import VMamba

ARCH = dict(VMamba.arch_zoo["tiny"], dims=8, depths=(1, 1, 2, 1))


def randomised(out_indices=(0, 1, 2, 3)) -> VMamba:
    model = VMamba(ARCH, out_indices=out_indices)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model.eval()


def save_classification(tmp_path, src: VMamba, ema: VMamba | None = None, extra=None):
    """An official classification file made from ``src`` (outnorm3 -> classifier.norm)."""

    def official(model):
        sd = {
            k.replace("outnorm3.", "classifier.norm."): v.clone()
            for k, v in model.state_dict().items()
        }
        sd = {k: v for k, v in sd.items() if not k.startswith("outnorm")}
        sd["classifier.head.weight"] = torch.randn(10, 64)
        sd["classifier.head.bias"] = torch.randn(10)
        sd.update(extra or {})
        return sd

    ckpt = {"model": official(src), "epoch": 3, "config": argparse.Namespace(a=1)}
    if ema is not None:
        ckpt["model_ema"] = official(ema)
    path = tmp_path / "cls.pth"
    torch.save(ckpt, path)
    return str(path)


def pretrained(path, **kwargs) -> dict:
    return dict(type="Pretrained", checkpoint=path, **kwargs)


def assert_same_stages(a: VMamba, b: VMamba, stages, x: torch.Tensor) -> None:
    """The outputs of ``stages`` of the two backbones are bit-identical."""
    with torch.no_grad():
        out_a, out_b = a.eval()(x), b.eval()(x)
    for stage in stages:
        got, want = out_a[a.out_indices.index(stage)], out_b[b.out_indices.index(stage)]
        torch.testing.assert_close(got, want, rtol=0, atol=0, msg=f"stage {stage}")


def test_classification_checkpoint_into_detection_backbone(tmp_path):
    """out_indices (0,1,2,3) from a classifier: outnorm3 = classifier.norm, outnorm0-2 keep
    their init (1, 0), every other tensor is the checkpoint's."""
    src = randomised()
    path = save_classification(tmp_path, src)
    model = VMamba(ARCH, out_indices=(0, 1, 2, 3), init_cfg=pretrained(path))
    model.init_weights()
    got, want = model.state_dict(), src.state_dict()
    for key in want:
        if key.startswith(("outnorm0", "outnorm1", "outnorm2")):
            assert torch.all(got[key] == (1.0 if key.endswith("weight") else 0.0)), key
        else:
            assert torch.equal(got[key], want[key]), key
    assert_same_stages(model, src, [3], torch.randn(1, 3, 25, 19))


def test_use_ema_and_classifier_backbone(tmp_path):
    src, decoy = randomised(out_indices=(3,)), randomised(out_indices=(3,))
    path = save_classification(tmp_path, decoy, ema=src)
    model = VMamba(ARCH, out_indices=(3,), init_cfg=pretrained(path, use_ema=True))
    model.init_weights()
    assert_same_stages(model, src, [3], torch.randn(1, 3, 17, 22))


def test_detection_release_with_and_without_prefix(tmp_path):
    src = randomised()
    det = {"backbone." + k: v for k, v in src.state_dict().items()}
    det["neck.fpn_convs.0.conv.weight"] = torch.zeros(2, 2, 3, 3)
    path = tmp_path / "det.pth"
    torch.save({"state_dict": det, "meta": {"epoch": 12}}, path)
    for kwargs in ({}, {"prefix": "backbone."}):
        model = VMamba(ARCH, out_indices=(0, 1, 2, 3), init_cfg=pretrained(str(path), **kwargs))
        model.init_weights()
        assert_same_stages(model, src, range(4), torch.randn(1, 3, 21, 18))
    # outnorms of stages that are not outputs are dropped (logged), the rest loads strictly
    model = VMamba(ARCH, out_indices=(1, 3), init_cfg=pretrained(str(path)))
    model.init_weights()
    assert_same_stages(model, src, [1, 3], torch.randn(1, 3, 21, 18))


def test_strict_loading_lists_bad_keys_and_loads_nothing(tmp_path):
    src = randomised()
    path = save_classification(tmp_path, src, extra={"pos_embed": torch.zeros(1, 8, 56, 56)})
    ckpt = torch.load(path, weights_only=False)
    del ckpt["model"]["layers.2.blocks.1.op.A_logs"]
    ckpt["model"]["layers.0.blocks.0.op.Ds"] = torch.ones(3)
    torch.save(ckpt, path)
    model = VMamba(ARCH, out_indices=(0, 1, 2, 3), init_cfg=pretrained(path))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointError) as err:
        model.init_weights()
    msg = str(err.value)
    assert "layers.2.blocks.1.op.A_logs" in msg  # missing
    assert "pos_embed" in msg  # unexpected
    assert "layers.0.blocks.0.op.Ds" in msg  # shape mismatch
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())

    # strict=False: what matches loads, the rest is reported in the log
    model = VMamba(ARCH, out_indices=(0, 1, 2, 3), init_cfg=pretrained(path, strict=False))
    model.init_weights()
    key = "layers.1.blocks.0.op.x_proj_weight"
    assert torch.equal(model.state_dict()[key], src.state_dict()[key])


def test_pretrained_option_errors(tmp_path):
    path = save_classification(tmp_path, randomised())
    with pytest.raises(ValueError, match=r"unknown keys \['revise_keys'\]"):
        VMamba(ARCH, init_cfg=pretrained(path, revise_keys=[])).init_weights()
    with pytest.raises(ValueError, match="needs checkpoint"):
        VMamba(ARCH, init_cfg=dict(type="Pretrained")).init_weights()
    with pytest.raises(ValueError, match="alone"):
        VMamba(
            ARCH, init_cfg=[pretrained(path), dict(type="Constant", layer="Conv2d", val=0)]
        ).init_weights()
    with pytest.raises(CheckpointError, match="not found"):
        VMamba(ARCH, init_cfg=pretrained(str(tmp_path / "missing.pth"))).init_weights()


def test_pretrained_through_mmpretrain_classifier(tmp_path):
    """The runner's path: ImageClassifier.init_weights() reaches our loader (not mmengine's)."""
    from mmpretrain.registry import MODELS

    src = randomised(out_indices=(3,))
    path = save_classification(tmp_path, src)
    clf = MODELS.build(
        dict(
            type="ImageClassifier",
            backbone=dict(type="VMamba", arch=ARCH, out_indices=(3,), init_cfg=pretrained(path)),
            neck=dict(type="GlobalAveragePooling"),
            head=dict(type="LinearClsHead", num_classes=10, in_channels=64),
        )
    )
    clf.init_weights()
    assert_same_stages(clf.backbone, src, [3], torch.randn(1, 3, 16, 16))
