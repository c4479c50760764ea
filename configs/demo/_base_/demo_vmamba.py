# What the demo configs (configs/demo/*.py) share: the small VMamba they both train from scratch
# on the synthetic shapes sets, and the settings they have in common.
#
# The backbone is handed out as the helper `demo_backbone`, not as `model.backbone`: a `model`
# here would clash with the mmdet/mmseg model base each demo config inherits next to this file
# (mmengine allows no key in two sibling bases). A demo config uses it as
#     model = dict(backbone=dict(_delete_=True, **_base_.demo_backbone), ...)
#     del _base_.demo_backbone  # a helper, not a setting: keep it out of the final config
custom_imports = dict(imports=["mmvmamba"], allow_failed_imports=False)

dims = [24, 48, 96, 192]  # the backbone's stage widths: the neck / decode head input widths
demo_backbone = dict(
    type="VMamba",
    arch=dict(
        dims=dims,
        depths=[1, 1, 2, 1],
        d_state=1,
        ssm_ratio=1.0,
        forward_type="v05_noz",
        mlp_ratio=2.0,
        patch_embed="v2",
        downsample="v3",
    ),
    out_indices=(0, 1, 2, 3),
    drop_path_rate=0.0,
)

val_cfg = dict(type="ValLoop")
test_cfg = dict(type="TestLoop")
randomness = dict(seed=0)
