# Mask R-CNN + FPN with a VMamba-B[s2l15] backbone, 1x schedule (12 epochs, single-scale 1333x800), COCO.
#
# Paper (VMamba, NeurIPS 2024; official config detection/configs/vssm1/mask_rcnn_vssm_fpn_coco_base.py):
#   box AP 49.2, mask AP 44.1 on COCO val2017; 108M params, 485G FLOPs at 1280x800;
#   8 GPUs x 2 images (batch 16), backbone initialised from ImageNet-1K weights.
# Official detection checkpoint (evaluates with tools/test.py as is):
#   https://github.com/MzeroMiko/VMamba/releases/download/%23v2det/mask_rcnn_vssm_fpn_coco_base_epoch_11.pth
#
# Train from the official ImageNet-1K classification weights, as the paper does:
#   bash tools/dist_train.sh configs/detection/mask-rcnn_vmamba-base_fpn_1x_coco.py 8 --cfg-options \
#       model.backbone.init_cfg.type=Pretrained \
#       model.backbone.init_cfg.checkpoint=https://github.com/MzeroMiko/VMamba/releases/download/%23v2cls/vssm_base_0229_ckpt_epoch_237.pth
# (or add init_cfg=dict(type='Pretrained', checkpoint=...) to the backbone below).
_base_ = "mmdet::swin/mask-rcnn_swin-t-p4-w7_fpn_1x_coco.py"

custom_imports = dict(imports=["mmvmamba"], allow_failed_imports=False)

model = dict(
    backbone=dict(
        _delete_=True,  # drop all Swin arguments: VMamba rejects unknown keywords
        type="VMamba",
        arch="base",
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.6,
    ),
    neck=dict(in_channels=[128, 256, 512, 1024]),
)
