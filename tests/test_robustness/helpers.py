"""Tiny VMamba and Vim models, configs and data shared by the robustness tests."""

from __future__ import annotations

import contextlib
import textwrap
from collections.abc import Iterator
from pathlib import Path

import torch

TINY_ARCH = dict(
    dims=8,
    depths=(1, 1, 2, 1),
    d_state=1,
    ssm_ratio=1.0,
    forward_type="v05_noz",
    mlp_ratio=2.0,
    patch_embed="v2",
    downsample="v3",
)
"""A 4-stage VMamba v2 with 8..64 channels: a few thousand parameters, milliseconds per step."""


def tiny_vmamba(arch_overrides: dict | None = None, **kwargs):
    """The tiny VMamba backbone (``TINY_ARCH`` updated with ``arch_overrides``), seeded, in eval
    mode; ``kwargs`` go to ``VMamba``."""
    from mmvmamba.models.backbones.vmamba import VMamba

    torch.manual_seed(0)
    return VMamba(arch=dict(TINY_ARCH, **(arch_overrides or {})), **kwargs).eval()


def vmamba_t(**kwargs):
    """The real VMamba-T[s1l8] backbone (arch ``'tiny'``: 96..768 channels, depths 2-2-8-2,
    about 29.5M parameters), seeded, in eval mode; ``kwargs`` go to ``VMamba``. Not to be
    confused with :func:`tiny_vmamba`, the few-thousand-parameter test arch."""
    from mmvmamba.models.backbones.vmamba import VMamba

    torch.manual_seed(0)
    return VMamba(arch="tiny", **kwargs).eval()


def tiny_classifier(num_classes: int = 3):
    """mmpretrain ImageClassifier: tiny VMamba + GAP + linear head, eval mode."""
    from mmpretrain.registry import MODELS

    import mmvmamba  # noqa: F401

    torch.manual_seed(0)
    model = MODELS.build(classifier_cfg(num_classes))
    model.init_weights()
    return model.eval()


def classifier_cfg(num_classes: int = 3) -> dict:
    """The model dict of the tiny classifier (mmpretrain scope)."""
    return dict(
        type="ImageClassifier",
        backbone=dict(type="VMamba", arch=dict(TINY_ARCH), out_indices=(3,)),
        neck=dict(type="GlobalAveragePooling"),
        head=dict(
            type="LinearClsHead",
            num_classes=num_classes,
            in_channels=64,
            loss=dict(type="CrossEntropyLoss"),
        ),
        data_preprocessor=dict(
            type="ClsDataPreprocessor", mean=[127.5] * 3, std=[64.0] * 3, to_rgb=False
        ),
    )


TINY_VIM_ARCH = dict(embed_dims=16, num_layers=2, patch_size=4, d_state=2)
"""A 2-layer Vim with 16 channels and 4x4 patches: about 6k parameters, milliseconds per step."""

TINY_VIM_IMG = 16
"""The ``img_size`` of :func:`tiny_vim`: ``pos_embed`` is stored for its 4x4 patch grid."""


def tiny_vim(**kwargs):
    """The tiny Vim backbone (``TINY_VIM_ARCH``, ``img_size=16``), seeded, in eval mode;
    ``kwargs`` go to ``Vim``."""
    from mmvmamba.models.backbones.vim import Vim

    torch.manual_seed(0)
    kwargs.setdefault("img_size", TINY_VIM_IMG)
    return Vim(arch=dict(TINY_VIM_ARCH), **kwargs).eval()


def tiny_vim_classifier(num_classes: int = 3):
    """mmpretrain ImageClassifier: tiny Vim (class token) + linear head, as the Vim configs
    (no neck), eval mode."""
    from mmpretrain.registry import MODELS

    import mmvmamba  # noqa: F401

    torch.manual_seed(0)
    model = MODELS.build(
        dict(
            type="ImageClassifier",
            backbone=dict(
                type="Vim", arch=dict(TINY_VIM_ARCH), img_size=TINY_VIM_IMG, out_type="cls_token"
            ),
            neck=None,
            head=dict(
                type="LinearClsHead",
                num_classes=num_classes,
                in_channels=TINY_VIM_ARCH["embed_dims"],
                loss=dict(type="CrossEntropyLoss"),
            ),
        )
    )
    model.init_weights()
    return model.eval()


def write_tiny_config(
    path: Path,
    data_root: Path,
    max_iters: int = 20,
    ckpt_interval: int = 1000,
    extra: str = "",
    image_size: int = 32,
) -> Path:
    """A complete mmpretrain training config of the tiny classifier on the generated ImageNet-
    format demo set (``make_imagenet_demo``), CPU, no random augmentation, iteration-based."""
    cfg = f"""
    default_scope = 'mmpretrain'
    custom_imports = dict(imports=['mmvmamba', 'mmvmamba.engine'], allow_failed_imports=False)
    model = {classifier_cfg()!r}
    train_pipeline = [
        dict(type='LoadImageFromFile'),
        dict(type='Resize', scale=({image_size}, {image_size})),
        dict(type='PackInputs'),
    ]
    train_dataloader = dict(
        batch_size=4,
        num_workers=0,
        dataset=dict(
            type='CustomDataset',
            data_root={str(data_root)!r},
            data_prefix='train',
            with_label=True,
            pipeline=train_pipeline,
        ),
        sampler=dict(type='InfiniteSampler', shuffle=True),
    )
    train_cfg = dict(type='IterBasedTrainLoop', max_iters={max_iters})
    optim_wrapper = dict(optimizer=dict(type='AdamW', lr=2e-3, weight_decay=0.05))
    param_scheduler = [dict(type='CosineAnnealingLR', T_max={max_iters}, by_epoch=False,
                            eta_min=1e-5)]
    default_hooks = dict(
        timer=dict(type='IterTimerHook'),
        logger=dict(type='LoggerHook', interval=1000),
        param_scheduler=dict(type='ParamSchedulerHook'),
        checkpoint=dict(type='AtomicCheckpointHook', interval={ckpt_interval}, by_epoch=False),
        sampler_seed=dict(type='DistSamplerSeedHook'),
    )
    env_cfg = dict(cudnn_benchmark=False, dist_cfg=dict(backend='gloo'))
    randomness = dict(seed=0, deterministic=True)
    log_level = 'WARNING'
    """
    path.write_text(textwrap.dedent(cfg) + textwrap.dedent(extra))
    return path


@contextlib.contextmanager
def single_thread() -> Iterator[None]:
    """Run torch on one thread: small models are several times faster that way on a shared
    CPU (no thread hand-offs), and the result does not depend on the machine's core count."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
