"""Official Vim (hustvl/Vim) checkpoints -> mmvmamba state dicts.

The official ``main.py`` saves ``{'model', 'model_ema', 'optimizer', 'lr_scheduler', 'epoch',
'scaler', 'args'}`` where ``model`` is the ``VisionMamba`` state dict. Our backbone keeps the
official parameter names, so the conversion is only:

* pick ``model`` (or ``model_ema``),
* prefix backbone keys with ``backbone.`` and rename ``head.*`` -> ``head.fc.*`` (mmpretrain
  ``ImageClassifier`` with a ``LinearClsHead``),
* optionally resize the position embedding to another patch grid, keeping the MIDDLE class
  token in its slot (:func:`resize_vim_pos_embed`).

The released "midclstok" models put the class token at index ``M // 2`` of the ``M + 1``
tokens (``M`` patches). The early January-2024 releases (head class token + RoPE) are refused
with a clear message: their token layout differs while their ``pos_embed`` shape does not.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
import torch.nn.functional as F

from .io import CheckpointError

__all__ = [
    "convert_vim_checkpoint",
    "infer_vim_grid",
    "resize_middle_cls",
    "resize_vim_pos_embed",
]

_CLASSIFIER_HEAD = {"head.weight": "head.fc.weight", "head.bias": "head.fc.bias"}


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


def _is_official(state_dict: Mapping) -> bool:
    return "pos_embed" in state_dict and "patch_embed.proj.weight" in state_dict


def convert_vim_checkpoint(
    checkpoint: Mapping,
    use_ema: bool = False,
    grid: tuple[int, int] | None = None,
    src_grid: tuple[int, int] | None = None,
) -> dict[str, torch.Tensor]:
    """Map an official Vim checkpoint to an mmpretrain ``ImageClassifier`` state dict.

    Already converted input (keys ``backbone.*``, optionally wrapped in ``state_dict``) is passed
    through, only resized to ``grid``, so callers can feed any Vim checkpoint to this function.

    Args:
        checkpoint: the loaded official file (dict with ``model``/``model_ema``), a bare official
            state dict, or an mmvmamba/mmengine checkpoint (``state_dict`` with ``backbone.*``).
        use_ema: take ``model_ema`` instead of ``model`` (official files only).
        grid: target patch grid ``(h, w)``; ``None`` keeps the checkpoint's.
        src_grid: the checkpoint's patch grid; ``None`` infers a square one.

    Returns:
        ``{'backbone.<official name>': tensor, ..., 'head.fc.weight', 'head.fc.bias'}``
        (the head keys only when the checkpoint has a classifier head). Tensors are not copied.

    Raises:
        CheckpointError: the EMA weights are asked for but absent, the checkpoint is not a Vim
            one, or it is an unsupported early (RoPE / head-class-token) release.
    """
    if not isinstance(checkpoint, Mapping):
        raise CheckpointError(f"expected a dict checkpoint, got {type(checkpoint).__name__}")
    if use_ema:
        if "model_ema" not in checkpoint:
            raise CheckpointError(
                "use_ema=True but the checkpoint has no 'model_ema' entry "
                f"(top-level keys: {sorted(checkpoint)[:10]}); use the 'model' weights instead"
            )
        state = checkpoint["model_ema"]
    elif "model" in checkpoint:
        state = checkpoint["model"]
    elif "state_dict" in checkpoint:
        state = checkpoint["state_dict"]
    else:
        state = checkpoint
    state = dict(state)

    rope = [k for k in state if k.startswith("rope.")]
    if rope:
        raise CheckpointError(
            f"this is an early Vim release with RoPE ({rope[0]}) and a head class token; only the "
            "'midclstok' checkpoints (vim_t_midclstok_76p1acc.pth, vim_s_midclstok_80p5acc.pth, "
            "their _ft_ stride-8 versions, Vim-base-midclstok) are supported"
        )
    args = checkpoint.get("args")
    model_name = str(getattr(args, "model", "") or "")
    if (
        model_name
        and "vim" in model_name
        and "midclstok" not in model_name
        and "middle_cls_token" not in model_name
    ):
        raise CheckpointError(
            f"checkpoint was trained as '{model_name}', not a middle-class-token Vim; only the "
            "'midclstok' releases are supported"
        )

    if _is_official(state):
        out = {}
        for key, value in state.items():
            out[_CLASSIFIER_HEAD.get(key, "backbone." + key)] = value
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
