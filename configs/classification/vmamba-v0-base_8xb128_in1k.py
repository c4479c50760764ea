# Vanilla-VMamba-B (v0) on ImageNet-1K, 224x224, official recipe (see _base_/vmamba_8xb128_in1k.py).
#
# Paper / official release (with the classification head, FLOPs at 224x224):
#   Vanilla-VMamba-B (v0): 76M params, 18.0G FLOPs, top-1 83.7
# Official weights: https://github.com/MzeroMiko/VMamba/releases/download/%23v0cls/vssmbase_dp06_ckpt_epoch_241.pth
# Evaluate them with:
#   python tools/model_converters/vmamba_to_mmvmamba.py vssmbase_dp06_ckpt_epoch_241.pth vmamba-v0-base_in1k.pth [--ema]
#   python tools/test.py configs/classification/vmamba-v0-base_8xb128_in1k.py vmamba-v0-base_in1k.pth
# drop-path: the official builder and the checkpoint name use 0.6 (the yaml says 0.5).
_base_ = "./_base_/vmamba_8xb128_in1k.py"

model = dict(
    backbone=dict(arch="v0-base", drop_path_rate=0.6),
    head=dict(in_channels=1024),
)
