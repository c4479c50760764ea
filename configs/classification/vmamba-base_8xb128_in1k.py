# VMamba-B[s2l15] (paper "VMamba-B") on ImageNet-1K, 224x224, official recipe (see _base_/vmamba_8xb128_in1k.py).
#
# Paper / official release (with the classification head, FLOPs at 224x224):
#   VMamba-B[s2l15] (paper "VMamba-B"): 89M params, 15.4G FLOPs, top-1 83.9
# Official weights: https://github.com/MzeroMiko/VMamba/releases/download/%23v2cls/vssm_base_0229_ckpt_epoch_237.pth
# Evaluate them with:
#   python tools/model_converters/vmamba_to_mmvmamba.py vssm_base_0229_ckpt_epoch_237.pth vmamba-base_in1k.pth [--ema]
#   python tools/test.py configs/classification/vmamba-base_8xb128_in1k.py vmamba-base_in1k.pth
_base_ = "./_base_/vmamba_8xb128_in1k.py"

model = dict(
    backbone=dict(arch="base", drop_path_rate=0.6),
    head=dict(in_channels=1024),
)
