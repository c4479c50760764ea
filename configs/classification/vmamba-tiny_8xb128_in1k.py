# VMamba-T[s1l8] (paper "VMamba-T") on ImageNet-1K, 224x224, official recipe (see _base_/vmamba_8xb128_in1k.py).
#
# Paper / official release (with the classification head, FLOPs at 224x224):
#   VMamba-T[s1l8] (paper "VMamba-T"): 30M params, 4.9G FLOPs, top-1 82.6
# Official weights: https://github.com/MzeroMiko/VMamba/releases/download/%23v2cls/vssm1_tiny_0230s_ckpt_epoch_264.pth
# Evaluate them with:
#   python tools/model_converters/vmamba_to_mmvmamba.py vssm1_tiny_0230s_ckpt_epoch_264.pth vmamba-tiny_in1k.pth [--ema]
#   python tools/test.py configs/classification/vmamba-tiny_8xb128_in1k.py vmamba-tiny_in1k.pth
_base_ = "./_base_/vmamba_8xb128_in1k.py"

model = dict(
    backbone=dict(arch="tiny", drop_path_rate=0.2),
    head=dict(in_channels=768),
)
