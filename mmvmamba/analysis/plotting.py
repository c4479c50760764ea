"""Tables, CSV files and matplotlib figures shared by the analysis tools.

Every tool reports a list of row dicts (one per measurement): :func:`format_table` prints them,
:func:`write_csv` saves them and the ``plot_*`` helpers draw them with the non-interactive Agg
backend (no display needed, safe on servers and in tests).
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

__all__ = [
    "default_out_dir",
    "format_table",
    "get_pyplot",
    "plot_lines",
    "write_csv",
]


def default_out_dir(tool: str) -> str:
    """``work_dirs/analysis/<tool>``: where a tool writes when ``--out-dir`` is not given."""
    return os.path.join("work_dirs", "analysis", tool)


def get_pyplot():
    """``matplotlib.pyplot`` on the Agg backend (files only; never opens a window)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        if value != 0 and (abs(value) >= 1e6 or abs(value) < 1e-3):
            return f"{value:.4g}"
        return f"{value:.4f}".rstrip("0").rstrip(".") if abs(value) < 100 else f"{value:.1f}"
    return str(value)


def format_table(rows: Sequence[dict], columns: Sequence[str] | None = None) -> str:
    """A plain-text table (one line per row dict) with aligned columns.

    Args:
        rows: the records; missing keys print as ``-``.
        columns: column order; default: the keys of the rows in first-seen order.
    """
    if columns is None:
        columns = _columns(rows)
    cells = [[str(c) for c in columns]]
    cells += [[_fmt(row.get(c, "-")) for c in columns] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    lines = ["  ".join(cell.rjust(w) for cell, w in zip(line, widths)) for line in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _columns(rows: Iterable[dict]) -> list[str]:
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    return columns


def write_csv(rows: Sequence[dict], path: str, columns: Sequence[str] | None = None) -> str:
    """Write ``rows`` to ``path`` (directories created) with a header line; returns the path."""
    if columns is None:
        columns = _columns(rows)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({c: row.get(c, "") for c in columns})
    return path


def plot_lines(
    rows: Sequence[dict],
    x: str,
    ys: Sequence[str],
    group: str,
    path: str,
    title: str = "",
    logy: Sequence[bool] | None = None,
    ylabels: Sequence[str] | None = None,
    reference: dict[str, np.ndarray] | None = None,
) -> str:
    """One subplot per ``ys`` column: ``y`` against ``x``, one line per value of ``group``.

    Rows whose ``y`` is missing or NaN are skipped. ``reference`` optionally maps a label to
    ``(xs, ys_0, ys_1, ...)`` arrays drawn dashed in every subplot (e.g. an ideal scaling law).
    """
    plt = get_pyplot()
    fig, axes = plt.subplots(1, len(ys), figsize=(5.2 * len(ys), 4.2), squeeze=False)
    groups = list(dict.fromkeys(row[group] for row in rows))
    for j, (ax, ykey) in enumerate(zip(axes[0], ys)):
        for name in groups:
            pts = [
                (row[x], row[ykey])
                for row in rows
                if row[group] == name and _is_number(row.get(ykey)) and _is_number(row.get(x))
            ]
            if logy and logy[j]:
                pts = [p for p in pts if p[1] > 0]
            if pts:
                pts.sort()
                ax.plot(*zip(*pts), marker="o", label=str(name))
        for label, arrays in (reference or {}).items():
            ax.plot(arrays[0], arrays[j + 1], "k--", linewidth=1, label=label)
        ax.set_xlabel(x)
        ax.set_ylabel(ylabels[j] if ylabels else ykey)
        if logy and logy[j]:
            ax.set_yscale("log")
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not (isinstance(v, float) and math.isnan(v))
