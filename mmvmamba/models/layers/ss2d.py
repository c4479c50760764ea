"""SS2D: the 2D selective-scan token mixer of VMamba (Liu et al., NeurIPS 2024).

Paper: "VMamba: Visual State Space Model", https://arxiv.org/abs/2401.10166.
Official code: https://github.com/MzeroMiko/VMamba (``classification/models/vmamba.py``). This is
our own implementation of the same math; parameter names and shapes follow the official
checkpoints so they load unchanged.

Data flow (channel-first throughout; Di = ``int(ssm_ratio * d_model)``, N = ``d_state``,
R = ``dt_rank``, K = 4 scan routes, L = H * W)::

    x (B, d_model, H, W)
      -> in_proj (1x1)                     (B, Di, H, W)     ['v0': (B, 2Di) -> x, z; z = act(z)]
      -> conv2d (3x3 depthwise) -> act     (B, Di, H, W)
      -> cross_scan                        (B, K, Di, L)     route k is a 1D sequence
      -> x_proj_weight[k] (Di -> R+2N)     dt (B, K, R, L), B/C (B, K, N, L) (one per route)
      -> dt_projs_weight[k] (R -> Di)      delta (B, K*Di, L)
      -> scan_fn(u, delta, A, B, C, D, delta_bias, softplus)          (B, K*Di, L)
      -> cross_merge (sum of the routes)   (B, Di, H, W)
      -> out_norm                          (B, Di, H, W)     ['v0': y = y * z]
      -> out_proj (1x1)                    (B, d_model, H, W)

``scan_fn`` is :func:`vmamba_ops.selective_scan` (an attribute, so analysis tools can swap it).

Forward types: ``'v05_noz'`` (the released v2 models, no gate) and ``'v0'`` (the first
release: gated by ``SiLU(z)``, d_state 16). The paper's ablations are options: the scan pattern,
the depthwise conv, the activation, the output norm and the initialisation of the SSM parameters.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vmamba_ops import cross_merge, cross_scan, selective_scan

from .linear import Linear2d, grouped_linear
from .norm import LayerNorm2d

__all__ = ["SS2D"]

FORWARD_TYPES = ("v05_noz", "v0")
SCAN_PATTERNS = ("cross", "unidi", "bidi", "cascade")
ACTIVATIONS = {"silu": nn.SiLU, "gelu": nn.GELU, "relu": nn.ReLU, "sigmoid": nn.Sigmoid}
OUT_NORMS = ("ln", "none", "dwconv3", "cnorm", "softmax", "sigmoid")
# our names, then the official ones ('v0' = Mamba init, 'v1' = random, 'v2' = zero)
INITS = {
    "mamba": "mamba",
    "v0": "mamba",
    "random": "random",
    "v1": "random",
    "zero": "zero",
    "v2": "zero",
}
K_ROUTES = 4


class _SpatialSoftmax(nn.Module):
    """Softmax over the H*W positions of each channel: (B, C, H, W) -> (B, C, H, W)."""

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        return x.reshape(b, c, h * w).softmax(dim=-1).view(b, c, h, w)


def _build_out_norm(kind: str, channels: int) -> nn.Module:
    """The norm applied to the merged scan output (channel-first).

    Module indices mirror the official ``Sequential`` so ablation checkpoints load:
    ``cnorm`` -> ``out_norm.0`` (LayerNorm) + ``out_norm.2`` (depthwise 3x3),
    ``dwconv3`` -> ``out_norm.1`` (depthwise 3x3).
    """

    def dwconv3() -> nn.Conv2d:
        return nn.Conv2d(channels, channels, 3, padding=1, groups=channels, bias=False)

    if kind == "ln":
        return LayerNorm2d(channels)
    if kind == "none":
        return nn.Identity()
    if kind == "dwconv3":
        return nn.Sequential(nn.Identity(), dwconv3(), nn.Identity())
    if kind == "cnorm":
        return nn.Sequential(LayerNorm2d(channels), nn.Identity(), dwconv3(), nn.Identity())
    if kind == "softmax":
        return _SpatialSoftmax()
    if kind == "sigmoid":
        return nn.Sigmoid()
    raise ValueError(f"unknown out_norm {kind!r}; expected one of {OUT_NORMS}")


def _choice(name: str, value, allowed) -> None:
    if value not in allowed:
        raise ValueError(f"SS2D: unknown {name} {value!r}; expected one of {tuple(allowed)}")


class SS2D(nn.Module):
    """2D selective scan (SS2D) on channel-first maps.

    Args:
        d_model: channels of the input and output.
        d_state: SSM state size N (1 for the v2 models, 16 for v0).
        ssm_ratio: expansion, Di = int(ssm_ratio * d_model).
        dt_rank: rank R of the delta projection; ``'auto'`` = ceil(d_model / 16) (from the
            model width, not Di, as the official code).
        act: activation after the depthwise conv (and of the gate for ``'v0'``): ``'silu'``,
            ``'gelu'``, ``'relu'`` or ``'sigmoid'``.
        d_conv: depthwise conv kernel size (odd); ``d_conv <= 1`` removes the conv (ablation).
        conv_bias: bias of the depthwise conv (False for v2 models, True for v0).
        forward_type: ``'v05_noz'`` (no gate) or ``'v0'`` (in_proj gives x and z, y * act(z)).
        scan: route pattern: ``'cross'`` (4 directions, the paper's model), ``'unidi'``
            (row-major x4), ``'bidi'`` (row-major, row-major, reversed x2) or ``'cascade'``
            (rows then columns, official ``v052dc``; see :meth:`_cascade_scan`).
        out_norm: ``'ln'`` (LayerNorm, default), ``'none'``, ``'dwconv3'``, ``'cnorm'``
            (LayerNorm + depthwise 3x3), ``'softmax'`` (over positions) or ``'sigmoid'``.
        init: SSM parameter init: ``'mamba'`` (Mamba init, default; official ``'v0'``),
            ``'random'`` (official ``'v1'``) or ``'zero'`` (official ``'v2'``).
        dropout: dropout after out_proj.
        dt_min, dt_max, dt_init_floor: range of the initial softplus(dt_bias) (Mamba init).
        backend: selective-scan backend passed to the scan function.

    Attributes:
        scan_fn: the selective-scan function, called with the signature of
            :func:`vmamba_ops.selective_scan` (the default). Analysis tools swap it
            (:mod:`mmvmamba.analysis.scan_hooks`).

    Shapes:
        input (B, d_model, H, W) float -> output (B, d_model, H, W), same dtype.

    Parameters (official names): ``in_proj.weight`` (Di or 2Di, d_model), ``conv2d.weight``
    (Di, 1, k, k) [+ ``conv2d.bias``], ``x_proj_weight`` (K, R+2N, Di), ``dt_projs_weight``
    (K, Di, R), ``dt_projs_bias`` (K, Di), ``A_logs`` (K*Di, N), ``Ds`` (K*Di,), ``out_norm.*``,
    ``out_proj.weight`` (d_model, Di).
    """

    def __init__(
        self,
        d_model: int,
        d_state: int = 1,
        ssm_ratio: float = 2.0,
        dt_rank: int | str = "auto",
        act: str = "silu",
        d_conv: int = 3,
        conv_bias: bool = False,
        forward_type: str = "v05_noz",
        scan: str = "cross",
        out_norm: str = "ln",
        init: str = "mamba",
        dropout: float = 0.0,
        dt_min: float = 0.001,
        dt_max: float = 0.1,
        dt_init_floor: float = 1e-4,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        if not isinstance(d_model, int) or d_model < 1:
            raise ValueError(f"SS2D: d_model must be a positive int, got {d_model!r}")
        if not isinstance(d_state, int) or d_state < 1:
            raise ValueError(f"SS2D: d_state must be a positive int, got {d_state!r}")
        d_inner = int(ssm_ratio * d_model)
        if d_inner < 1:
            raise ValueError(f"SS2D: ssm_ratio={ssm_ratio} gives no inner channels")
        if dt_rank == "auto":
            dt_rank = math.ceil(d_model / 16)
        if not isinstance(dt_rank, int) or dt_rank < 1:
            raise ValueError(f"SS2D: dt_rank must be 'auto' or a positive int, got {dt_rank!r}")
        if d_conv > 1 and d_conv % 2 == 0:
            raise ValueError(f"SS2D: d_conv must be odd (or <= 1 for no conv), got {d_conv}")
        _choice("forward_type", forward_type, FORWARD_TYPES)
        _choice("scan", scan, SCAN_PATTERNS)
        _choice("act", act, ACTIVATIONS)
        _choice("out_norm", out_norm, OUT_NORMS)
        _choice("init", init, INITS)

        self.d_model, self.d_inner, self.d_state, self.dt_rank = d_model, d_inner, d_state, dt_rank
        self.forward_type, self.scan, self.backend = forward_type, scan, backend
        self.scan_fn: Callable[..., Tensor] = selective_scan
        self.gated = forward_type == "v0"
        k, di, n, r = K_ROUTES, d_inner, d_state, dt_rank

        self.out_norm = _build_out_norm(out_norm, di)
        self.in_proj = Linear2d(d_model, 2 * di if self.gated else di, bias=False)
        self.act = ACTIVATIONS[act]()
        self.conv2d = (
            nn.Conv2d(di, di, d_conv, padding=(d_conv - 1) // 2, groups=di, bias=conv_bias)
            if d_conv > 1
            else None
        )
        self.x_proj_weight = nn.Parameter(torch.empty(k, r + 2 * n, di))
        self.dt_projs_weight = nn.Parameter(torch.empty(k, di, r))
        self.dt_projs_bias = nn.Parameter(torch.empty(k, di))
        self.A_logs = nn.Parameter(torch.empty(k * di, n))
        self.Ds = nn.Parameter(torch.empty(k * di))
        # mmpretrain/mmdet optimisers may read this to exempt them from weight decay
        self.A_logs._no_weight_decay = True
        self.Ds._no_weight_decay = True
        self.out_proj = Linear2d(di, d_model, bias=False)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

        self.init = INITS[init]
        self._dt_range = (dt_min, dt_max, dt_init_floor)
        self.reset_ssm_parameters()

    @torch.no_grad()
    def reset_ssm_parameters(self) -> None:
        """Initialise ``x_proj_weight``, ``dt_projs_*``, ``A_logs`` and ``Ds`` per ``self.init``.

        ``'mamba'``: x_proj ~ U(+-Di^-0.5) (nn.Linear default); dt weight ~ U(+-R^-0.5);
        dt bias = softplus^-1(dt) with dt log-uniform in [dt_min, dt_max] (floored); A_logs =
        log(1..N) (so A = -[1..N]); D = 1. ``'random'``: D = 1, A_logs ~ N(0, 1), dt weight and
        bias ~ 0.1 N(0, 1). ``'zero'``: D = 1, A_logs = 0, dt weight and bias ~ 0.1 U(0, 1).
        """
        di, n, r = self.d_inner, self.d_state, self.dt_rank
        nn.init.uniform_(self.x_proj_weight, -(di**-0.5), di**-0.5)
        self.Ds.fill_(1.0)
        if self.init == "mamba":
            dt_min, dt_max, floor = self._dt_range
            nn.init.uniform_(self.dt_projs_weight, -(r**-0.5), r**-0.5)
            dt = torch.exp(
                torch.rand_like(self.dt_projs_bias) * (math.log(dt_max) - math.log(dt_min))
                + math.log(dt_min)
            ).clamp(min=floor)
            self.dt_projs_bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # inverse softplus
            a = torch.arange(1, n + 1, dtype=torch.float32, device=self.A_logs.device)
            self.A_logs.copy_(torch.log(a).expand_as(self.A_logs))
        elif self.init == "random":
            self.A_logs.normal_()
            self.dt_projs_weight.normal_().mul_(0.1)
            self.dt_projs_bias.normal_().mul_(0.1)
        else:  # zero
            self.A_logs.zero_()
            self.dt_projs_weight.uniform_().mul_(0.1)
            self.dt_projs_bias.uniform_().mul_(0.1)

    def forward(self, x: Tensor) -> Tensor:
        """(B, d_model, H, W) -> (B, d_model, H, W), same dtype (data flow: module docstring)."""
        if x.dim() != 4 or x.shape[1] != self.d_model:
            raise ValueError(
                f"SS2D expects a (B, {self.d_model}, H, W) tensor, got shape {tuple(x.shape)}"
            )
        x = self.in_proj(x)
        if self.gated:
            x, z = x.chunk(2, dim=1)
        if self.conv2d is not None:
            x = self.conv2d(x)
        x = self.act(x)
        y = self.scan_2d(x)
        y = self.out_norm(y).to(x.dtype)
        if self.gated:
            y = y * self.act(z)
        return self.dropout(self.out_proj(y))

    def scan_2d(self, x: Tensor) -> Tensor:
        """The 2D selective scan: (B, Di, H, W) -> (B, Di, H, W) in the compute dtype.

        Cross-scan the map into K = 4 route sequences, project and selective-scan each route
        with its own parameters, and merge the routes back into a map (the sum over routes);
        ``scan='cascade'`` scans rows then columns instead (:meth:`_cascade_scan`).
        """
        if self.scan == "cascade":
            return self._cascade_scan(x)
        b, di, h, w = x.shape
        xs = cross_scan(x, pattern=self.scan, channel_first=True)  # (B, K, Di, H*W)
        ys = self._selective_scan(xs, slice(0, K_ROUTES))
        return cross_merge(ys.view(b, K_ROUTES, di, h, w), pattern=self.scan, channel_first=True)

    # ---------------------------------------------------------------------------------------
    def _ssm_params(self, routes: slice, dtype: torch.dtype) -> tuple[Tensor, Tensor, Tensor]:
        """A (k*Di, N), D (k*Di,), delta_bias (k*Di,) of the routes in ``routes``, in ``dtype``."""
        di, n = self.d_inner, self.d_state
        A = -torch.exp(self.A_logs.view(K_ROUTES, di, n)[routes].reshape(-1, n).to(dtype))
        D = self.Ds.view(K_ROUTES, di)[routes].reshape(-1).to(dtype)
        bias = self.dt_projs_bias[routes].reshape(-1).to(dtype)
        return A, D, bias

    def _selective_scan(self, xs: Tensor, routes: slice) -> Tensor:
        """Project and scan ``G`` independent sequence groups.

        Args:
            xs: (Bs, G, Di, Ls) sequences; group g uses the parameters of route
                ``routes.start + g``.

        Returns:
            (Bs, G, Di, Ls) scan outputs in the compute dtype (float32, float64 for float64 input).
        """
        bs, g, di, length = xs.shape
        n, r = self.d_state, self.dt_rank
        x_proj = self.x_proj_weight[routes].to(xs.dtype)  # (G, R+2N, Di)
        dt_proj = self.dt_projs_weight[routes].to(xs.dtype)  # (G, Di, R)
        x_dbl = grouped_linear(xs, x_proj)  # one projection per route: (Bs, G, R+2N, Ls)
        dts, Bs, Cs = x_dbl.split([r, n, n], dim=2)
        # the scan runs in float32 at least (fp16/bf16 inputs are exact in fp32), as the
        # official 'oflex' kernel does; the output is merged and normed in that precision
        ct = torch.promote_types(xs.dtype, torch.float32)
        A, D, delta_bias = self._ssm_params(routes, ct)
        # delta = dt_proj[g] @ dts[g] (R -> Di per route), handed over in this low-rank form:
        # the scan op decides whether to form it inside its kernel
        ys = self.scan_fn(
            xs.reshape(bs, g * di, length).to(ct),
            dts.to(ct),
            A,
            Bs.to(ct).contiguous(),
            Cs.to(ct).contiguous(),
            D=D,
            delta_bias=delta_bias,
            delta_softplus=True,
            backend=self.backend,
            delta_proj=dt_proj.reshape(g * di, r).to(ct),
        )
        return ys.view(bs, g, di, length)

    def _cascade_scan(self, x: Tensor) -> Tensor:
        """Cascade scan (official ``v052dc``): (B, Di, H, W) -> (B, Di, H, W).

        x is layer-normed (no affine); every row is scanned left->right with route 0's
        parameters and, reversed, with route 1's; the two outputs are summed *as they come out
        of the scan* (the reversed one is not flipped back, exactly as the official code does).
        The result is layer-normed again and every column is scanned the same way with routes
        2 and 3 (top->bottom and reversed).
        """
        b, di, h, w = x.shape

        def norm(t: Tensor) -> Tensor:  # LayerNorm over channels, no affine
            return F.layer_norm(t.permute(0, 2, 3, 1), (di,)).permute(0, 3, 1, 2)

        # rows: (B, H, Di, W) -> B*H sequences of length W
        rows = norm(x).permute(0, 2, 1, 3).reshape(b * h, di, w)
        ys = self._selective_scan(torch.stack([rows, rows.flip(-1)], dim=1), slice(0, 2))
        y_row = ys.sum(dim=1).view(b, h, di, w).permute(0, 2, 1, 3)  # (B, Di, H, W)
        # columns: (B, W, Di, H) -> B*W sequences of length H
        cols = norm(y_row).permute(0, 3, 1, 2).reshape(b * w, di, h)
        ys = self._selective_scan(torch.stack([cols, cols.flip(-1)], dim=1), slice(2, 4))
        return ys.sum(dim=1).view(b, w, di, h).permute(0, 2, 3, 1)

    def extra_repr(self) -> str:
        return (
            f"d_model={self.d_model}, d_inner={self.d_inner}, d_state={self.d_state}, "
            f"dt_rank={self.dt_rank}, forward_type={self.forward_type!r}, scan={self.scan!r}, "
            f"init={self.init!r}"
        )
