"""Official Vim (hustvl/Vim) checkpoints -> mmvmamba names, and the position-embedding resize.

The official ``main.py`` saves ``{'model', 'model_ema', 'optimizer', 'lr_scheduler', 'epoch',
'scaler', 'args'}`` where ``model`` is the ``VisionMamba`` state dict. Our backbone keeps the
official parameter names, so the conversion is only:

* the weights are found by :func:`~mmvmamba.checkpoint.io.unwrap_checkpoint`,
* the official ``head.*`` is the classifier's linear layer: mmpretrain's ``head.fc.*``
  (:data:`HEAD_PREFIX`); the rest is the backbone,
* the position embedding is resized to the model's patch grid, keeping the MIDDLE class token
  in its slot (:func:`resize_vim_pos_embed`).

The released "midclstok" models put the class token at index ``M // 2`` of the ``M + 1``
tokens (``M`` patches). The early January-2024 releases (head class token + RoPE) are refused
with a clear message (:func:`check_vim_release`): their token layout differs while their
``pos_embed`` shape does not.

The same functions serve the load-time conversion of the backbone
(:meth:`Vim.convert_state_dict`, see :mod:`mmvmamba.checkpoint.hooks`) and the offline
converter :func:`convert_vim_checkpoint` (``tools/model_converters/vim_to_mmvmamba.py``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
import torch.nn.functional as F

from .io import CheckpointError, classifier_layout, split_prefix, unwrap_checkpoint

__all__ = [
    "HEAD_PREFIX",
    "check_vim_release",
    "convert_vim_checkpoint",
    "infer_vim_grid",
    "is_official_vim",
    "resize_middle_cls",
    "resize_vim_pos_embed",
    "vim_release_name",
]

HEAD_PREFIX = "head."  # the official classifier's linear layer


def infer_vim_grid(num_tokens: int) -> tuple[int, int]:
    """Patch grid ``(h, w)`` of a square Vim position embedding with ``num_tokens = h * w + 1``.

    Raises:
        CheckpointError: ``num_tokens - 1`` is not a perfect square (pass the grid explicitly).
    """
    patches = num_tokens - 1
    side = math.isqrt(max(patches, 0))
    if patches < 1 or side * side != patches:
        raise CheckpointError(
            f"cannot infer the patch grid of a Vim pos_embed with {num_tokens} tokens: "
            f"{patches} patches is not a square; pass the source grid explicitly"
        )
    return side, side


def resize_vim_pos_embed(
    pos_embed: torch.Tensor,
    src_grid: tuple[int, int],
    dst_grid: tuple[int, int],
    mode: str = "bicubic",
) -> torch.Tensor:
    """Resize a middle-class-token position embedding to another patch grid.

    The class token's embedding sits at index ``M // 2`` (``M = h * w`` patches, row-major
    patch order). It is taken out, the ``M`` patch embeddings are resized as an ``(h, w)``
    image (``align_corners=False``, as in timm/DeiT), and the class embedding is put back at
    ``M' // 2`` of the new grid.

    Args:
        pos_embed: ``(1, h * w + 1, C)``.
        src_grid: ``(h, w)`` of ``pos_embed``.
        dst_grid: ``(h', w')`` wanted; ``h' != w'`` is allowed.
        mode: ``F.interpolate`` mode (default bicubic).

    Returns:
        ``(1, h' * w' + 1, C)`` in the dtype of ``pos_embed`` (interpolated in at least float32).
        ``pos_embed`` itself when the grids are equal.
    """
    src_h, src_w = (int(v) for v in src_grid)
    dst_h, dst_w = (int(v) for v in dst_grid)
    if pos_embed.dim() != 3 or pos_embed.shape[0] != 1:
        raise ValueError(f"pos_embed must be (1, M + 1, C), got {tuple(pos_embed.shape)}")
    if pos_embed.shape[1] != src_h * src_w + 1:
        raise ValueError(
            f"pos_embed has {pos_embed.shape[1]} tokens but src_grid {src_grid} implies "
            f"{src_h * src_w + 1} (patches + 1 class token)"
        )
    if dst_h < 1 or dst_w < 1:
        raise ValueError(f"dst_grid must be positive, got {dst_grid}")
    if (src_h, src_w) == (dst_h, dst_w):
        return pos_embed
    return resize_middle_cls(pos_embed, (src_h, src_w), (dst_h, dst_w), mode)


def resize_middle_cls(
    pos_embed: torch.Tensor, src_grid: tuple, dst_grid: tuple, mode: str = "bicubic"
) -> torch.Tensor:
    """The resize of :func:`resize_vim_pos_embed` without checks or ``int()`` on the grids.

    ``dst_grid`` may hold symbolic sizes (``torch.export``): nothing here branches on its
    value. Bicubic at equal grids (scale 1) returns ``pos_embed``'s values exactly.
    """
    src_h, src_w = src_grid
    dst_h, dst_w = dst_grid
    src_cls = (src_h * src_w) // 2
    cls_pe = pos_embed[:, src_cls : src_cls + 1]
    patch_pe = torch.cat([pos_embed[:, :src_cls], pos_embed[:, src_cls + 1 :]], dim=1)
    channels = pos_embed.shape[-1]
    compute = torch.promote_types(pos_embed.dtype, torch.float32)
    grid = patch_pe.reshape(1, src_h, src_w, channels).permute(0, 3, 1, 2).to(compute)
    grid = F.interpolate(grid, size=(dst_h, dst_w), mode=mode, align_corners=False)
    patch_pe = grid.permute(0, 2, 3, 1).reshape(1, dst_h * dst_w, channels).to(pos_embed.dtype)
    dst_cls = (dst_h * dst_w) // 2
    return torch.cat([patch_pe[:, :dst_cls], cls_pe, patch_pe[:, dst_cls:]], dim=1)


def is_official_vim(state: Mapping) -> bool:
    """Whether ``state`` holds Vim backbone keys without a prefix."""
    return "pos_embed" in state and "patch_embed.proj.weight" in state


def vim_release_name(checkpoint: Mapping) -> str:
    """The official model name a file was trained as (``args.model``), or ``''``."""
    return str(getattr(checkpoint.get("args"), "model", "") or "")


def check_vim_release(checkpoint: Mapping) -> None:
    """Refuse the early Vim releases (RoPE, class token first) that load without a shape error
    but compute something else.

    Args:
        checkpoint: an official file (``args`` and ``model`` / ``model_ema`` are looked at) or a
            flat state dict without prefix.

    Raises:
        CheckpointError: RoPE keys, or an ``args.model`` that is not a middle-class-token Vim.
    """
    for weights in (checkpoint, checkpoint.get("model"), checkpoint.get("model_ema")):
        rope = [k for k in weights or () if str(k).startswith("rope.")]
        if rope:
            raise CheckpointError(
                f"this is an early Vim release with RoPE ({rope[0]}) and a head class token; "
                "only the 'midclstok' checkpoints (vim_t_midclstok_76p1acc.pth, "
                "vim_s_midclstok_80p5acc.pth, their _ft_ stride-8 versions, Vim-base-midclstok) "
                "are supported"
            )
    name = vim_release_name(checkpoint)
    if name and "vim" in name and "midclstok" not in name and "middle_cls_token" not in name:
        raise CheckpointError(
            f"checkpoint was trained as '{name}', not a middle-class-token Vim; only the "
            "'midclstok' releases are supported"
        )


def convert_vim_checkpoint(
    checkpoint: Mapping,
    use_ema: bool = False,
    grid: tuple[int, int] | None = None,
    src_grid: tuple[int, int] | None = None,
) -> dict[str, torch.Tensor]:
    """Map an official Vim checkpoint to an mmpretrain ``ImageClassifier`` state dict, offline.

    Already converted input (keys ``backbone.*``, optionally wrapped in ``state_dict``) is passed
    through, only resized to ``grid``, so callers can feed any Vim checkpoint to this function.

    Args:
        checkpoint: the loaded official file (dict with ``model``/``model_ema``), a bare official
            state dict, or an mmvmamba/mmengine checkpoint (``state_dict`` with ``backbone.*``).
        use_ema: take ``model_ema`` instead of ``model``.
        grid: target patch grid ``(h, w)``; ``None`` keeps the checkpoint's.
        src_grid: the checkpoint's patch grid; ``None`` infers a square one.

    Returns:
        ``{'backbone.<official name>': tensor, ..., 'head.fc.weight', 'head.fc.bias'}``
        (the head keys only when the checkpoint has a classifier head). Tensors are not copied.

    Raises:
        CheckpointError: the EMA weights are asked for but absent, the checkpoint is not a Vim
            one, or it is an unsupported early (RoPE / head-class-token) release.
    """
    state = unwrap_checkpoint(checkpoint, use_ema=use_ema)
    check_vim_release({**checkpoint, "model": state})
    if is_official_vim(state):
        backbone, head = split_prefix(state, HEAD_PREFIX)
        out = classifier_layout(backbone, head)
    elif any(k.startswith("backbone.") for k in state):
        out = state
    else:
        raise CheckpointError(
            "not a Vim checkpoint: expected 'pos_embed' and 'patch_embed.proj.weight' (official "
            f"layout) or 'backbone.*' keys (converted); found e.g. {sorted(state)[:5]}"
        )
    if grid is not None and "backbone.pos_embed" in out:
        pos = out["backbone.pos_embed"]
        src = tuple(src_grid) if src_grid is not None else infer_vim_grid(pos.shape[1])
        out = dict(out)
        out["backbone.pos_embed"] = resize_vim_pos_embed(pos, src, tuple(grid))
    return out
