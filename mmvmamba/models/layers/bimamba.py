"""Vim's bidirectional Mamba mixer ("bimamba v2").

One block of Vim (Zhu et al., "Vision Mamba: Efficient Visual Representation Learning with
Bidirectional State Space Model", ICML 2024; https://github.com/hustvl/Vim) mixes a token
sequence with two selective scans: one over the sequence and one over the reversed sequence.
The input/output projections and the gate are shared; the causal depthwise convolution, the
``x_proj``/``dt_proj`` projections, ``A`` and ``D`` are separate for the backward direction
(parameters suffixed ``_b``). Parameter names equal the official ones, so official weights load
with ``strict=True``.

Both directions run in ONE call of :func:`vmamba_ops.selective_scan` with two groups: the
forward and the flipped backward channels are concatenated to ``2E`` channels, ``A``/``D``/
``delta_bias`` are per channel anyway, and ``B``/``C`` carry one group per direction (channel
``c`` uses group ``c // E``).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

import vmamba_ops


def causal_depthwise_conv1d(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None
) -> torch.Tensor:
    """Causal depthwise 1-D convolution.

    ``out[b, e, t] = bias[e] + sum_k weight[e, 0, k] * x[b, e, t - K + 1 + k]`` with zeros for
    negative time indices.

    Args:
        x: ``(B, E, L)``.
        weight: ``(E, 1, K)`` (the layout of ``nn.Conv1d(E, E, K, groups=E).weight``).
        bias: ``(E,)`` or ``None``.

    Returns:
        ``(B, E, L)``.
    """
    kernel = weight.shape[-1]
    seq_len = x.shape[-1]
    return F.conv1d(x, weight, bias, padding=kernel - 1, groups=weight.shape[0])[..., :seq_len]


def _at_least_fp32(t: torch.Tensor) -> torch.Tensor:
    """Upcast half/bfloat16 to float32 (A, D and the delta bias always run in float32 at
    least, as upstream); float64 stays float64."""
    return t.to(torch.promote_types(t.dtype, torch.float32))


class BiMambaV2(nn.Module):
    """Bidirectional Mamba mixer of Vim (``bimamba_type="v2"``).

    Forward math, with ``xz = in_proj(h)`` split into ``x`` (first ``E`` channels) and the gate
    ``z`` (last ``E``)::

        y_f = ssm_f(silu(conv_f(x)))            * silu(z)
        y_b = ssm_b(silu(conv_b(flip(x))))      * silu(flip(z))
        out = out_proj((y_f + flip(y_b)) / 2)   # "/ 2" only when divide_out=True

    where ``flip`` reverses the sequence dimension and each ``ssm`` is a selective scan whose
    ``delta``, ``B`` and ``C`` come from that direction's ``x_proj``/``dt_proj``.

    Args:
        d_model: Token width ``C``.
        d_state: SSM state size ``N``.
        d_conv: Kernel size ``K`` of the causal depthwise convolutions.
        expand: ``E = expand * C`` inner channels.
        dt_rank: Rank ``R`` of the ``delta`` projection; ``"auto"`` means ``ceil(C / 16)``.
        dt_min, dt_max, dt_init_floor, dt_scale: Initialisation range of the forward ``delta``.
        divide_out: Average (True, all released Vim models) instead of sum the two directions.
        backend: Passed to the scan function (``'auto'``: :func:`vmamba_ops.selective_scan`
            picks by device, dtype and grad mode).

    Attributes:
        scan_fn: the selective-scan function, called with the signature of
            :func:`vmamba_ops.selective_scan` (the default). Analysis tools swap it
            (:mod:`mmvmamba.analysis.scan_hooks`).

    Shape:
        input ``(B, L, C)`` -> output ``(B, L, C)``.
    """

    def __init__(
        self,
        d_model: int,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        dt_rank: int | str = "auto",
        dt_min: float = 1e-3,
        dt_max: float = 0.1,
        dt_init_floor: float = 1e-4,
        dt_scale: float = 1.0,
        divide_out: bool = True,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        if dt_rank == "auto":
            dt_rank = math.ceil(d_model / 16)
        if not isinstance(dt_rank, int) or dt_rank < 1:
            raise ValueError(f"dt_rank must be a positive int or 'auto', got {dt_rank!r}")
        self.d_model = d_model
        self.d_state = d_state
        self.d_conv = d_conv
        self.d_inner = expand * d_model
        self.dt_rank = dt_rank
        self.divide_out = divide_out
        self.backend = backend
        self.scan_fn: Callable[..., torch.Tensor] = vmamba_ops.selective_scan
        inner = self.d_inner

        # Registration order reproduces the official state-dict order.
        self.A_log = nn.Parameter(self._s4d_real_log(inner, d_state))
        self.D = nn.Parameter(torch.ones(inner))
        self.A_b_log = nn.Parameter(self._s4d_real_log(inner, d_state))
        self.D_b = nn.Parameter(torch.ones(inner))
        for p in (self.A_log, self.D, self.A_b_log, self.D_b):
            p._no_weight_decay = True

        self.in_proj = nn.Linear(d_model, 2 * inner, bias=False)
        self.conv1d = nn.Conv1d(inner, inner, d_conv, groups=inner, padding=d_conv - 1)
        self.x_proj = nn.Linear(inner, dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(dt_rank, inner, bias=True)
        self.conv1d_b = nn.Conv1d(inner, inner, d_conv, groups=inner, padding=d_conv - 1)
        self.x_proj_b = nn.Linear(inner, dt_rank + 2 * d_state, bias=False)
        self.dt_proj_b = nn.Linear(dt_rank, inner, bias=True)
        self.out_proj = nn.Linear(inner, d_model, bias=False)

        # Forward delta: weight U(-s, s), bias = softplus^-1(dt), dt log-uniform in
        # [dt_min, dt_max]. The backward branch keeps PyTorch's default init (as upstream).
        std = dt_rank**-0.5 * dt_scale
        nn.init.uniform_(self.dt_proj.weight, -std, std)
        dt = torch.exp(
            torch.rand(inner) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)
        ).clamp(min=dt_init_floor)
        with torch.no_grad():
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))
        self.dt_proj.bias._no_reinit = True

    @staticmethod
    def _s4d_real_log(channels: int, d_state: int) -> torch.Tensor:
        """``log(n + 1)`` for ``n = 0..N-1`` repeated per channel: ``A = -[1, ..., N]``."""
        return torch.log(torch.arange(1, d_state + 1, dtype=torch.float32)).repeat(channels, 1)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """Mix ``hidden`` of shape ``(B, L, C)``; returns ``(B, L, C)``."""
        batch, seq_len, _ = hidden.shape
        inner, rank, n = self.d_inner, self.dt_rank, self.d_state
        xz = self.in_proj(hidden).transpose(1, 2)  # (B, 2E, L), x first, gate z second
        x, z = xz[:, :inner], xz[:, inner:]

        # Both directions side by side on 2E channels: [forward | backward on the flipped seq].
        x2 = torch.cat([x, x.flip(-1)], dim=1)
        z2 = torch.cat([z, z.flip(-1)], dim=1)
        conv_w = torch.cat([self.conv1d.weight, self.conv1d_b.weight], dim=0)
        conv_b = torch.cat([self.conv1d.bias, self.conv1d_b.bias], dim=0)
        u2 = F.silu(causal_depthwise_conv1d(x2, conv_w, conv_b))  # (B, 2E, L)

        # Per-direction projections as one batched matmul: (2, B*L, E) @ (2, E, R+2N).
        u_tok = u2.view(batch, 2, inner, seq_len).permute(1, 0, 3, 2).reshape(2, -1, inner)
        x_w = torch.stack([self.x_proj.weight, self.x_proj_b.weight])  # (2, R+2N, E)
        x_dbl = torch.bmm(u_tok, x_w.transpose(1, 2).to(u_tok.dtype))  # (2, B*L, R+2N)
        dt_low, b_ssm, c_ssm = x_dbl.split([rank, n, n], dim=-1)
        dt_w = torch.stack([self.dt_proj.weight, self.dt_proj_b.weight])  # (2, E, R)
        delta = torch.bmm(dt_low, dt_w.transpose(1, 2).to(dt_low.dtype))  # (2, B*L, E)
        delta = (
            delta.view(2, batch, seq_len, inner)
            .permute(1, 0, 3, 2)
            .reshape(batch, 2 * inner, seq_len)
        )
        # (2, B*L, N) -> (B, G=2, N, L)
        b_ssm = b_ssm.view(2, batch, seq_len, n).permute(1, 0, 3, 2).contiguous()
        c_ssm = c_ssm.view(2, batch, seq_len, n).permute(1, 0, 3, 2).contiguous()

        a = -torch.exp(_at_least_fp32(torch.cat([self.A_log, self.A_b_log], dim=0)))  # (2E, N)
        d = _at_least_fp32(torch.cat([self.D, self.D_b], dim=0))
        delta_bias = _at_least_fp32(torch.cat([self.dt_proj.bias, self.dt_proj_b.bias], dim=0))
        y2 = self.scan_fn(
            u2.contiguous(),
            delta.contiguous(),
            a,
            b_ssm,
            c_ssm,
            D=d,
            z=z2.contiguous(),
            delta_bias=delta_bias,
            delta_softplus=True,
            backend=self.backend,
        )  # (B, 2E, L)

        y = y2[:, :inner] + y2[:, inner:].flip(-1)
        if self.divide_out:
            y = y / 2
        return self.out_proj(y.transpose(1, 2))

    def extra_repr(self) -> str:
        return (
            f"d_model={self.d_model}, d_inner={self.d_inner}, d_state={self.d_state}, "
            f"dt_rank={self.dt_rank}, d_conv={self.d_conv}, divide_out={self.divide_out}"
        )
