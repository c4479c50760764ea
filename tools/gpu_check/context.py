"""What a section of the GPU check runs with: its device, sizes, deadline and result file.

Each section runs in its own child process (see ``run.py``). The child gets a
:class:`Context`, adds one row per check or measurement, and the context rewrites the section's
result file after every row, so a section stopped at its time budget still reports what it did.
"""

from __future__ import annotations

import json
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .report import FAIL, PASS, SKIP, section_status


@dataclass
class Context:
    """A running section.

    Attributes:
        name: the section's name.
        dry_run: the CPU rehearsal: tiny shapes, few steps, Triton interpreted.
        device: ``'cuda'`` or ``'cpu'``.
        deadline: ``time.monotonic()`` value by which the section should be done; loops check
            :meth:`time_left` and stop early (recording why) instead of overrunning.
        result_file: where the section's result JSON is (re)written.
        repo: the repository root.
    """

    name: str
    dry_run: bool
    device: str
    deadline: float
    result_file: Path
    repo: Path
    rows: list[dict] = field(default_factory=list)
    note: str = ""
    failed: bool = False
    skipped: bool = False
    started: float = field(default_factory=time.monotonic)

    def time_left(self) -> float:
        return self.deadline - time.monotonic()

    def add(self, **row) -> dict:
        """Record one row (``status`` defaults to PASS) and flush the result file."""
        row.setdefault("status", PASS)
        self.rows.append(row)
        self.flush()
        return row

    def fail(self, note: str) -> None:
        self.failed = True
        self.note = f"{self.note}; {note}" if self.note else note
        self.flush()

    def skip(self, note: str) -> None:
        self.skipped = True
        self.note = f"{self.note}; {note}" if self.note else note
        self.flush()

    def status(self) -> str:
        return section_status(self.rows, self.failed, self.skipped)

    def flush(self) -> None:
        payload = {
            "name": self.name,
            "status": self.status(),
            "note": self.note,
            "rows": self.rows,
            "seconds": time.monotonic() - self.started,
        }
        tmp = self.result_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(payload, default=str))
        tmp.replace(self.result_file)

    def guarded(self, item: str, fn: Callable[[], dict | None], **fields) -> dict:
        """Run one check; an exception becomes a FAIL row (traceback printed to the log).

        ``fn`` returns the row's measured fields (or None); ``fields`` label the row.
        """
        print(f"[{self.name}] {item} ...", flush=True)
        try:
            measured = fn() or {}
        except Exception as exc:  # one failed item must not stop the section
            traceback.print_exc()
            return self.add(item=item, **fields, status=FAIL, error=f"{type(exc).__name__}: {exc}")
        return self.add(item=item, **fields, **measured)


def out_of_time(ctx: Context, reserve: float, what: str) -> bool:
    """True (and a SKIP row naming ``what``) when less than ``reserve`` seconds are left."""
    if ctx.time_left() >= reserve:
        return False
    if "budget spent" not in ctx.note:
        ctx.note = "; ".join(filter(None, (ctx.note, "budget spent, items skipped")))
    ctx.add(item=what, status=SKIP, error=f"section budget spent ({ctx.time_left():.0f}s left)")
    return True


def synchronize(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def time_calls(
    fn: Callable[[], object], device: str, reps: int, max_seconds: float, warmup: int = 1
) -> float:
    """Median seconds per ``fn()`` call over up to ``reps`` calls within ``max_seconds``.

    CUDA: timed with events around each call; CPU: ``perf_counter``. At least one call is timed.
    """
    import statistics

    import torch

    for _ in range(warmup):
        fn()
    synchronize(device)
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < reps and (not times or time.perf_counter() - start < max_seconds):
        if device == "cuda":
            t0, t1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            t0.record()
            fn()
            t1.record()
            t1.synchronize()
            times.append(t0.elapsed_time(t1) / 1000.0)
        else:
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    return statistics.median(times)
