"""Independent float64 reference of the official Vim forward pass, written from the paper's and
the official code's description (not from mmvmamba's code), for the Vim tests.

Works directly on an official-layout state dict (``patch_embed.proj.*``, ``pos_embed``,
``cls_token``, ``layers.{i}.mixer.*``, ``layers.{i}.norm.weight``, ``norm_f.weight``,
``head.*``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def silu(x: torch.Tensor) -> torch.Tensor:
    return x / (1 + torch.exp(-x))


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    return x / torch.sqrt((x * x).mean(-1, keepdim=True) + eps) * weight


def mamba_direction(x, z, conv_w, conv_b, xproj_w, dtproj_w, dtproj_b, a_log, d):
    """One Mamba direction on token-major ``x, z`` (B, L, E): causal conv as an explicit loop,
    then the selective scan one time step at a time. Returns the gated output (B, L, E)."""
    batch, length, inner = x.shape
    kernel = conv_w.shape[-1]
    rank = dtproj_w.shape[1]
    n = a_log.shape[1]
    u = torch.zeros_like(x)
    for t in range(length):
        acc = conv_b.expand(batch, inner).clone()
        for k in range(kernel):
            src = t - (kernel - 1) + k
            if src >= 0:
                acc = acc + conv_w[:, 0, k] * x[:, src]
        u[:, t] = acc
    u = silu(u)
    dbl = u @ xproj_w.T
    dt_low, b_mat, c_mat = dbl[..., :rank], dbl[..., rank : rank + n], dbl[..., rank + n :]
    delta = torch.log1p(torch.exp(dt_low @ dtproj_w.T + dtproj_b))  # softplus
    a = -torch.exp(a_log)
    h = torch.zeros(batch, inner, n, dtype=x.dtype)
    ys = []
    for t in range(length):
        h = (
            torch.exp(delta[:, t, :, None] * a) * h
            + delta[:, t, :, None] * b_mat[:, t, None, :] * u[:, t, :, None]
        )
        y = (h * c_mat[:, t, None, :]).sum(-1) + d * u[:, t]
        ys.append(y * silu(z[:, t]))
    return torch.stack(ys, dim=1)


def bimamba_v2(p: dict, hidden: torch.Tensor, divide_out: bool = True) -> torch.Tensor:
    """Vim's v2 mixer from the parameters ``p`` (official names without the layer prefix):
    forward loop, backward loop on the reversed sequence, average, out_proj."""
    inner = p["D"].shape[0]
    xz = hidden @ p["in_proj.weight"].T
    x, z = xz[..., :inner], xz[..., inner:]
    y_f = mamba_direction(
        x,
        z,
        p["conv1d.weight"],
        p["conv1d.bias"],
        p["x_proj.weight"],
        p["dt_proj.weight"],
        p["dt_proj.bias"],
        p["A_log"],
        p["D"],
    )
    y_b = mamba_direction(
        x.flip(1),
        z.flip(1),
        p["conv1d_b.weight"],
        p["conv1d_b.bias"],
        p["x_proj_b.weight"],
        p["dt_proj_b.weight"],
        p["dt_proj_b.bias"],
        p["A_b_log"],
        p["D_b"],
    )
    y = y_f + y_b.flip(1)
    if divide_out:
        y = y / 2
    return y @ p["out_proj.weight"].T


def resize_pos_embed(pos: torch.Tensor, src: tuple, dst: tuple) -> torch.Tensor:
    """Middle-class-token position embedding resize: cls at M//2 out, bicubic, back in."""
    c = pos.shape[-1]
    m_src = src[0] * src[1]
    cls_idx = m_src // 2
    patches = torch.cat([pos[0, :cls_idx], pos[0, cls_idx + 1 :]])  # (M, C)
    img = patches.T.reshape(1, c, src[0], src[1])
    img = F.interpolate(img, size=tuple(dst), mode="bicubic", align_corners=False)
    new = img.reshape(c, -1).T
    mid = new.shape[0] // 2
    return torch.cat([new[:mid], pos[0, cls_idx : cls_idx + 1], new[mid:]])[None]


def vim_tokens(
    sd: dict,
    images: torch.Tensor,
    stride: int,
    src_grid: tuple | None = None,
    final_norm: bool = True,
):
    """Official Vim forward up to ``norm_f``. Returns (tokens (B, M+1, C), grid, middle index).

    ``src_grid``: the grid ``pos_embed`` was stored for, when it differs from the input's.
    ``final_norm=False`` returns the residual stream after the last block instead."""
    sd = {k: v.double() for k, v in sd.items()}
    feat = F.conv2d(
        images.double(), sd["patch_embed.proj.weight"], sd["patch_embed.proj.bias"], stride=stride
    )
    batch, channels, h, w = feat.shape
    tokens = feat.reshape(batch, channels, h * w).transpose(1, 2)
    mid = (h * w) // 2
    cls = sd["cls_token"].expand(batch, 1, channels)
    tokens = torch.cat([tokens[:, :mid], cls, tokens[:, mid:]], dim=1)
    pos = sd["pos_embed"]
    if src_grid is not None and tuple(src_grid) != (h, w):
        pos = resize_pos_embed(pos, src_grid, (h, w))
    residual = tokens + pos
    depth = len({k.split(".")[1] for k in sd if k.startswith("layers.")})
    for i in range(depth):
        prefix = f"layers.{i}.mixer."
        params = {k[len(prefix) :]: v for k, v in sd.items() if k.startswith(prefix)}
        hidden = rms_norm(residual, sd[f"layers.{i}.norm.weight"])
        residual = residual + bimamba_v2(params, hidden)
    out = rms_norm(residual, sd["norm_f.weight"]) if final_norm else residual
    return out, (h, w), mid


def official_state_dict(
    embed_dims: int,
    depth: int,
    grid: tuple,
    num_classes: int = 10,
    d_state: int = 16,
    patch: int = 16,
    generator=None,
) -> dict:
    """Random weights in the official key layout (names and shapes from the Vim facts table)."""
    c, e = embed_dims, 2 * embed_dims
    r = -(-embed_dims // 16)
    g = generator

    def rnd(*shape, scale=0.1):
        return torch.randn(*shape, generator=g) * scale

    sd = {
        "cls_token": rnd(1, 1, c, scale=0.5),
        "pos_embed": rnd(1, grid[0] * grid[1] + 1, c, scale=0.5),
        "patch_embed.proj.weight": rnd(c, 3, patch, patch, scale=0.05),
        "patch_embed.proj.bias": rnd(c),
        "head.weight": rnd(num_classes, c),
        "head.bias": rnd(num_classes),
    }
    for i in range(depth):
        p = f"layers.{i}.mixer."
        sd.update(
            {
                p + "A_log": torch.log(torch.arange(1, d_state + 1.0)).repeat(e, 1)
                + rnd(e, d_state),
                p + "D": 1 + rnd(e),
                p + "A_b_log": torch.log(torch.arange(1, d_state + 1.0)).repeat(e, 1)
                + rnd(e, d_state),
                p + "D_b": 1 + rnd(e),
                p + "in_proj.weight": rnd(2 * e, c, scale=0.2),
                p + "conv1d.weight": rnd(e, 1, 4, scale=0.3),
                p + "conv1d.bias": rnd(e),
                p + "x_proj.weight": rnd(r + 2 * d_state, e, scale=0.2),
                p + "dt_proj.weight": rnd(e, r, scale=0.3),
                p + "dt_proj.bias": rnd(e) - 3,
                p + "conv1d_b.weight": rnd(e, 1, 4, scale=0.3),
                p + "conv1d_b.bias": rnd(e),
                p + "x_proj_b.weight": rnd(r + 2 * d_state, e, scale=0.2),
                p + "dt_proj_b.weight": rnd(e, r, scale=0.3),
                p + "dt_proj_b.bias": rnd(e) - 2,
                p + "out_proj.weight": rnd(c, e, scale=0.2),
                f"layers.{i}.norm.weight": 1 + rnd(c),
            }
        )
    sd["norm_f.weight"] = 1 + rnd(c)
    return sd
