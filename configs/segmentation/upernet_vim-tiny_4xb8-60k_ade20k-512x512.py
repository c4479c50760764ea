# UperNet + Vim-Ti on ADE20K (512x512 crops, 4 GPUs x 8 images, 60k iterations), as the official
# Vim segmentation setup (hustvl/Vim `seg/`, mmseg 0.x) ported to mmseg 1.x:
#   * backbone: Vim-Ti tapping blocks [5, 11, 17, 23] as (B, 192, H/16, W/16) maps (the residual
#     stream after each block; norm_f on the last), class token kept in the sequence as
#     pre-trained, position embedding resized to the input grid at load and run time;
#   * neck: mmseg's Feature2Pyramid (x4 / x2 / x1 / x0.5 = the official BEiT-style fpn1..fpn4);
#   * UPerHead (channels 192) + auxiliary FCNHead on the stride-16 level (loss weight 0.4);
#   * AdamW lr 2e-4, wd 0.1, layer-wise lr decay 0.92 over 24 layers, 1500-iteration linear
#     warm-up, poly decay (power 1) to 0; slide inference with 512 crops, stride 341.
# Paper (not reproduced here): Vim-Ti UperNet ADE20K val mIoU 41.0 (single scale).
# The official runs used apex AMP; this config trains in fp32 (Vim is unstable under AMP,
# hustvl/Vim#30). The pretrained weights load strictly from the official file (or a converted
# one): tools/model_converters/vim_to_mmvmamba.py.
_base_ = [
    "mmseg::_base_/models/upernet_beit.py",
    "mmseg::_base_/datasets/ade20k.py",
    "mmseg::_base_/default_runtime.py",
    "mmseg::_base_/schedules/schedule_160k.py",
]
custom_imports = dict(imports=["mmvmamba"], allow_failed_imports=False)

crop_size = (512, 512)
embed_dims = 192
num_layers = 24
layer_decay_rate = 0.92
pretrained = (
    "https://huggingface.co/hustvl/Vim-tiny-midclstok/resolve/main/vim_t_midclstok_76p1acc.pth"
)
norm_cfg = dict(type="SyncBN", requires_grad=True)
data_preprocessor = dict(
    type="SegDataPreProcessor",
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    bgr_to_rgb=True,
    pad_val=0,
    seg_pad_val=255,
    size=crop_size,
)
model = dict(
    data_preprocessor=data_preprocessor,
    pretrained=None,
    backbone=dict(
        _delete_=True,
        type="Vim",
        arch="tiny",
        img_size=crop_size,
        out_type="featmap",
        out_indices=(5, 11, 17, 23),
        final_norm=True,
        drop_path_rate=0.1,
        init_cfg=dict(type="Pretrained", checkpoint=pretrained),
    ),
    neck=dict(
        type="Feature2Pyramid", embed_dim=embed_dims, rescales=[4, 2, 1, 0.5], norm_cfg=norm_cfg
    ),
    decode_head=dict(
        in_channels=[embed_dims] * 4, channels=embed_dims, num_classes=150, norm_cfg=norm_cfg
    ),
    auxiliary_head=dict(in_channels=embed_dims, num_classes=150, norm_cfg=norm_cfg),
    test_cfg=dict(mode="slide", crop_size=crop_size, stride=(341, 341)),
)

# Layer-wise lr decay as BEiT/the official Vim seg code (mmseg's LayerDecayOptimizerConstructor
# only knows BEiT/MAE/ConvNeXt class names): embeddings get rate**(L + 1), block i rate**(L - i),
# neck and heads 1. No weight decay on 1-D parameters (norms, D, biases), pos_embed, cls_token.
# The rule lives in mmvmamba.engine.VimLayerDecayOptimizerConstructor.
optim_wrapper = dict(
    _delete_=True,
    type="OptimWrapper",
    optimizer=dict(type="AdamW", lr=2e-4, betas=(0.9, 0.999), weight_decay=0.1),
    constructor="VimLayerDecayOptimizerConstructor",
    paramwise_cfg=dict(
        num_layers=num_layers,
        layer_decay_rate=layer_decay_rate,
        norm_decay_mult=0.0,
        bias_decay_mult=0.0,
        flat_decay_mult=0.0,
    ),
)
param_scheduler = [
    dict(type="LinearLR", start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(type="PolyLR", power=1.0, eta_min=0.0, by_epoch=False, begin=1500, end=60000),
]
train_cfg = dict(type="IterBasedTrainLoop", max_iters=60000, val_interval=6000)
default_hooks = dict(checkpoint=dict(type="CheckpointHook", by_epoch=False, interval=6000))

# 4 GPUs x 8 images
train_dataloader = dict(batch_size=8)
val_dataloader = dict(batch_size=1)
test_dataloader = val_dataloader
