"""Results of the GPU check: per-section outcome, tables (markdown, CSV, JSON) and the exit status.

Pure Python (no torch): the parent process of ``run.py`` imports it, and so does its test.

A section's result is a dict ``{"name", "status", "seconds", "budget_s", "note", "rows"}``;
``rows`` is a list of flat dicts (one measurement or one check each, every row may carry its own
``status``). ``status`` is ``PASS``, ``FAIL`` or ``SKIP``; any FAIL makes the exit status 1.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path

PASS, FAIL, SKIP = "PASS", "FAIL", "SKIP"
STATUSES = (PASS, FAIL, SKIP)

# the header fields printed first, in this order (others follow alphabetically)
HEADER_ORDER = (
    "device",
    "capability",
    "sm_count",
    "memory_gib",
    "driver",
    "cuda",
    "torch",
    "triton",
    "timm",
    "python",
    "mamba_ssm",
    "mode",
    "git_commit",
)
SUMMARY_COLUMNS = ("section", "status", "seconds", "budget_s", "note")


def section_status(rows: Sequence[dict], failed: bool = False, skipped: bool = False) -> str:
    """FAIL if ``failed`` or any row failed; SKIP if ``skipped`` and nothing ran; else PASS."""
    if failed or any(r.get("status") == FAIL for r in rows):
        return FAIL
    if skipped and not any(r.get("status") == PASS for r in rows):
        return SKIP
    return PASS


def exit_status(results: Sequence[dict]) -> int:
    """0 when no section failed, else 1 (a SKIP is not a failure)."""
    return 1 if any(r["status"] == FAIL for r in results) else 0


def _fmt(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        if value != value:  # NaN
            return "nan"
        magnitude = abs(value)
        if magnitude == 0 or 1e-3 <= magnitude < 1e5:
            return f"{value:.4g}"
        return f"{value:.3e}"
    return str(value).replace("|", "/").replace("\n", " ")


def _columns(rows: Sequence[dict]) -> list[str]:
    """Union of the rows' keys in first-seen order, ``status`` last."""
    cols: list[str] = []
    for row in rows:
        cols.extend(k for k in row if k not in cols)
    if "status" in cols:
        cols.remove("status")
        cols.append("status")
    return cols


def markdown_table(rows: Sequence[dict], columns: Sequence[str] | None = None) -> str:
    """A GitHub markdown table of ``rows`` (missing cells left empty)."""
    if not rows:
        return "(no rows)\n"
    cols = list(columns) if columns else _columns(rows)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_fmt(r.get(c)) for c in cols) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def summary_rows(results: Sequence[dict]) -> list[dict]:
    """One row per section: the table printed first (a FAIL line for each failed section)."""
    return [
        {
            "section": r["name"],
            "status": r["status"],
            "seconds": round(float(r.get("seconds", 0.0)), 1),
            "budget_s": r.get("budget_s"),
            "note": r.get("note", ""),
        }
        for r in results
    ]


def header_lines(header: dict) -> list[str]:
    keys = [k for k in HEADER_ORDER if k in header] + sorted(set(header) - set(HEADER_ORDER))
    return [f"- {k}: {_fmt(header[k])}" for k in keys]


def render_markdown(header: dict, results: Sequence[dict]) -> str:
    """The whole report: environment, the per-section summary, then each section's rows."""
    parts = ["# GPU check", "", *header_lines(header), ""]
    parts += ["## Summary", "", markdown_table(summary_rows(results), SUMMARY_COLUMNS)]
    for r in results:
        if r.get("rows"):
            parts += [f"## {r['name']}", ""]
            parts += [markdown_table(group) for group in row_groups(r["rows"])]
    return "\n".join(parts)


def row_groups(rows: Sequence[dict]) -> list[list[dict]]:
    """Rows split into tables by their fields (``status`` and ``error`` aside), in first-seen
    order, so a section that mixes kinds of rows prints one compact table per kind."""
    groups: dict[frozenset, list[dict]] = {}
    for row in rows:
        groups.setdefault(frozenset(row) - {"status", "error"}, []).append(row)
    return list(groups.values())


def render_csv(results: Sequence[dict]) -> str:
    """Every row of every section, flattened: a ``section`` column then the union of fields."""
    flat = [{"section": r["name"], **row} for r in results for row in r.get("rows", [])]
    flat += [
        {"section": r["name"], "item": "(section)", "status": r["status"], "note": r.get("note")}
        for r in results
    ]
    cols = _columns(flat)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(flat)
    return buf.getvalue()


def write_outputs(out_dir: Path, header: dict, results: Sequence[dict]) -> dict[str, Path]:
    """Write ``results.json``, ``results.md`` and ``results.csv`` into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "json": out_dir / "results.json",
        "md": out_dir / "results.md",
        "csv": out_dir / "results.csv",
    }
    payload = {"header": header, "exit_status": exit_status(results), "sections": list(results)}
    paths["json"].write_text(json.dumps(payload, indent=1, default=str) + "\n")
    paths["md"].write_text(render_markdown(header, results))
    paths["csv"].write_text(render_csv(results))
    return paths


def plot_throughput(rows: Sequence[dict], path: Path, title: str) -> bool:
    """Grouped bars of img/s per (size, batch, precision) cell, one bar per model.

    ``rows`` are the throughput section's rows (keys ``model``, ``size``, ``batch``,
    ``precision``, ``img_per_s``). Returns False (and writes nothing) when there is nothing to
    plot.
    """
    good = [r for r in rows if isinstance(r.get("img_per_s"), (int, float))]
    if not good:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cells = list(dict.fromkeys(f"{r['size']}px b{r['batch']} {r['precision']}" for r in good))
    models = list(dict.fromkeys(r["model"] for r in good))
    value = {(f"{r['size']}px b{r['batch']} {r['precision']}", r["model"]): r for r in good}
    width = 0.8 / len(models)
    fig, ax = plt.subplots(figsize=(1.8 * len(cells) + 2, 4))
    for i, model in enumerate(models):
        xs = [c + i * width for c in range(len(cells))]
        ys = [value[(cell, model)]["img_per_s"] if (cell, model) in value else 0 for cell in cells]
        ax.bar(xs, ys, width, label=model)
    ax.set_xticks([c + width * (len(models) - 1) / 2 for c in range(len(cells))], cells)
    ax.set_ylabel("images / s (forward)")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True
