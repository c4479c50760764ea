# Mask R-CNN + FPN with a VMamba-T[s1l8] backbone, 3x schedule (36 epochs, multi-scale + crop training as DETR), COCO.
#
# Paper (VMamba, NeurIPS 2024; official config detection/configs/vssm1/mask_rcnn_vssm_fpn_coco_tiny_ms_3x.py):
#   box AP 48.8, mask AP 43.7 on COCO val2017; 50M params, 271G FLOPs at 1280x800;
#   8 GPUs x 2 images (batch 16), backbone initialised from ImageNet-1K weights.
# Official detection checkpoint (evaluates with tools/test.py as is):
#   https://github.com/MzeroMiko/VMamba/releases/download/%23v2det/mask_rcnn_vssm_fpn_coco_tiny_ms_3x_s_epoch_31.pth
#
# Train from the official ImageNet-1K classification weights, as the paper does:
#   bash tools/dist_train.sh configs/detection/mask-rcnn_vmamba-tiny_fpn_ms-3x_coco.py 8 --cfg-options \
#       model.backbone.init_cfg.type=Pretrained \
#       model.backbone.init_cfg.checkpoint=https://github.com/MzeroMiko/VMamba/releases/download/%23v2cls/vssm1_tiny_0230s_ckpt_epoch_264.pth
# (or add init_cfg=dict(type='Pretrained', checkpoint=...) to the backbone below).
_base_ = "mmdet::swin/mask-rcnn_swin-t-p4-w7_fpn_ms-crop-3x_coco.py"

custom_imports = dict(imports=["mmvmamba"], allow_failed_imports=False)

model = dict(
    backbone=dict(
        _delete_=True,  # drop all Swin arguments: VMamba rejects unknown keywords
        type="VMamba",
        arch="tiny",
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.2,
    ),
    neck=dict(in_channels=[96, 192, 384, 768]),
)
