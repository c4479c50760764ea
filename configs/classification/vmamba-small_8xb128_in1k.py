# VMamba-S[s2l15] (paper "VMamba-S") on ImageNet-1K, 224x224, official recipe (see _base_/vmamba_8xb128_in1k.py).
#
# Paper / official release (with the classification head, FLOPs at 224x224):
#   VMamba-S[s2l15] (paper "VMamba-S"): 50M params, 8.7G FLOPs, top-1 83.6
# Official weights: https://github.com/MzeroMiko/VMamba/releases/download/%23v2cls/vssm_small_0229_ckpt_epoch_222.pth
# Evaluate them with:
#   python tools/model_converters/vmamba_to_mmvmamba.py vssm_small_0229_ckpt_epoch_222.pth vmamba-small_in1k.pth [--ema]
#   python tools/test.py configs/classification/vmamba-small_8xb128_in1k.py vmamba-small_in1k.pth
_base_ = "./_base_/vmamba_8xb128_in1k.py"

model = dict(
    backbone=dict(arch="small", drop_path_rate=0.3),
    head=dict(in_channels=768),
)
