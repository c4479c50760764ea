"""The attention-like matrix hidden in SS2D's selective scan, and its activation maps.

For one channel of one scan route (sequence index t = 0..L-1)::

    dt_t = softplus(delta_t + delta_bias)          (if delta_softplus)
    h_t  = exp(dt_t A) h_{t-1} + dt_t B_t u_t      h, A, B_t, C_t in R^N
    y_t  = C_t . h_t (+ D u_t)

unrolls to ``y_t = sum_{s <= t} M[t, s] u_s (+ D u_t)`` with the lower-triangular matrix::

    M[t, s] = sum_n C_t[n] exp(A[n] (cum_t - cum_s)) dt_s B_s[n],   cum_t = dt_1 + ... + dt_t

(``exp(A (cum_t - cum_s)) = prod_{r=s+1..t} exp(dt_r A)``). SS2D runs four such scans over
four orderings of the H x W grid (:func:`vmamba_ops.cross_scan`) and sums their outputs back
on the grid (:func:`vmamba_ops.cross_merge`), so the map of grid position q onto grid position p
is ``sum_k M_k[t_k(q), t_k(p)]`` where ``t_k(p)`` is p's index in route k. The skip term
``D u`` (a diagonal) is left out of the maps.

:func:`activation_maps` gives, for one query patch, the per-route maps, their merge and, for
comparison, a plain ``softmax(q . k / sqrt(d))`` map of the same features (the "QK^T" map of a
self-attention layer that had the scan's input as queries and keys).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "activation_maps",
    "plot_activation_maps",
    "route_positions",
    "scan_matrix",
    "scan_matrix_row",
    "synthetic_image",
]


def _dt(delta: Tensor, delta_bias: Tensor | None, softplus: bool) -> Tensor:
    dt = delta if delta_bias is None else delta + delta_bias[..., :, None]
    return F.softplus(dt) if softplus else dt


def scan_matrix(
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    delta_bias: Tensor | None = None,
    delta_softplus: bool = False,
) -> Tensor:
    """The full matrix ``M`` of one sequence batch element, every channel (small L only).

    Args:
        delta: (D, L).
        A: (D, N).
        B, C: (G, N, L) with D % G == 0 (channel d uses group d // (D // G)), or (N, L).
        delta_bias: optional (D,).
        delta_softplus: apply softplus to ``delta + delta_bias``.

    Returns:
        (D, L, L) float64, ``M[d, t, s]`` (zero above the diagonal): ``y[d] = M[d] @ u[d]``
        equals the selective scan's output without the ``D u`` skip.
    """
    d, length = delta.shape
    rows = [scan_matrix_row(delta, A, B, C, t, delta_bias, delta_softplus) for t in range(length)]
    return torch.stack(rows, dim=1)


def scan_matrix_row(
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    t: int | Tensor,
    delta_bias: Tensor | None = None,
    delta_softplus: bool = False,
) -> Tensor:
    """Row ``t`` of :func:`scan_matrix` for every channel: (D, L) float64, zero for s > t.

    ``t`` is an int (same row for all channels) or a (D,) long tensor (one row per channel,
    e.g. the query's index in each channel's route). Shapes as in :func:`scan_matrix`.
    """
    delta, A = delta.double(), A.double()
    d, length = delta.shape
    if B.dim() == 2:
        B, C = B.unsqueeze(0), C.unsqueeze(0)
    g = B.shape[0]
    if d % g:
        raise ValueError(f"channels D={d} must be divisible by the number of B/C groups G={g}")
    group = torch.arange(d) // (d // g)
    Bd, Cd = B.double()[group], C.double()[group]  # (D, N, L)
    dt = _dt(delta, None if delta_bias is None else delta_bias.double(), delta_softplus)
    cum = dt.cumsum(-1)  # (D, L)
    t_idx = torch.as_tensor(t, dtype=torch.long).expand(d)  # (D,)
    cum_t = cum.gather(1, t_idx[:, None])  # (D, 1)
    c_t = Cd.gather(2, t_idx[:, None, None].expand(d, Cd.shape[1], 1))  # (D, N, 1)
    causal = torch.arange(length)[None, :] <= t_idx[:, None]  # (D, L)
    gap = (cum_t - cum).clamp(min=0)  # >= 0 where s <= t; masked elsewhere
    decay = torch.exp(A[:, :, None] * gap[:, None, :])  # (D, N, L)
    row = (c_t * decay * Bd).sum(1) * dt  # (D, L)
    return row * causal


def route_positions(h: int, w: int, pattern: str = "cross") -> Tensor:
    """(K, L) long: ``pos[k, s]`` = row-major grid index (i * w + j) of route k's element s."""
    from vmamba_ops import cross_scan

    grid = torch.arange(h * w, dtype=torch.float64).view(1, 1, h, w)
    seq = cross_scan(grid, pattern=pattern, channel_first=True)  # (1, K, 1, L)
    return seq[0, :, 0].round().long()


def activation_maps(record: dict, query: tuple[int, int], pattern: str = "cross") -> dict:
    """Activation maps of one SS2D layer for a query patch.

    Args:
        record: one scan call as recorded by
            :func:`mmvmamba.analysis.scan_hooks.capture_scan_inputs`: ``u``, ``delta``
            (B, K*Di, L), ``A`` (K*Di, N), ``B``/``C`` (B, K, N, L), ``delta_bias`` (K*Di,),
            ``delta_softplus``, ``hw``; batch element 0 is used.
        query: (i, j) patch of the layer's h x w feature map.
        pattern: the layer's scan pattern (``SS2D.scan``): ``'cross'``, ``'unidi'``, ``'bidi'``.

    Returns:
        dict of numpy arrays on the (h, w) grid: ``routes`` (K, h, w) = mean over channels of
        ``|M_k[t_k(q), t_k(p)]|``; ``merged`` (h, w) = mean over channels of
        ``|sum_k M_k[t_k(q), t_k(p)]|`` (what reaches SS2D's output at q); ``qk`` (h, w) =
        ``softmax_p(u_q . u_p / sqrt(Di))`` of the scan input u in grid order;
        ``merged_signed`` (Di, h, w) = ``sum_k M_k[t_k(q), t_k(p)]`` per channel, so that
        ``sum_p merged_signed[c, p] * x[c, p]`` is channel c of the merged scan output at q
        without the ``D u`` skip (x = the scan input on the grid).
    """
    h, w = record["hw"]
    length = h * w
    i, j = query
    if not (0 <= i < h and 0 <= j < w):
        raise ValueError(f"query {query} is outside the layer's {h}x{w} feature map")
    u, delta = record["u"][0], record["delta"][0]  # (K*Di, L)
    if u.shape[-1] != length:
        raise ValueError(
            f"the recorded scan has L={u.shape[-1]}, not h*w={length}: only the 'cross', "
            "'unidi' and 'bidi' patterns scan the whole map as one sequence"
        )
    Bm, Cm = record["B"][0], record["C"][0]  # (K, N, L)
    k = Bm.shape[0] if Bm.dim() == 3 else 1
    di = u.shape[0] // k
    pos = route_positions(h, w, pattern)  # (K, L)
    if pos.shape[0] != k:
        raise ValueError(f"pattern {pattern!r} has {pos.shape[0]} routes, the scan has {k}")
    q = i * w + j
    t_of_q = (pos == q).float().argmax(dim=1)  # (K,) index of q in each route
    t_per_channel = t_of_q.repeat_interleave(di)  # (K*Di,)
    rows = scan_matrix_row(
        delta,
        record["A"],
        Bm,
        Cm,
        t_per_channel,
        record.get("delta_bias"),
        bool(record.get("delta_softplus", False)),
    ).view(k, di, length)  # (K, Di, L) in each route's sequence order
    on_grid = torch.zeros_like(rows)
    on_grid.scatter_(2, pos[:, None, :].expand(k, di, length), rows)  # route order -> grid
    routes = on_grid.abs().mean(1).view(k, h, w)
    merged_signed = on_grid.sum(0)  # (Di, L)
    merged = merged_signed.abs().mean(0).view(h, w)
    # plain attention map of the scan input (route 0 is the identity order for 'cross')
    feats = torch.zeros(di, length, dtype=torch.float64)
    feats[:, pos[0]] = u[:di].double()
    logits = feats[:, q] @ feats / math.sqrt(di)
    qk = torch.softmax(logits, dim=0).view(h, w)
    return dict(
        routes=routes.numpy(),
        merged=merged.numpy(),
        qk=qk.numpy(),
        merged_signed=merged_signed.view(di, h, w).numpy(),
        query=np.array(query),
        hw=np.array((h, w)),
    )


def synthetic_image(size: int, seed: int = 0) -> np.ndarray:
    """A (size, size, 3) uint8 test scene: a colour gradient with a disc, a square and a bar."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / max(size - 1, 1)
    img = np.stack([0.3 + 0.4 * yy, 0.4 + 0.3 * xx, 0.7 - 0.3 * yy], axis=-1)
    cy, cx, r = rng.uniform(0.3, 0.7), rng.uniform(0.25, 0.45), rng.uniform(0.1, 0.18)
    img[(yy - cy) ** 2 + (xx - cx) ** 2 < r**2] = (0.9, 0.2, 0.2)
    img[(abs(yy - 0.25) < 0.1) & (abs(xx - 0.72) < 0.1)] = (0.2, 0.8, 0.3)
    img[(abs(yy - 0.8) < 0.04) & (xx > 0.5)] = (0.95, 0.9, 0.2)
    return (img * 255).astype(np.uint8)


def plot_activation_maps(
    image: np.ndarray, maps: dict, path: str, title: str = "", alpha: float = 0.55
) -> str:
    """Draw the image, the K route maps, the merged map and the QK^T map, each upsampled over
    the image with the query patch outlined; writes ``path`` (PNG)."""
    import os

    from .plotting import get_pyplot

    plt = get_pyplot()
    size_h, size_w = image.shape[:2]
    h, w = (int(v) for v in maps["hw"])
    qi, qj = (int(v) for v in maps["query"])
    panels = [("input", None)]
    panels += [(f"route {k}", m) for k, m in enumerate(maps["routes"])]
    panels += [("merged (SS2D)", maps["merged"]), ("softmax(QK^T)", maps["qk"])]
    fig, axes = plt.subplots(1, len(panels), figsize=(2.6 * len(panels), 2.9), squeeze=False)
    for ax, (label, m) in zip(axes[0], panels):
        ax.imshow(image)
        if m is not None:
            t = torch.as_tensor(np.asarray(m, dtype=np.float64))[None, None]
            up = F.interpolate(t, size=(size_h, size_w), mode="bilinear", align_corners=False)
            up = up[0, 0].numpy()
            up = (up - up.min()) / max(up.max() - up.min(), 1e-300)
            ax.imshow(up, cmap="jet", alpha=alpha, vmin=0, vmax=1)
        ph, pw = size_h / h, size_w / w
        ax.add_patch(
            plt.Rectangle((qj * pw, qi * ph), pw, ph, fill=False, edgecolor="white", linewidth=1.5)
        )
        ax.set_title(label, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
