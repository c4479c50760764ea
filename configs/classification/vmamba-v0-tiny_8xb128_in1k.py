# Vanilla-VMamba-T (v0) on ImageNet-1K, 224x224, official recipe (see _base_/vmamba_8xb128_in1k.py).
#
# Paper / official release (with the classification head, FLOPs at 224x224):
#   Vanilla-VMamba-T (v0): 23M params, 5.6G FLOPs, top-1 82.2
# Official weights: https://github.com/MzeroMiko/VMamba/releases/download/%23v0cls/vssmtiny_dp01_ckpt_epoch_292.pth
# Evaluate them with:
#   python tools/model_converters/vmamba_to_mmvmamba.py vssmtiny_dp01_ckpt_epoch_292.pth vmamba-v0-tiny_in1k.pth [--ema]
#   python tools/test.py configs/classification/vmamba-v0-tiny_8xb128_in1k.py vmamba-v0-tiny_in1k.pth
_base_ = "./_base_/vmamba_8xb128_in1k.py"

model = dict(
    backbone=dict(arch="v0-tiny", drop_path_rate=0.2),
    head=dict(in_channels=768),
)
