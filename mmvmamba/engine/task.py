"""Which framework a config belongs to, and the defaults that framework's own tools add."""

from __future__ import annotations

from mmengine.config import Config

TASKS = ("classification", "detection", "segmentation")
_SCOPE_TO_TASK = {"mmpretrain": "classification", "mmdet": "detection", "mmseg": "segmentation"}


def detect_task(cfg: Config) -> str:
    """The task of a config: ``'classification'``, ``'detection'`` or ``'segmentation'``.

    Read from ``default_scope`` (set by every framework's ``default_runtime``); configs without
    one are recognised by their data preprocessor / model type.
    """
    scope = cfg.get("default_scope")
    if scope in _SCOPE_TO_TASK:
        return _SCOPE_TO_TASK[scope]
    model = cfg.get("model", {}) or {}
    kinds = " ".join(
        str(x) for x in (model.get("type"), (model.get("data_preprocessor") or {}).get("type"))
    )
    if "Seg" in kinds or "EncoderDecoder" in kinds:
        return "segmentation"
    if "Det" in kinds or "RCNN" in kinds:
        return "detection"
    if "Cls" in kinds or "ImageClassifier" in kinds:
        return "classification"
    raise ValueError(
        f"cannot tell the task of this config (default_scope={scope!r}, model.type="
        f"{model.get('type')!r}); set default_scope to 'mmpretrain', 'mmdet' or 'mmseg'"
    )


def apply_task_defaults(cfg: Config) -> str:
    """Apply the per-framework defaults their own tools add; return the task.

    A config's local ``CheckpointHook`` becomes :class:`AtomicCheckpointHook` (same arguments).

    mmpretrain's ``tools/train.py``/``test.py`` give every dataloader
    ``collate_fn=default_collate`` (mmengine's default is ``pseudo_collate``) and
    ``persistent_workers``; mmdet and mmseg configs carry everything themselves.
    """
    task = detect_task(cfg)
    # checkpoints are written then renamed, so a kill during a save never loses the last good one
    ckpt_hook = cfg.get("default_hooks", {}).get("checkpoint")
    local_plain_hook = (
        ckpt_hook is not None
        and ckpt_hook.get("type") in ("CheckpointHook", "mmengine.CheckpointHook")
        and ckpt_hook.get("backend_args") is None
        and ckpt_hook.get("file_client_args") is None
    )
    if local_plain_hook:
        ckpt_hook["type"] = "AtomicCheckpointHook"
    if task == "classification":
        for field in ("train_dataloader", "val_dataloader", "test_dataloader"):
            loader = cfg.get(field)
            if not loader:
                continue
            loader.setdefault("collate_fn", dict(type="default_collate"))
            loader.setdefault("pin_memory", True)
            loader.setdefault("persistent_workers", loader.get("num_workers", 0) > 0)
    return task
