"""Stochastic depth (drop a whole residual branch per sample)."""

from __future__ import annotations

from torch import Tensor, nn

__all__ = ["DropPath"]


class DropPath(nn.Module):
    """Drop the residual branch of each sample with probability ``drop_prob`` while training.

    Kept samples are scaled by ``1 / (1 - drop_prob)`` (as timm's ``DropPath``), so the
    expectation is unchanged; identity in eval mode or with ``drop_prob == 0``.

    Shapes:
        input (B, ...) -> output (B, ...).
    """

    def __init__(self, drop_prob: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= drop_prob < 1.0:
            raise ValueError(f"drop_prob must be in [0, 1), got {drop_prob}")
        self.drop_prob = float(drop_prob)

    def forward(self, x: Tensor) -> Tensor:
        if self.drop_prob == 0.0 or not self.training:
            return x
        keep = 1.0 - self.drop_prob
        mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob}"
