"""Datasets: synthetic mini sets in the COCO / ADE20K / ImageNet formats, layout checks."""

from .layout import DatasetLayoutError, check_ade20k, check_coco, extract_archives
from .synthetic import (
    SEG_CLASSES,
    SEG_PALETTE,
    SHAPE_CLASSES,
    make_ade_demo,
    make_all_demos,
    make_coco_demo,
    make_imagenet_demo,
)
from .validate import CocoReport, DatasetError, validate_coco

__all__ = [
    "CocoReport",
    "DatasetError",
    "validate_coco",
    "DatasetLayoutError",
    "check_ade20k",
    "check_coco",
    "extract_archives",
    "SEG_CLASSES",
    "SEG_PALETTE",
    "SHAPE_CLASSES",
    "make_ade_demo",
    "make_all_demos",
    "make_coco_demo",
    "make_imagenet_demo",
]
