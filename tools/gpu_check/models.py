"""The models the GPU check builds, and the sections ``compile`` and ``train_amp``.

Models are built directly (no registry, no config): VMamba-T and Vim-S from mmvmamba with a
plain pooling + linear head, Swin-T from timm (``swin_tiny_patch4_window7_224``, random
weights, ``img_size`` set for the input). In the dry run VMamba is a one-block-per-stage
VMamba-T of width 16 and Vim a 2-layer Vim-S, so every code path runs in seconds on a CPU.
"""

from __future__ import annotations

import math
import time

import torch
import torch.nn.functional as F
from torch import nn

from .context import Context, out_of_time, synchronize, time_calls
from .report import FAIL, PASS


def vmamba_backbone(dry_run: bool, drop_path_rate: float = 0.0):
    """VMamba-T (``arch='tiny'``) returning its last stage (B, 768, H/32, W/32)."""
    from mmvmamba.models.backbones.vmamba import VMamba

    arch = "tiny"
    if dry_run:
        arch = dict(VMamba.arch_zoo["tiny"], dims=16, depths=(1, 1, 1, 1))
    return VMamba(arch=arch, out_indices=(3,), drop_path_rate=drop_path_rate)


class Classifier(nn.Module):
    """``backbone -> last output -> global average pool (maps) -> Linear``: (B, 3, H, W) ->
    (B, num_classes)."""

    def __init__(self, backbone, channels: int, num_classes: int = 1000) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(channels, num_classes)

    def forward(self, x):
        feat = self.backbone(x)[-1]
        if feat.dim() == 4:
            feat = feat.mean((2, 3))
        return self.head(feat)


def vmamba_t(dry_run: bool, drop_path_rate: float = 0.0) -> Classifier:
    backbone = vmamba_backbone(dry_run, drop_path_rate)
    return Classifier(backbone, backbone.dims[-1])


def vim_s(dry_run: bool, img_size: int, drop_path_rate: float = 0.0) -> Classifier:
    """Vim-S (``arch='small'``; 2 layers in the dry run) classifying its middle class token."""
    from mmvmamba.models.backbones.vim import Vim

    arch = dict(embed_dims=384, num_layers=2) if dry_run else "small"
    backbone = Vim(
        arch=arch, img_size=img_size, out_type="cls_token", drop_path_rate=drop_path_rate
    )
    return Classifier(backbone, 384)


def swin_t(img_size: int):
    """timm's Swin-T with random weights, built for ``img_size`` inputs (no download)."""
    import timm

    return timm.create_model("swin_tiny_patch4_window7_224", pretrained=False, img_size=img_size)


# ------------------------------------------------------------------------------- compile


def run_compile(ctx: Context) -> None:
    """``torch.compile`` of the VMamba-T backbone forward (eval) against eager."""
    batch, size = (1, 64) if ctx.dry_run else (8, 224)
    model = vmamba_backbone(ctx.dry_run).to(ctx.device).eval()
    x = torch.randn(batch, 3, size, size, device=ctx.device)
    with torch.no_grad():
        eager = model(x)[-1].float()
    torch._dynamo.reset()
    from torch._dynamo.utils import counters

    counters.clear()
    compiled = torch.compile(model)

    def first_call():
        t0 = time.perf_counter()
        with torch.no_grad():
            out = compiled(x)[-1].float()
        synchronize(ctx.device)
        err = float((out - eager).abs().max() / eager.abs().max().clamp_min(1e-30))
        breaks = sum(counters["graph_break"].values())
        status = PASS if math.isfinite(err) and err <= 1e-3 else FAIL
        return {
            "compile_s": time.perf_counter() - t0,
            "max_err_rel": err,
            "graph_breaks": breaks,
            "status": status,
        }

    ctx.guarded("torch.compile vmamba-t backbone", first_call, batch=batch, size=size)
    if out_of_time(ctx, 10, "compiled vs eager timing"):
        return

    def timing():
        reps, max_s = (2, 2.0) if ctx.dry_run else (20, 3.0)
        with torch.no_grad():
            t_eager = time_calls(lambda: model(x), ctx.device, reps, max_s)
            t_comp = time_calls(lambda: compiled(x), ctx.device, reps, max_s)
        return {"eager_ms": 1e3 * t_eager, "compiled_ms": 1e3 * t_comp, "speedup": t_eager / t_comp}

    ctx.guarded("eager vs compiled forward", timing, batch=batch, size=size)


# ------------------------------------------------------------------------------- training


def train_steps(ctx: Context, model, amp_dtype: str, steps: int, batch: int, size: int) -> dict:
    """``steps`` AdamW steps on random images and labels under autocast; fails on a NaN/inf.

    float16 uses a GradScaler (its skipped steps are counted); bfloat16 needs none.
    """
    dtype = getattr(torch, amp_dtype)
    model = model.to(ctx.device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.05)
    # a moderate first scale: the default 2**16 overflows (and skips) the first steps of a
    # freshly initialised model, which would leave few of the 20 steps to check
    scaler = torch.amp.GradScaler(ctx.device, init_scale=2.0**12, enabled=dtype == torch.float16)
    g = torch.Generator(device=ctx.device).manual_seed(0)
    losses, skipped = [], 0
    t0 = time.perf_counter()
    for step in range(steps):
        x = torch.randn(batch, 3, size, size, device=ctx.device, generator=g)
        y = torch.randint(0, 1000, (batch,), device=ctx.device, generator=g)
        with torch.autocast(ctx.device, dtype=dtype):
            logits = model(x)
        loss = F.cross_entropy(logits.float(), y)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"loss is {loss.item()} at step {step}")
        scale = scaler.get_scale() if scaler.is_enabled() else 1.0
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        opt.zero_grad(set_to_none=True)
        skipped += int(scaler.is_enabled() and scaler.get_scale() < scale)
        losses.append(loss.item())
    synchronize(ctx.device)
    seconds = time.perf_counter() - t0
    bad = [n for n, p in model.named_parameters() if not bool(torch.isfinite(p).all())]
    if bad:
        raise FloatingPointError(f"non-finite parameters after training: {bad[:5]}")
    if skipped == steps:
        raise FloatingPointError("the GradScaler skipped every step (gradients never finite)")
    return {
        "loss_first": losses[0],
        "loss_last": losses[-1],
        "skipped_steps": skipped,
        "s_per_step": seconds / steps,
    }


def run_train(ctx: Context) -> None:
    """20 AMP steps of VMamba-T and Vim-S, bfloat16 and float16 (with a GradScaler)."""
    steps, batch, size = (2, 2, 64) if ctx.dry_run else (20, 32, 224)
    builders = {
        "vmamba-t": lambda: vmamba_t(ctx.dry_run, drop_path_rate=0.2),
        "vim-s": lambda: vim_s(ctx.dry_run, size, drop_path_rate=0.05),
    }
    for amp in ("bfloat16", "float16"):
        for name, build in builders.items():
            if out_of_time(ctx, 8, f"train {name} {amp}"):
                continue
            ctx.guarded(
                f"train {name}",
                lambda b=build, a=amp: train_steps(ctx, b(), a, steps, batch, size),
                amp=amp,
                steps=steps,
                batch=batch,
                size=size,
            )
