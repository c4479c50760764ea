"""Section ``throughput``: VMamba-T against timm's Swin-T, side by side in one process.

For each cell (224 batch 128 and 768 batch 16; float32 and bfloat16 autocast) both models run
forward passes (``no_grad``, eval) in alternating timed blocks (A B, then B A, ...), so clock
and thermal drift fall on both alike; the reported rate is the median block's images/s.
"""

from __future__ import annotations

import statistics
import time
import traceback

import torch

from .context import Context, out_of_time, synchronize
from .models import swin_t, vmamba_t
from .report import FAIL

FULL_CELLS = ((224, 128), (768, 16))
DRY_CELLS = ((64, 2), (96, 1))
PRECISIONS = ("fp32", "amp-bf16")


def _block_seconds(fn, iters: int, device: str) -> float:
    synchronize(device)
    t0 = time.perf_counter()
    for _ in range(iters):
        fn()
    synchronize(device)
    return time.perf_counter() - t0


def side_by_side(
    models: dict, x: torch.Tensor, amp: bool, device: str, rounds: int, block_s: float
) -> dict:
    """Images/s of each model (name -> module) on ``x``, timed in alternating blocks."""
    batch = x.shape[0]

    def forward(model):
        def call():
            with torch.no_grad(), torch.autocast(device, dtype=torch.bfloat16, enabled=amp):
                model(x)

        return call

    calls = {name: forward(m) for name, m in models.items()}
    iters = {}
    for name, call in calls.items():
        call()  # first call: allocations, cuDNN algorithm search, kernel loading
        per_call = _block_seconds(call, 1, device)
        iters[name] = max(1, int(block_s / max(per_call, 1e-6)))
    rates: dict[str, list[float]] = {name: [] for name in calls}
    order = list(calls)
    for r in range(rounds):
        for name in order if r % 2 == 0 else order[::-1]:
            seconds = _block_seconds(calls[name], iters[name], device)
            rates[name].append(batch * iters[name] / seconds)
    return {name: statistics.median(v) for name, v in rates.items()}


def run(ctx: Context) -> None:
    cells = DRY_CELLS if ctx.dry_run else FULL_CELLS
    rounds, block_s = (1, 0.0) if ctx.dry_run else (3, 0.8)
    vmamba = vmamba_t(ctx.dry_run).to(ctx.device).eval()
    for size, batch in cells:
        swin = None
        for precision in PRECISIONS:
            cell = f"{size}px b{batch} {precision}"
            if out_of_time(ctx, 15, f"throughput {cell}"):
                continue
            if swin is None:
                swin = swin_t(size).to(ctx.device).eval()
            x = torch.randn(batch, 3, size, size, device=ctx.device)
            try:
                rates = side_by_side(
                    {"vmamba-t": vmamba, "swin-t": swin},
                    x,
                    precision != "fp32",
                    ctx.device,
                    rounds,
                    block_s,
                )
            except Exception as exc:  # one cell (e.g. out of memory) must not stop the others
                traceback.print_exc()
                error = f"{type(exc).__name__}: {exc}"
                ctx.add(item=f"throughput {cell}", status=FAIL, error=error)
                continue
            for name, rate in rates.items():
                ctx.add(
                    item="throughput",
                    model=name,
                    size=size,
                    batch=batch,
                    precision=precision,
                    img_per_s=rate,
                    ms_per_batch=1e3 * batch / rate,
                    vs_swin=rate / rates["swin-t"],
                )
        del swin
        if ctx.device == "cuda":
            torch.cuda.empty_cache()
