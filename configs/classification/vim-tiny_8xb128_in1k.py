# Vim-Ti (Vision Mamba, tiny; middle class token, bidirectional "v2" mixers) on ImageNet-1k,
# the official DeiT-style recipe (hustvl/Vim training scripts): 8 GPUs x 128 images,
# AdamW lr 1e-3 (= 5e-4 x 1024 / 512), wd 0.1, 300 epochs, 5 warm-up epochs, cosine to 1e-5,
# drop path 0.0, RandAugment m9-mstd0.5, random erasing 0.25, mixup 0.8 / cutmix 1.0, label
# smoothing 0.1, repeated augmentation, model EMA 0.99996. Official top-1: 76.1.
# Official weights: https://huggingface.co/hustvl/Vim-tiny-midclstok (vim_t_midclstok_76p1acc.pth;
# the stride-8 Vim-Ti+ vim_t_midclstok_ft_78p3acc.pth, top-1 78.3: --cfg-options model.backbone.arch=tiny-s8).
# Evaluate them with:
#   python tools/model_converters/vim_to_mmvmamba.py vim_t_midclstok_76p1acc.pth vim-tiny_in1k.pth
#   python tools/test.py configs/classification/vim-tiny_8xb128_in1k.py vim-tiny_in1k.pth
# Released training ran in fp32 (Vim is known to diverge under AMP: hustvl/Vim#30).
_base_ = [
    "mmpretrain::_base_/datasets/imagenet_bs64_swin_224.py",
    "mmpretrain::_base_/schedules/imagenet_bs1024_adamw_swin.py",
    "mmpretrain::_base_/default_runtime.py",
]
custom_imports = dict(imports=["mmvmamba"], allow_failed_imports=False)

embed_dims = 192
model = dict(
    type="ImageClassifier",
    backbone=dict(type="Vim", arch="tiny", img_size=224, out_type="cls_token", drop_path_rate=0.0),
    neck=None,
    head=dict(
        type="LinearClsHead",
        num_classes=1000,
        in_channels=embed_dims,
        loss=dict(type="LabelSmoothLoss", label_smooth_val=0.1, mode="original"),
        init_cfg=dict(type="TruncNormal", layer="Linear", std=0.02, bias=0.0),
    ),
    train_cfg=dict(augments=[dict(type="Mixup", alpha=0.8), dict(type="CutMix", alpha=1.0)]),
)

# 8 GPUs x 128 = 1024 images per step; repeated augmentation as DeiT/Vim (3 repeats).
train_dataloader = dict(batch_size=128, sampler=dict(type="RepeatAugSampler", shuffle=True))
val_dataloader = dict(batch_size=128)
test_dataloader = val_dataloader

# timm's optimizer rule: no weight decay on 1-D parameters (norms, biases, D) nor on the
# position embedding and class token.
optim_wrapper = dict(
    optimizer=dict(type="AdamW", lr=1e-3, weight_decay=0.1, eps=1e-8, betas=(0.9, 0.999)),
    paramwise_cfg=dict(
        norm_decay_mult=0.0,
        bias_decay_mult=0.0,
        flat_decay_mult=0.0,
        custom_keys={".pos_embed": dict(decay_mult=0.0), ".cls_token": dict(decay_mult=0.0)},
    ),
)
param_scheduler = [
    dict(
        type="LinearLR",
        start_factor=1e-3,
        by_epoch=True,
        begin=0,
        end=5,
        convert_to_iter_based=True,
    ),
    dict(type="CosineAnnealingLR", T_max=295, eta_min=1e-5, by_epoch=True, begin=5, end=300),
]
train_cfg = dict(by_epoch=True, max_epochs=300, val_interval=1)
custom_hooks = [dict(type="EMAHook", momentum=4e-5, priority="ABOVE_NORMAL")]
auto_scale_lr = dict(base_batch_size=1024)
