# UperNet + Vim-S on ADE20K: the Vim-Ti setup (upernet_vim-tiny_4xb8-60k_ade20k-512x512.py) with
# the official Vim-S settings: 384 channels, AdamW lr 1e-4, wd 0.05, layer-wise lr decay 0.95.
# Paper (not reproduced here): Vim-S UperNet ADE20K val mIoU 44.9 (single scale).
_base_ = "./upernet_vim-tiny_4xb8-60k_ade20k-512x512.py"

embed_dims = 384
num_layers = 24
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

# Same rule as the tiny config, re-derived for rate 0.95 (see there).
_block_1d = (
    "norm.",
    "mixer.D",
    "mixer.conv1d.bias",
    "mixer.conv1d_b.bias",
    "mixer.dt_proj.bias",
    "mixer.dt_proj_b.bias",
)
_layer_keys = {
    f"backbone.layers.{i}.": dict(lr_mult=layer_decay_rate ** (num_layers - i))
    for i in range(num_layers)
}
_layer_keys.update(
    {
        f"backbone.layers.{i}.{name}": dict(
            lr_mult=layer_decay_rate ** (num_layers - i), decay_mult=0.0
        )
        for i in range(num_layers)
        for name in _block_1d
    }
)
_layer_keys.update(
    {
        "backbone.patch_embed.proj.weight": dict(lr_mult=layer_decay_rate ** (num_layers + 1)),
        "backbone.patch_embed.proj.bias": dict(
            lr_mult=layer_decay_rate ** (num_layers + 1), decay_mult=0.0
        ),
        "backbone.pos_embed": dict(lr_mult=layer_decay_rate ** (num_layers + 1), decay_mult=0.0),
        "backbone.cls_token": dict(lr_mult=layer_decay_rate ** (num_layers + 1), decay_mult=0.0),
    }
)
optim_wrapper = dict(
    optimizer=dict(lr=1e-4, weight_decay=0.05),
    paramwise_cfg=dict(custom_keys=_layer_keys),
)
