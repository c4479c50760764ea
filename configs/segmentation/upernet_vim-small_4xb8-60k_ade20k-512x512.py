# UperNet + Vim-S on ADE20K: the Vim-Ti setup (upernet_vim-tiny_4xb8-60k_ade20k-512x512.py) with
# the official Vim-S settings: 384 channels, AdamW lr 1e-4, wd 0.05, layer-wise lr decay 0.95.
# Paper (not reproduced here): Vim-S UperNet ADE20K val mIoU 44.9 (single scale).
_base_ = "./upernet_vim-tiny_4xb8-60k_ade20k-512x512.py"

embed_dims = 384
layer_decay_rate = 0.95
pretrained = (
    "https://huggingface.co/hustvl/Vim-small-midclstok/resolve/main/vim_s_midclstok_80p5acc.pth"
)
model = dict(
    backbone=dict(arch="small", init_cfg=dict(type="Pretrained", checkpoint=pretrained)),
    neck=dict(embed_dim=embed_dims),
    decode_head=dict(in_channels=[embed_dims] * 4, channels=embed_dims),
    auxiliary_head=dict(in_channels=embed_dims),
)

optim_wrapper = dict(
    optimizer=dict(lr=1e-4, weight_decay=0.05),
    paramwise_cfg=dict(layer_decay_rate=layer_decay_rate),
)
