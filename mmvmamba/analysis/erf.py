"""Effective receptive field (ERF) of a backbone, as in the VMamba paper's ERF figure.

Method (RepLKNet, Ding et al. CVPR 2022, which the paper follows): for each input image x,
take the last-stage feature map f (B, C, h, w), the scalar
``s = sum_c relu(f[0, c, h//2, w//2])`` (the ReLU is RepLKNet's, and needed: backbones end in a
LayerNorm, whose output sums to exactly zero over channels, so the plain channel sum has no
gradient), and the input gradient ``|ds/dx|`` summed over the colour channels: an (H, W) map.
The ERF is its mean over the images. A local model concentrates that mass around the centre;
a model with a global receptive field spreads it.

Two locality statistics make "more local" a number:

* :func:`central_mass`: the share of the ERF's total mass inside the central square whose side
  is a given fraction of the image side.
* :func:`area_ratio`: RepLKNet's "high-contribution area ratio": the area (as a fraction of the
  image) of the smallest centred square that holds a given share ``t`` of the mass.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm import tqdm

__all__ = [
    "area_ratio",
    "central_mass",
    "compute_erf",
    "erf_log_map",
    "load_images",
    "plot_erfs",
    "random_images",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def random_images(num: int, size: int, seed: int = 0) -> Tensor:
    """``num`` standard-normal images (num, 3, size, size), i.e. already-normalised noise."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(num, 3, size, size, generator=gen)


def load_images(folder: str, num: int, size: int) -> Tensor:
    """Up to ``num`` images of ``folder`` (recursively): short side resized to ``size``, centre
    crop ``size``, ImageNet-normalised. Returns (n, 3, size, size) float32.

    Raises:
        FileNotFoundError: the folder holds no .jpg/.jpeg/.png/.bmp/.webp image.
    """
    import os

    from PIL import Image

    exts = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
    paths = sorted(
        os.path.join(root, f)
        for root, _, files in os.walk(folder)
        for f in files
        if f.lower().endswith(exts)
    )[:num]
    if not paths:
        raise FileNotFoundError(f"no images ({', '.join(exts)}) under {folder!r}")
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    out = []
    for path in paths:
        img = Image.open(path).convert("RGB")
        w, h = img.size
        scale = size / min(w, h)
        img = img.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.BICUBIC)
        w, h = img.size
        left, top = (w - size) // 2, (h - size) // 2
        img = img.crop((left, top, left + size, top + size))
        t = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1)
        out.append((t - mean) / std)
    return torch.stack(out)


def _last_map(out) -> Tensor:
    if isinstance(out, Tensor):
        feat = out
    elif isinstance(out, (tuple, list)) and out:
        feat = out[-1]
    else:
        raise TypeError(f"the model must return a tensor or a tuple of them, got {type(out)}")
    if not isinstance(feat, Tensor) or feat.dim() != 4:
        shape = tuple(feat.shape) if isinstance(feat, Tensor) else type(feat).__name__
        raise ValueError(
            f"ERF needs a (B, C, h, w) feature map as the (last) output, got {shape}; build the "
            "backbone so it returns maps (e.g. models.build_backbone)"
        )
    return feat


def compute_erf(
    model: nn.Module,
    images: Tensor | Iterable[Tensor],
    relu: bool = True,
    progress: bool = True,
) -> np.ndarray:
    """Mean input-gradient map of the central unit of the model's last feature map.

    Args:
        model: maps (1, 3, H, W) to a (1, C, h, w) map or a tuple whose last item is one.
            Used in eval mode; its parameters get no gradient.
        images: (N, 3, H, W) or an iterable of (3, H, W) / (1, 3, H, W) tensors.
        relu: ReLU each channel of the central unit before summing (RepLKNet's choice, the
            default). Without it, a model ending in a LayerNorm (VMamba, Swin, ConvNeXt) gives
            an all-zero ERF: the normalised channels of a position sum to zero.
        progress: show a tqdm bar.

    Returns:
        (H, W) float64 array: mean over images of ``sum_rgb |d s / d x|``.
    """
    was_training = model.training
    model.eval()
    device = next(iter(model.parameters()), torch.empty(0)).device
    requires = [p.requires_grad for p in model.parameters()]
    for p in model.parameters():
        p.requires_grad_(False)
    total, count = None, 0
    items = list(images) if not isinstance(images, Tensor) else list(images.unbind(0))
    try:
        for img in tqdm(items, desc="ERF", disable=not progress, leave=False):
            x = (img if img.dim() == 4 else img.unsqueeze(0)).to(device).float()
            x = x.clone().requires_grad_(True)
            feat = _last_map(model(x))
            h, w = feat.shape[-2:]
            centre = feat[:, :, h // 2, w // 2].float()
            if relu:
                centre = F.relu(centre)
            (grad,) = torch.autograd.grad(centre.sum(), x)
            g = grad.abs().sum(dim=(0, 1)).double().cpu().numpy()
            total = g if total is None else total + g
            count += 1
    finally:
        for p, r in zip(model.parameters(), requires):
            p.requires_grad_(r)
        model.train(was_training)
    if count == 0:
        raise ValueError("compute_erf got no images")
    return total / count


def central_mass(erf: np.ndarray, side_fraction: float = 0.25) -> float:
    """Share of the ERF's mass in the central square of side ``side_fraction`` x image side."""
    if not 0 < side_fraction <= 1:
        raise ValueError(f"side_fraction must be in (0, 1], got {side_fraction}")
    h, w = erf.shape
    sh, sw = max(1, round(h * side_fraction)), max(1, round(w * side_fraction))
    top, left = (h - sh) // 2, (w - sw) // 2
    return float(erf[top : top + sh, left : left + sw].sum() / max(erf.sum(), 1e-300))


def area_ratio(erf: np.ndarray, threshold: float) -> float:
    """Area fraction of the smallest centred square holding ``threshold`` of the ERF's mass
    (RepLKNet's high-contribution area ratio; the square grows one pixel ring at a time)."""
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    h, w = erf.shape
    total = max(erf.sum(), 1e-300)
    cy, cx = h // 2, w // 2
    for r in range(max(h, w)):
        box = erf[max(0, cy - r) : cy + r + 1, max(0, cx - r) : cx + r + 1]
        if box.sum() / total >= threshold:
            return box.size / (h * w)
    return 1.0


def erf_log_map(erf: np.ndarray, decades: float = 3.0) -> np.ndarray:
    """The ERF on a log scale in [0, 1] for display: ``log10(erf / max)`` clipped to the top
    ``decades`` orders of magnitude and shifted to [0, 1] (RepLKNet plots ``log10(erf + 1)``
    of trained models; normalising first makes untrained, tiny gradients comparable too)."""
    norm = erf / max(float(erf.max()), 1e-300)
    return np.clip(np.log10(np.maximum(norm, 10.0**-decades)) / decades + 1.0, 0.0, 1.0)


def plot_erfs(
    maps: Sequence[tuple[str, np.ndarray]], path: str, decades: float = 3.0, title: str = ""
) -> str:
    """Draw several ERFs side by side (log scale, RepLKNet's ``RdYlGn`` colours) into ``path``."""
    import os

    from .plotting import get_pyplot

    plt = get_pyplot()
    n = len(maps)
    fig, axes = plt.subplots(1, n, figsize=(3.4 * n + 0.8, 3.6), squeeze=False)
    image = None
    for ax, (label, erf) in zip(axes[0], maps):
        image = ax.imshow(erf_log_map(erf, decades), cmap="RdYlGn", vmin=0, vmax=1)
        ax.set_title(f"{label}\nmass in centre 1/4: {central_mass(erf):.2f}", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    if image is not None:
        fig.colorbar(image, ax=list(axes[0]), shrink=0.8, label=f"log10 (top {decades:g} decades)")
    if title:
        fig.suptitle(title)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path
