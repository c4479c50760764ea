"""VMamba inside mmpretrain: the shipped configs build the official models, and a short training
run of a tiny arch on a generated ImageNet-format folder dataset lowers the loss."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mmvmamba.models.backbones import VMamba

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = {
    "vmamba-tiny_8xb128_in1k.py": ("tiny", 0.2, 30_249_064),
    "vmamba-small_8xb128_in1k.py": ("small", 0.3, 50_147_752),
    "vmamba-base_8xb128_in1k.py": ("base", 0.6, 88_557_800),
    "vmamba-tiny-s2l5_8xb128_in1k.py": ("tiny-s2l5", 0.2, 30_705_832),
    "vmamba-v0-tiny_8xb128_in1k.py": ("v0-tiny", 0.2, 22_893_448),
    "vmamba-v0-small_8xb128_in1k.py": ("v0-small", 0.3, 44_417_416),
    "vmamba-v0-base_8xb128_in1k.py": ("v0-base", 0.6, 76_254_056),
}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_classification_config_builds_the_official_model(name):
    from mmengine.config import Config
    from mmpretrain.registry import MODELS

    import mmvmamba  # noqa: F401  (custom_imports does this in tools/train.py)

    cfg = Config.fromfile(str(ROOT / "configs" / "classification" / name))
    arch, drop_path, params = CONFIGS[name]
    assert cfg.model.backbone.arch == arch and cfg.model.backbone.drop_path_rate == drop_path
    assert cfg.custom_imports.imports == ["mmvmamba"]
    # the official recipe
    assert cfg.train_cfg.max_epochs == 300
    assert cfg.optim_wrapper.optimizer.lr == pytest.approx(1e-3)
    assert cfg.optim_wrapper.optimizer.weight_decay == 0.05
    assert cfg.optim_wrapper.clip_grad.max_norm == 5.0
    assert cfg.param_scheduler[0].end == 20 and cfg.param_scheduler[1].type == "CosineAnnealingLR"
    assert cfg.train_dataloader.batch_size == 128 and cfg.auto_scale_lr.base_batch_size == 1024
    assert [a.type for a in cfg.model.train_cfg.augments] == ["Mixup", "CutMix"]
    assert cfg.model.head.loss.label_smooth_val == 0.1
    assert any(h.type == "EMAHook" for h in cfg.custom_hooks)
    with torch.device("meta"):
        model = MODELS.build(cfg.model)
    assert sum(p.numel() for p in model.parameters()) == params


def _make_folder_dataset(root: Path, per_class: int = 10) -> None:
    """ImageNet-format folders ``root/<class>/<image>.png``: 4 classes of 32x32 images, each a
    coloured shape (red disc, green square, blue bar, yellow cross) at a random position."""
    from PIL import Image

    rng = np.random.default_rng(0)
    colours = [(220, 30, 30), (30, 200, 30), (30, 30, 220), (230, 220, 30)]
    yy, xx = np.mgrid[:32, :32]
    for c, colour in enumerate(colours):
        folder = root / f"class_{c}"
        folder.mkdir(parents=True)
        for i in range(per_class):
            cy, cx = rng.integers(10, 22, size=2)
            masks = [
                (yy - cy) ** 2 + (xx - cx) ** 2 < 36,
                (abs(yy - cy) < 6) & (abs(xx - cx) < 6),
                abs(yy - cy) < 3,
                (abs(yy - cy) < 2) | (abs(xx - cx) < 2),
            ]
            img = rng.integers(0, 60, size=(32, 32, 3), dtype=np.uint8)
            img[masks[c]] = colour
            Image.fromarray(img).save(folder / f"{i}.png")


def test_twenty_iterations_of_mmpretrain_training_lower_the_loss(tmp_path):
    from mmengine.config import Config
    from mmengine.runner import Runner

    import mmvmamba  # noqa: F401

    data = tmp_path / "data" / "train"
    _make_folder_dataset(data)
    arch = dict(VMamba.arch_zoo["tiny"], dims=16, depths=(1, 1, 1, 1))
    cfg = Config(
        dict(
            default_scope="mmpretrain",
            work_dir=str(tmp_path / "work"),
            model=dict(
                type="ImageClassifier",
                data_preprocessor=dict(
                    type="ClsDataPreprocessor",
                    num_classes=4,
                    mean=[127.5] * 3,
                    std=[127.5] * 3,
                    to_rgb=True,
                ),
                backbone=dict(type="VMamba", arch=arch, out_indices=(3,), drop_path_rate=0.0),
                neck=dict(type="GlobalAveragePooling"),
                head=dict(
                    type="LinearClsHead",
                    num_classes=4,
                    in_channels=128,
                    loss=dict(type="CrossEntropyLoss"),
                ),
            ),
            train_dataloader=dict(
                batch_size=8,
                num_workers=0,
                sampler=dict(type="InfiniteSampler", shuffle=True),
                dataset=dict(
                    type="CustomDataset",
                    data_root=str(data),
                    pipeline=[dict(type="LoadImageFromFile"), dict(type="PackInputs")],
                ),
            ),
            train_cfg=dict(by_epoch=False, max_iters=20),
            optim_wrapper=dict(optimizer=dict(type="AdamW", lr=2e-3, weight_decay=0.0)),
            default_hooks=dict(
                logger=dict(type="LoggerHook", interval=1),
                checkpoint=dict(type="CheckpointHook", interval=1000),
            ),
            randomness=dict(seed=0),
            log_level="WARNING",
        )
    )
    runner = Runner.from_cfg(cfg)
    runner.train()
    losses = runner.message_hub.get_scalar("train/loss").data[0]
    assert len(losses) == 20 and np.isfinite(losses).all()
    first, last = float(np.mean(losses[:5])), float(np.mean(losses[-5:]))
    assert last < 0.7 * first, losses
