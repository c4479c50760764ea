# The official VMamba ImageNet-1K recipe (MzeroMiko/VMamba classification/, Swin codebase), shared
# by every configs/classification/vmamba-*_8xb128_in1k.py; a variant only sets its arch,
# drop-path rate and head width.
#
# 8 GPUs x 128 images (batch 1024), 300 epochs, AdamW lr 1e-3 (= 5e-4 x 1024 / 512), betas
# (0.9, 0.999), eps 1e-8, weight decay 0.05 except 1-D parameters and biases, gradient clip 5.0,
# linear warm-up from 1e-6 over 20 epochs, cosine to 1e-5; RandomResizedCrop 224 (bicubic), flip,
# RandAugment rand-m9-mstd0.5-inc1, random erasing 0.25, Mixup 0.8 / CutMix 1.0 (switch 0.5),
# label smoothing 0.1, EMA 0.9999. Eval: resize 256 (bicubic), center crop 224.
# The official runs use mixed precision: add --amp to tools/train.py.
_base_ = [
    "mmpretrain::_base_/datasets/imagenet_bs64_swin_224.py",
    "mmpretrain::_base_/schedules/imagenet_bs1024_adamw_swin.py",
    "mmpretrain::_base_/default_runtime.py",
]

custom_imports = dict(imports=["mmvmamba"], allow_failed_imports=False)

model = dict(
    type="ImageClassifier",
    # out_indices=(3,): the backbone's outnorm3 is the official classifier.norm
    backbone=dict(type="VMamba", arch="tiny", out_indices=(3,), drop_path_rate=0.2),
    neck=dict(type="GlobalAveragePooling"),
    head=dict(
        type="LinearClsHead",
        num_classes=1000,
        in_channels=768,
        init_cfg=dict(type="TruncNormal", layer="Linear", std=0.02, bias=0.0),
        loss=dict(type="LabelSmoothLoss", label_smooth_val=0.1, mode="original"),
        cal_acc=False,
    ),
    train_cfg=dict(augments=[dict(type="Mixup", alpha=0.8), dict(type="CutMix", alpha=1.0)]),
)

train_dataloader = dict(batch_size=128)
val_dataloader = dict(batch_size=128)
test_dataloader = val_dataloader

# official: no weight decay for 1-D parameters (norms, Ds) and biases; A_logs (2-D) is decayed
optim_wrapper = dict(
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0, flat_decay_mult=0.0),
    clip_grad=dict(max_norm=5.0),
)

custom_hooks = [dict(type="EMAHook", momentum=1e-4, priority="ABOVE_NORMAL")]

default_hooks = dict(checkpoint=dict(type="CheckpointHook", interval=1, max_keep_ckpts=3))
