# UperNet with a VMamba-S[s2l15] backbone, 160k iterations, ADE20K 512x512.
#
# Paper (VMamba, NeurIPS 2024; official config segmentation/configs/vssm1/upernet_vssm_4xb4-160k_ade20k-512x512_small.py):
#   mIoU 50.6 single-scale, 51.2 multi-scale (--tta: ratios 0.5-1.75 + flip) on ADE20K val;
#   82M params, 1028G FLOPs at 512x2048; 16 images per iteration, ImageNet-1K initialised.
# Official segmentation checkpoint (evaluates with tools/test.py as is, add --tta for MS):
#   https://github.com/MzeroMiko/VMamba/releases/download/%23v2seg/upernet_vssm_4xb4-160k_ade20k-512x512_small_iter_144000.pth
#
# Train from the official ImageNet-1K classification weights, as the paper does:
#   bash tools/dist_train.sh configs/segmentation/upernet_vmamba-small_4xb4-160k_ade20k-512x512.py 4 --cfg-options \
#       model.backbone.init_cfg.type=Pretrained \
#       model.backbone.init_cfg.checkpoint=https://github.com/MzeroMiko/VMamba/releases/download/%23v2cls/vssm_small_0229_ckpt_epoch_222.pth
# (or add init_cfg=dict(type='Pretrained', checkpoint=...) to the backbone below).
# Inherited from the Swin config: AdamW lr 6e-5, betas (0.9, 0.999), weight decay 0.01 (0 for
# norms), linear warm-up 1500 iterations then poly decay, SyncBN heads, TTA pipeline and model.
_base_ = "mmseg::swin/swin-small-patch4-window7-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py"

custom_imports = dict(imports=["mmvmamba"], allow_failed_imports=False)

model = dict(
    backbone=dict(
        _delete_=True,  # drop all Swin arguments: VMamba rejects unknown keywords
        type="VMamba",
        arch="small",
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.3,
    ),
    decode_head=dict(in_channels=[96, 192, 384, 768], num_classes=150),
    auxiliary_head=dict(in_channels=384, num_classes=150),
)

# 4 GPUs x 4 images = 16 images per iteration (the official runs: 8 GPUs x 2).
train_dataloader = dict(batch_size=4)
