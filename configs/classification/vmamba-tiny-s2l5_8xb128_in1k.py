# VMamba-T[s2l5] on ImageNet-1K, 224x224, official recipe (see _base_/vmamba_8xb128_in1k.py).
#
# Paper / official release (with the classification head, FLOPs at 224x224):
#   VMamba-T[s2l5]: 31M params, 4.9G FLOPs, top-1 82.5
# Official weights: https://github.com/MzeroMiko/VMamba/releases/download/%23v2cls/vssm_tiny_0230_ckpt_epoch_262.pth
# Evaluate them with:
#   python tools/model_converters/vmamba_to_mmvmamba.py vssm_tiny_0230_ckpt_epoch_262.pth vmamba-tiny-s2l5_in1k.pth [--ema]
#   python tools/test.py configs/classification/vmamba-tiny-s2l5_8xb128_in1k.py vmamba-tiny-s2l5_in1k.pth
_base_ = "./_base_/vmamba_8xb128_in1k.py"

model = dict(
    backbone=dict(arch="tiny-s2l5", drop_path_rate=0.2),
    head=dict(in_channels=768),
)
