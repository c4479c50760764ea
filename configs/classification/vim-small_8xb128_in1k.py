# Vim-S on ImageNet-1k: the Vim-Ti recipe with the official Vim-S changes (weight decay 0.05,
# drop path 0.05). Official checkpoint: top-1 80.5 (`vim_s_midclstok_80p5acc.pth`); the
# stride-8 fine-tuned Vim-S+ (`arch='small-s8'`) reaches 81.6.
# Note: the official Vim-S run used 8 GPUs x 64 images at lr 1e-3; this config keeps the
# 8 x 128 layout of its name. To reproduce the official run exactly, pass
# `--cfg-options train_dataloader.batch_size=64` (lr stays 1e-3).
_base_ = "./vim-tiny_8xb128_in1k.py"

embed_dims = 384
model = dict(
    backbone=dict(arch="small", drop_path_rate=0.05),
    head=dict(in_channels=embed_dims),
)
optim_wrapper = dict(optimizer=dict(weight_decay=0.05))
