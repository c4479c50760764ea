"""mmvmamba.analysis.allocator.keep_freed_memory: large blocks are reused, not re-faulted."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

# Allocate, touch and free a 64 MB tensor a few times, then count the minor page faults of three
# more. glibc's default serves each with a fresh mmap (~16k faults of 4 KB each); with freed
# memory kept, the blocks are reused (no faults).
_PROBE = textwrap.dedent(
    """
    import resource, sys, torch
    if sys.argv[1] == "keep":
        from mmvmamba.analysis.allocator import keep_freed_memory
        assert keep_freed_memory()
    n = 16 * 2**20
    for _ in range(3):
        torch.ones(n)  # allocate, touch, free
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(3):
        torch.ones(n)
    print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    """
)


def _faults(mode: str) -> int:
    res = subprocess.run(
        [sys.executable, "-c", _PROBE, mode], capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 0, res.stderr[-2000:]
    return int(res.stdout.split()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc settings")
def test_keep_freed_memory_reuses_large_blocks_without_page_faults():
    default, kept = _faults("default"), _faults("keep")
    assert default > 3 * 8000  # 64 MB in 4 KB pages, three times
    assert kept < 500
