"""Vim in mmseg: the UperNet configs build (Vim backbone + mmseg Feature2Pyramid + UPerHead),
layer-wise lr decay param groups, a forward/backward on a small input, and (slow) a few
training iterations with mmengine's Runner on the generated ADE20K-format demo set."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

mmseg = pytest.importorskip("mmseg")

from mmengine.config import Config  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
CFG_DIR = ROOT / "configs" / "segmentation"
TINY_CFG = CFG_DIR / "upernet_vim-tiny_4xb8-60k_ade20k-512x512.py"
SMALL_CFG = CFG_DIR / "upernet_vim-small_4xb8-60k_ade20k-512x512.py"
BN = dict(type="BN", requires_grad=True)


def _build(cfg_model):
    from mmengine.registry import DefaultScope
    from mmseg.registry import MODELS
    from mmseg.utils import register_all_modules

    import mmvmamba  # noqa: F401  (registers Vim)

    register_all_modules(init_default_scope=False)
    with DefaultScope.overwrite_default_scope("mmseg"):
        return MODELS.build(cfg_model)


def _shrink(cfg: Config, dims: int = 32, size: int = 64, num_classes: int = 5) -> Config:
    """The same model family, small enough for a CPU test: 4 blocks of width ``dims``."""
    model = cfg.model
    model.data_preprocessor.size = (size, size)
    model.backbone.update(
        arch=dict(embed_dims=dims, num_layers=4),
        img_size=(size, size),
        out_indices=(0, 1, 2, 3),
        init_cfg=None,
        drop_path_rate=0.0,
    )
    model.neck.update(embed_dim=dims, norm_cfg=BN)
    model.decode_head.update(
        in_channels=[dims] * 4, channels=dims, norm_cfg=BN, num_classes=num_classes
    )
    model.auxiliary_head.update(in_channels=dims, channels=16, norm_cfg=BN, num_classes=num_classes)
    model.test_cfg = dict(mode="whole")
    return cfg


@pytest.mark.parametrize("path, dims", [(TINY_CFG, 192), (SMALL_CFG, 384)])
def test_config_contents(path, dims):
    cfg = Config.fromfile(str(path))
    assert "mmvmamba" in cfg.custom_imports.imports
    bb = cfg.model.backbone
    assert bb.type == "Vim" and bb.out_type == "featmap"
    assert tuple(bb.out_indices) == (5, 11, 17, 23)
    assert cfg.model.neck.type == "Feature2Pyramid" and cfg.model.neck.rescales == [4, 2, 1, 0.5]
    assert cfg.model.neck.embed_dim == dims
    assert cfg.model.decode_head.type == "UPerHead"
    assert cfg.model.decode_head.in_channels == [dims] * 4
    assert cfg.model.decode_head.channels == dims
    assert cfg.model.auxiliary_head.in_index == 2 and cfg.model.auxiliary_head.in_channels == dims
    assert cfg.model.decode_head.num_classes == cfg.model.auxiliary_head.num_classes == 150
    assert cfg.train_cfg.max_iters == 60000 and cfg.train_dataloader.batch_size == 8
    assert cfg.model.test_cfg.mode == "slide" and tuple(cfg.model.test_cfg.stride) == (341, 341)
    assert bb.init_cfg.type == "Pretrained" and "midclstok" in bb.init_cfg.checkpoint


@pytest.mark.parametrize(
    "config, base_lr, rate, wd",
    [("tiny", 2e-4, 0.92, 0.1), ("small", 1e-4, 0.95, 0.05)],
)
def test_full_model_builds_with_layer_decay_groups(config, base_lr, rate, wd):
    from mmengine.optim import build_optim_wrapper

    cfg = Config.fromfile(str({"tiny": TINY_CFG, "small": SMALL_CFG}[config]))
    cfg.model.backbone.init_cfg = None
    for head in ("neck", "decode_head", "auxiliary_head"):
        cfg.model[head].norm_cfg = BN
    model = _build(cfg.model)
    assert type(model.backbone).__name__ == "Vim" and model.backbone.patch_grid == (32, 32)
    if config == "tiny":
        n_backbone = sum(p.numel() for p in model.backbone.parameters())
        assert n_backbone == 7_148_008 - 193_000 + 192 * (32 * 32 - 14 * 14)  # no head, 32x32

    wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    groups = {}
    names = dict((id(p), n) for n, p in model.named_parameters())
    for group in wrapper.optimizer.param_groups:
        for p in group["params"]:
            groups[names[id(p)]] = (group["lr"], group["weight_decay"])
    assert groups["backbone.layers.23.mixer.in_proj.weight"] == pytest.approx((base_lr * rate, wd))
    assert groups["backbone.layers.0.mixer.A_log"] == pytest.approx((base_lr * rate**24, wd))
    assert groups["backbone.layers.0.mixer.D_b"] == pytest.approx((base_lr * rate**24, 0.0))
    assert groups["backbone.layers.0.mixer.dt_proj_b.bias"] == pytest.approx(
        (base_lr * rate**24, 0.0)
    )
    assert groups["backbone.layers.10.norm.weight"] == pytest.approx((base_lr * rate**14, 0.0))
    assert groups["backbone.patch_embed.proj.weight"] == pytest.approx((base_lr * rate**25, wd))
    assert groups["backbone.pos_embed"] == pytest.approx((base_lr * rate**25, 0.0))
    assert groups["backbone.cls_token"] == pytest.approx((base_lr * rate**25, 0.0))
    assert groups["backbone.norm_f.weight"] == pytest.approx((base_lr, 0.0))
    assert groups["decode_head.conv_seg.weight"] == pytest.approx((base_lr, wd))


def test_layer_decay_constructor_names_missing_settings():
    from mmvmamba.engine import VimLayerDecayOptimizerConstructor

    with pytest.raises(KeyError, match="layer_decay_rate"):
        VimLayerDecayOptimizerConstructor(dict(optimizer=dict(type="AdamW", lr=1e-3)),
                                          dict(num_layers=24))  # fmt: skip


def _batch(num: int = 2, size: int = 64, num_classes: int = 5):
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample

    inputs = [torch.randint(0, 256, (3, size, size), dtype=torch.uint8) for _ in range(num)]
    samples = []
    for _ in range(num):
        sample = SegDataSample()
        sample.gt_sem_seg = PixelData(data=torch.randint(0, num_classes, (1, size, size)))
        sample.set_metainfo(
            dict(img_shape=(size, size), ori_shape=(size, size), pad_shape=(size, size))
        )
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


def test_small_segmentor_forward_backward():
    cfg = _shrink(Config.fromfile(str(TINY_CFG)))
    model = _build(cfg.model)
    data = model.data_preprocessor(_batch(), training=True)
    feats = model.extract_feat(data["inputs"])
    assert [tuple(f.shape) for f in feats] == [
        (2, 32, 16, 16),
        (2, 32, 8, 8),
        (2, 32, 4, 4),
        (2, 32, 2, 2),
    ]
    losses = model(**data, mode="loss")
    total = sum(v for k, v in losses.items() if "loss" in k)
    assert torch.isfinite(total)
    total.backward()
    assert model.backbone.pos_embed.grad is not None
    assert model.backbone.layers[0].mixer.A_b_log.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        preds = model(**model.data_preprocessor(_batch(1, size=80), training=False), mode="predict")
    assert preds[0].seg_logits.data.shape == (5, 80, 80)


@pytest.mark.slow
def test_trains_a_few_iterations_on_ade_demo(tmp_path):
    from mmengine.runner import Runner

    from mmvmamba.datasets import SEG_CLASSES, make_ade_demo

    size = 64
    data_root = make_ade_demo(tmp_path / "ade", n_train=8, n_val=2, size=size)
    cfg = _shrink(Config.fromfile(str(TINY_CFG)), size=size, num_classes=len(SEG_CLASSES))
    pipeline = [
        dict(type="LoadImageFromFile"),
        dict(type="LoadAnnotations", reduce_zero_label=True),
        dict(type="RandomCrop", crop_size=(size, size), cat_max_ratio=0.75),
        dict(type="RandomFlip", prob=0.5),
        dict(type="PackSegInputs"),
    ]
    cfg.train_dataloader = dict(
        batch_size=2,
        num_workers=0,
        persistent_workers=False,
        sampler=dict(type="InfiniteSampler", shuffle=True),
        dataset=dict(
            type="BaseSegDataset",
            data_root=str(data_root),
            metainfo=dict(classes=SEG_CLASSES),
            img_suffix=".jpg",
            seg_map_suffix=".png",
            reduce_zero_label=True,
            pipeline=pipeline,
            data_prefix=dict(img_path="images/training", seg_map_path="annotations/training"),
        ),
    )
    cfg.val_dataloader = cfg.val_evaluator = cfg.val_cfg = None
    cfg.test_dataloader = cfg.test_evaluator = cfg.test_cfg = None
    cfg.train_cfg = dict(type="IterBasedTrainLoop", max_iters=3, val_interval=1000)
    cfg.param_scheduler = [dict(type="LinearLR", start_factor=0.1, by_epoch=False, begin=0, end=3)]
    cfg.default_hooks.checkpoint = dict(type="CheckpointHook", by_epoch=False, interval=3)
    cfg.default_hooks.logger = dict(type="LoggerHook", interval=1, log_metric_by_epoch=False)
    cfg.work_dir = str(tmp_path / "work")
    cfg.launcher = "none"
    runner = Runner.from_cfg(cfg)
    before = runner.model.backbone.layers[0].mixer.in_proj.weight.detach().clone()
    runner.train()
    after = runner.model.backbone.layers[0].mixer.in_proj.weight.detach()
    assert not torch.equal(before, after)
    assert (Path(cfg.work_dir) / "iter_3.pth").is_file()
    loss = runner.message_hub.get_scalar("train/loss").current()
    assert loss == loss and loss < 1e3  # finite
