"""Block sizes of the Triton selective scan: the one table the launches, the compile report and
its CI test read.

A program of the scan owns ``BLOCK_D`` channels of one batch element and walks the sequence
in tiles of ``BLOCK_L`` positions with the state (BLOCK_D, BLOCK_N) in registers, so a tile
holds ``BLOCK_D * BLOCK_N * BLOCK_L`` float32 values per temporary (decay, input, scanned
state). The table keeps that at most 8 values per thread in the forward (no spills, at most
128 registers on sm_80 / sm_90) and gives one channel per program wherever N is small, so a
launch has ``batch * dim`` programs: VMamba-T's first stage (dim = 4 routes x 96 = 384) fills
an A100 / H100 (at least two programs per SM) from batch 1.

The row is chosen from the state size (``BLOCK_N`` is N rounded up to the bucket, extra lanes
are masked) and the sequence length (short sequences take shorter tiles).
"""

from __future__ import annotations

from dataclasses import dataclass

# sequences up to this length take the "short" row
SHORT_L = 256
N_BUCKETS = (1, 4, 16, 64, 256)
KINDS = ("fwd", "bwd")


@dataclass(frozen=True)
class ScanBlocks:
    """Compile-time blocks of one scan kernel launch."""

    block_d: int
    block_n: int
    block_l: int
    num_warps: int

    def constexprs(self) -> dict[str, int]:
        return {"BLOCK_D": self.block_d, "BLOCK_N": self.block_n, "BLOCK_L": self.block_l}


# (kind, N bucket, short sequence) -> (BLOCK_D, BLOCK_L, num_warps)
TABLE: dict[tuple[str, int, bool], tuple[int, int, int]] = {
    ("fwd", 1, True): (1, 256, 2),
    ("fwd", 1, False): (1, 1024, 4),
    ("fwd", 4, True): (1, 64, 2),
    ("fwd", 4, False): (1, 256, 4),
    ("fwd", 16, True): (1, 32, 4),
    ("fwd", 16, False): (1, 32, 4),
    ("fwd", 64, True): (1, 16, 4),
    ("fwd", 64, False): (1, 16, 4),
    ("fwd", 256, True): (1, 4, 4),
    ("fwd", 256, False): (1, 4, 4),
    # the backward keeps ~twice as many live tiles: half the tile. With N = 16 it takes 4
    # channels per program: the per-program dB / dC partial sums, (batch, dim / BLOCK_D, N, L)
    # float32 each, then take 4x less memory than with one channel (1x16x32 on 4 warps also
    # compiles without spills, with 4x larger partials)
    ("bwd", 1, True): (1, 256, 2),
    ("bwd", 1, False): (1, 512, 4),
    ("bwd", 4, True): (1, 32, 2),
    ("bwd", 4, False): (1, 128, 4),
    ("bwd", 16, True): (4, 16, 4),
    ("bwd", 16, False): (4, 16, 4),
    ("bwd", 64, True): (1, 8, 4),
    ("bwd", 64, False): (1, 8, 4),
    ("bwd", 256, True): (1, 2, 4),
    ("bwd", 256, False): (1, 2, 4),
}


def n_bucket(n: int) -> int:
    """The smallest bucket of :data:`N_BUCKETS` holding a state of size ``n``."""
    for b in N_BUCKETS:
        if n <= b:
            return b
    raise ValueError(
        f"selective_scan: the Triton kernels support d_state N <= {N_BUCKETS[-1]}, got N={n}; "
        "use backend='torch' or 'ref' for larger states"
    )


def scan_blocks(kind: str, n: int, length: int) -> ScanBlocks:
    """Blocks for a ``kind`` ('fwd' / 'bwd') launch with state size ``n`` and length ``length``."""
    if kind not in KINDS:
        raise ValueError(f"unknown scan kernel kind {kind!r}; expected one of {KINDS}")
    nb = n_bucket(n)
    block_d, block_l, warps = TABLE[(kind, nb, length <= SHORT_L)]
    return ScanBlocks(block_d, nb, block_l, warps)


def all_scan_blocks(kind: str) -> list[ScanBlocks]:
    """Every distinct configuration the table can give for ``kind`` (for reports and tests)."""
    out = []
    for (k, nb, _short), (block_d, block_l, warps) in TABLE.items():
        cfg = ScanBlocks(block_d, nb, block_l, warps)
        if k == kind and cfg not in out:
            out.append(cfg)
    return out
