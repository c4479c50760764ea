# Vim-B on ImageNet-1k (official top-1 81.9, `hustvl/Vim-base-midclstok`). The official Vim-B
# pre-training hyper-parameters are not published with the code; this uses the Vim-S recipe
# with DeiT-B's drop path 0.1.
_base_ = "./vim-tiny_8xb128_in1k.py"

embed_dims = 768
model = dict(
    backbone=dict(arch="base", drop_path_rate=0.1),
    head=dict(in_channels=embed_dims),
)
optim_wrapper = dict(optimizer=dict(weight_decay=0.05))
