# Demo: UperNet with a small VMamba, trained from scratch on the synthetic ADE20K-format shapes
# set (5 classes: sky, ground, circle, square, triangle; label 0 = unlabelled, ignored via
# reduce_zero_label) made by mmvmamba.datasets.make_ade_demo. Runs on a CPU in minutes:
# `python tools/demo.py`. Everything below is ordinary mmseg; only the sizes are small. The
# backbone and the settings shared with the detection demo are in _base_/demo_vmamba.py.
_base_ = [
    "mmseg::_base_/models/upernet_swin.py",
    "mmseg::_base_/default_runtime.py",
    "./_base_/demo_vmamba.py",
]

data_root = "data/demo/ade/ADEChallengeData2016"
classes = ("sky", "ground", "circle", "square", "triangle")
metainfo = dict(
    classes=classes,
    palette=[[120, 160, 220], [140, 110, 70], [220, 40, 40], [40, 200, 60], [40, 80, 230]],
)
crop_size = (128, 128)
max_iters = 400

model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(_delete_=True, **_base_.demo_backbone),
    decode_head=dict(in_channels=_base_.dims, channels=64, num_classes=len(classes)),
    auxiliary_head=dict(in_channels=_base_.dims[2], channels=32, num_classes=len(classes)),
)
del _base_.demo_backbone  # a helper of the base, not a setting (see the base)

train_pipeline = [
    dict(type="LoadImageFromFile"),
    dict(type="LoadAnnotations"),  # reduce_zero_label comes from the dataset
    dict(type="RandomResize", scale=crop_size, ratio_range=(0.75, 1.5), keep_ratio=True),
    dict(type="RandomCrop", crop_size=crop_size, cat_max_ratio=0.75),
    dict(type="RandomFlip", prob=0.5),
    dict(type="PackSegInputs"),
]
test_pipeline = [
    dict(type="LoadImageFromFile"),
    dict(type="Resize", scale=crop_size, keep_ratio=True),
    dict(type="LoadAnnotations"),  # reduce_zero_label comes from the dataset
    dict(type="PackSegInputs"),
]
dataset = dict(
    type="BaseSegDataset",
    data_root=data_root,
    metainfo=metainfo,
    img_suffix=".jpg",
    seg_map_suffix=".png",
    reduce_zero_label=True,
)
train_dataloader = dict(
    batch_size=4,
    num_workers=0,
    persistent_workers=False,
    sampler=dict(type="InfiniteSampler", shuffle=True),
    dataset=dict(
        **dataset,
        data_prefix=dict(img_path="images/training", seg_map_path="annotations/training"),
        pipeline=train_pipeline,
    ),
)
val_dataloader = dict(
    batch_size=4,
    num_workers=0,
    persistent_workers=False,
    sampler=dict(type="DefaultSampler", shuffle=False),
    dataset=dict(
        **dataset,
        data_prefix=dict(img_path="images/validation", seg_map_path="annotations/validation"),
        pipeline=test_pipeline,
    ),
)
test_dataloader = val_dataloader
val_evaluator = dict(type="IoUMetric", iou_metrics=["mIoU"])
test_evaluator = val_evaluator

train_cfg = dict(type="IterBasedTrainLoop", max_iters=max_iters, val_interval=max_iters)
optim_wrapper = dict(
    type="OptimWrapper",
    optimizer=dict(type="AdamW", lr=2e-3, betas=(0.9, 0.999), weight_decay=0.01),
    paramwise_cfg=dict(custom_keys={"norm": dict(decay_mult=0.0)}),
)
param_scheduler = [
    dict(type="LinearLR", start_factor=0.01, by_epoch=False, begin=0, end=30),
    dict(type="PolyLR", power=1.0, eta_min=0.0, by_epoch=False, begin=30, end=max_iters),
]
default_hooks = dict(
    timer=dict(type="IterTimerHook"),
    logger=dict(type="LoggerHook", interval=20, log_metric_by_epoch=False),
    param_scheduler=dict(type="ParamSchedulerHook"),
    checkpoint=dict(type="CheckpointHook", by_epoch=False, interval=max_iters, max_keep_ckpts=1),
    sampler_seed=dict(type="DistSamplerSeedHook"),
    visualization=dict(type="SegVisualizationHook"),
)
