# Vanilla-VMamba-S (v0) on ImageNet-1K, 224x224, official recipe (see _base_/vmamba_8xb128_in1k.py).
#
# Paper / official release (with the classification head, FLOPs at 224x224):
#   Vanilla-VMamba-S (v0): 44M params, 11.2G FLOPs, top-1 83.5
# Official weights: https://github.com/MzeroMiko/VMamba/releases/download/%23v0cls/vssmsmall_dp03_ckpt_epoch_238.pth
# Evaluate them with:
#   python tools/model_converters/vmamba_to_mmvmamba.py vssmsmall_dp03_ckpt_epoch_238.pth vmamba-v0-small_in1k.pth [--ema]
#   python tools/test.py configs/classification/vmamba-v0-small_8xb128_in1k.py vmamba-v0-small_in1k.pth
_base_ = "./_base_/vmamba_8xb128_in1k.py"

model = dict(
    backbone=dict(arch="v0-small", drop_path_rate=0.3),
    head=dict(in_channels=768),
)
