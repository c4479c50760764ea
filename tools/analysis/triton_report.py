"""Compile every Triton kernel at the launches the models make, for GPUs this machine lacks.

For each model (VMamba v2 T/S/B, v0 T/S/B, Vim T/S/B), stage and input (batch 1 at 224;
batch 2 at 1344x800, the Mask R-CNN training shape, VMamba only), the selective-scan forward
and backward and the cross-scan / cross-merge launches are built by the same functions that
launch them (``launch_for_shape``: same grid, blocks and specialisation) on shape-only
tensors, and compiled ahead of time for sm_80 (A100) and sm_90 (H100) with the ptxas inside
the triton wheel, and for AMD gfx942 where triton's HIP backend is present. Besides the model
launches it compiles, at the blocks the models use, every combination of D / z / delta_bias,
and every row of the block table with every option on (the largest code), in fp32, bf16 and
fp16.

    python tools/analysis/triton_report.py                    # table + CSV + PNG
    python tools/analysis/triton_report.py --targets sm_80 --jobs 2

Prints one line per (model, kernel, target) (registers, spill bytes, shared memory, resident
programs per SM, programs launched per stage) and one per block configuration; writes
``triton_report.csv`` (one row per compiled launch), ``triton_report.png`` and exits with 1 if
any launch spills or needs more shared memory than its target allows.
"""

from __future__ import annotations

import argparse
import itertools
import multiprocessing
import os
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass

import torch
from tqdm import tqdm

from vmamba_ops.cross_scan import triton as cross_tri
from vmamba_ops.selective_scan import triton as scan_tri
from vmamba_ops.selective_scan import triton_configs
from vmamba_ops.triton_aot import (
    SHARED_LIMIT,
    TARGETS,
    KernelStats,
    Launch,
    compile_key,
    toolchain_missing,
    try_compile,
)

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
# input label -> (batch, H, W)
INPUTS = {"1x224": (1, 224, 224), "2x1344x800": (2, 800, 1344)}
PATTERNS = ("cross", "unidi", "bidi", "cascade")
K_ROUTES = 4


@dataclass(frozen=True)
class Site:
    """One launch of the report: where it comes from and the launch itself."""

    section: str  # 'model' | 'options' | 'table'
    model: str
    stage: int
    inp: str
    kernel: str
    dtype: str
    options: str
    launch: Launch


def _ceil_half(x: int, times: int) -> int:
    for _ in range(times):
        x = -(-x // 2)
    return x


def vmamba_stages(arch: dict, h: int, w: int) -> list[tuple[int, int, int, int]]:
    """(scan dim K * Di, H_i, W_i, SS2D width Di) per stage of a VMamba arch (L = H_i * W_i)."""
    depths = arch["depths"]
    dims = arch["dims"]
    dims = [dims * 2**i for i in range(len(depths))] if isinstance(dims, int) else list(dims)
    if arch["patch_embed"] == "v2":  # two stride-2 3x3 convs (padding 1)
        h1, w1 = _ceil_half(h, 2), _ceil_half(w, 2)
    else:  # one 4x4 stride-4 patch conv
        h1, w1 = h // 4, w // 4
    out = []
    for i, d in enumerate(dims):
        di = int(arch["ssm_ratio"] * d)
        out.append((K_ROUTES * di, _ceil_half(h1, i), _ceil_half(w1, i), di))
    return out


def model_zoo() -> dict[str, dict]:
    """name -> dict(kind='vmamba'|'vim', arch=...) read from the backbones' own arch zoos."""
    from mmvmamba.models.backbones.vim import Vim
    from mmvmamba.models.backbones.vmamba import VMamba

    zoo = {}
    for name in ("tiny", "small", "base", "v0-tiny", "v0-small", "v0-base"):
        zoo[f"vmamba-{name}"] = dict(
            kind="vmamba", arch={**VMamba.arch_defaults, **VMamba.arch_zoo[name]}
        )
    for name in ("tiny", "small", "base"):
        zoo[f"vim-{name}"] = dict(kind="vim", arch={**Vim.arch_defaults, **Vim.arch_zoo[name]})
    return zoo


def model_sites(zoo: dict[str, dict], dtypes: list[str]) -> list[Site]:
    """The launches each model makes per stage and input (the models' own options)."""
    sites = []
    for (model, spec), inp, dt in itertools.product(zoo.items(), INPUTS, dtypes):
        batch, h, w = INPUTS[inp]
        arch, dtype = spec["arch"], DTYPES[dt]
        if spec["kind"] == "vmamba":
            # SS2D: D, delta_bias, softplus, no z (v0 gates after the out-norm); G = K routes
            stages = vmamba_stages(arch, h, w)
            n, groups, has_z = arch["d_state"], K_ROUTES, False
        elif inp == "1x224":  # Vim: 2 directions side by side, z gated inside the scan
            stride = arch.get("stride") or arch["patch_size"]
            gh, gw = ((s - arch["patch_size"]) // stride + 1 for s in (h, w))
            e = arch["expand"] * arch["embed_dims"]
            stages = [(2 * e, 1, gh * gw + 1, None)]  # the cls token joins the sequence
            n, groups, has_z = arch["d_state"], 2, True
        else:  # Vim is not a detection backbone here
            continue
        for stage, (dim, hh, ww, di) in enumerate(stages, 1):
            length = hh * ww
            for kind in triton_configs.KINDS:
                launch = scan_tri.launch_for_shape(
                    kind, batch, dim, length, n, groups, dtype, has_z=has_z
                )
                sites.append(Site("model", model, stage, inp, f"scan_{kind}", dt, "model", launch))
            if di is None:
                continue
            for merge in (False, True):
                launch = cross_tri.launch_for_shape(batch, di, hh, ww, dtype, arch["scan"], merge)
                kernel = "cross_merge" if merge else "cross_scan"
                sites.append(Site("model", model, stage, inp, kernel, dt, arch["scan"], launch))
    return sites


def _blocks_of(launch: Launch) -> triton_configs.ScanBlocks:
    c = launch.constexprs
    return triton_configs.ScanBlocks(c["BLOCK_D"], c["BLOCK_N"], c["BLOCK_L"], launch.num_warps)


def option_sites(model: list[Site], dtypes: list[str]) -> list[Site]:
    """Every D / z / delta_bias combination at the blocks the models use, every block-table row
    with every option on, and every cross-scan pattern in both layouts."""
    sites = []
    used = {(s.kernel, _blocks_of(s.launch)) for s in model if s.kernel.startswith("scan")}
    for (kernel, blocks), dt in itertools.product(sorted(used, key=str), dtypes):
        for has_d, has_z, has_bias in itertools.product((False, True), repeat=3):
            opts = f"D={int(has_d)} z={int(has_z)} bias={int(has_bias)}"
            launch = scan_tri.launch_for_shape(
                kernel[5:], 2, 64, 1000, blocks.block_n, 2, DTYPES[dt], has_d=has_d,
                has_z=has_z, has_bias=has_bias, blocks=blocks,
            )  # fmt: skip
            sites.append(Site("options", "-", 0, "-", kernel, dt, opts, launch))
    for kind, dt in itertools.product(triton_configs.KINDS, dtypes):
        for blocks in triton_configs.all_scan_blocks(kind):
            launch = scan_tri.launch_for_shape(
                kind, 2, 64, 1000, blocks.block_n, 2, DTYPES[dt], has_z=True,
                has_dlast=kind == "bwd", blocks=blocks,
            )  # fmt: skip
            opts = f"all on, {blocks.block_d}x{blocks.block_n}x{blocks.block_l}/{blocks.num_warps}w"
            sites.append(Site("table", "-", 0, "-", f"scan_{kind}", dt, opts, launch))
    for pattern, merge, cf, dt in itertools.product(PATTERNS, (False, True), (True, False), dtypes):
        launch = cross_tri.launch_for_shape(2, 96, 56, 56, DTYPES[dt], pattern, merge, cf)
        kernel = "cross_merge" if merge else "cross_scan"
        layout = "channel-first" if cf else "channel-last"
        sites.append(Site("options", "-", 0, "-", kernel, dt, f"{pattern} {layout}", launch))
    return sites


_WORK: list[tuple[Launch, str]] = []


def _compile_one(i: int) -> KernelStats | str:
    launch, target = _WORK[i]
    return try_compile(launch, target)


def compile_sites(
    sites: list[Site], targets: list[str], jobs: int, progress: bool = True
) -> dict[tuple, KernelStats | str]:
    """Compile every distinct (launch, target) once; returns {compile_key: stats or error}."""
    unique: dict[tuple, tuple[Launch, str]] = {}
    for site, target in itertools.product(sites, targets):
        unique.setdefault(compile_key(site.launch, target), (site.launch, target))
    keys = list(unique)
    _WORK[:] = [unique[k] for k in keys]
    results: dict[tuple, KernelStats | str] = {}
    bar = tqdm(total=len(keys), desc="compiling", unit="kernel", disable=not progress)
    if jobs <= 1:
        for i, key in enumerate(keys):
            results[key] = _compile_one(i)
            bar.update()
    else:
        ctx = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(jobs, mp_context=ctx) as pool:
            futures = {pool.submit(_compile_one, i): key for i, key in enumerate(keys)}
            for fut in as_completed(futures):
                results[futures[fut]] = fut.result()
                bar.update()
    bar.close()
    return results


def problems(stats: KernelStats | str, target: str) -> str:
    """Why a compiled launch fails the report's bar ('' when it passes).

    The bar (no spills, shared memory within the opt-in limit) is NVIDIA's; AMD launches are
    reported (their spill counts in the CSV) but do not fail the report.
    """
    if isinstance(stats, str):
        return stats
    out = []
    if TARGETS[target][0] != "cuda":
        return ""
    if stats.spill_stores or stats.spill_loads:
        out.append(f"spills {stats.spill_stores} B")
    if stats.shared > SHARED_LIMIT[target]:
        out.append(f"shared {stats.shared} B > {SHARED_LIMIT[target]} B")
    return "; ".join(out)


def rows_of(sites: list[Site], targets: list[str], results: dict) -> list[dict]:
    """One CSV row per (site, target)."""
    rows = []
    for site, target in itertools.product(sites, targets):
        st = results[compile_key(site.launch, target)]
        ok = isinstance(st, KernelStats)
        rows.append(
            dict(
                section=site.section, model=site.model, stage=site.stage, input=site.inp,
                kernel=site.kernel, dtype=site.dtype, options=site.options, target=target,
                grid="x".join(map(str, site.launch.grid)), programs=site.launch.programs,
                constexprs=" ".join(f"{k}={v}" for k, v in site.launch.constexprs.items()),
                num_warps=site.launch.num_warps,
                registers=st.registers if ok else "", spill_bytes=st.spill_stores if ok else "",
                stack_bytes=st.stack if ok else "", shared_bytes=st.shared if ok else "",
                resident_per_sm=st.resident_programs() if ok else "",
                problem=problems(st, target),
            )
        )  # fmt: skip
    return rows


def summary(rows: list[dict]) -> list[dict]:
    """The printed table: one line per (model, kernel, target), worst case over dtypes/stages."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        if r["section"] == "model":
            groups.setdefault((r["model"], r["kernel"], r["target"]), []).append(r)
    out = []
    for (model, kernel, target), rs in groups.items():
        good = [r for r in rs if r["registers"] != ""]
        line = dict(model=model, kernel=kernel, target=target)
        line["registers"] = max((r["registers"] for r in good), default="-")
        line["spill B"] = max((r["spill_bytes"] for r in good), default="-")
        line["shared B"] = max((r["shared_bytes"] for r in good), default="-")
        line["resident/SM"] = min((r["resident_per_sm"] for r in good), default="-")
        for inp in INPUTS:
            per_stage = {r["stage"]: r["programs"] for r in rs if r["input"] == inp}
            line[f"programs {inp}"] = "/".join(str(per_stage[s]) for s in sorted(per_stage)) or "-"
        line["problems"] = len([r for r in rs if r["problem"]])
        out.append(line)
    return out


def plot(rows: list[dict], path: str) -> str:
    """Registers and spill bytes of every compiled launch, per kernel and target."""
    from mmvmamba.analysis.plotting import get_pyplot

    plt = get_pyplot()
    good = [r for r in rows if r["registers"] != ""]
    keys = sorted({(r["kernel"], r["target"]) for r in good})
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for ax, col, label in ((axes[0], "registers", "registers / thread"),
                           (axes[1], "resident_per_sm", "resident programs / SM")):  # fmt: skip
        data = [[r[col] for r in good if (r["kernel"], r["target"]) == k] for k in keys]
        ax.boxplot(data)
        ax.set_xticks(range(1, len(keys) + 1), [f"{k} {t}" for k, t in keys], fontsize=7)
        ax.tick_params(axis="x", labelrotation=60)
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
    axes[0].axhline(128, color="r", linestyle="--", linewidth=1)
    spills = sum(r["spill_bytes"] for r in good if TARGETS[r["target"]][0] == "cuda")
    title = f"Triton kernels compiled ahead of time: {len(good)} launches, "
    fig.suptitle(title + f"{spills} B spilled on NVIDIA targets")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--targets", nargs="+", default=["sm_80", "sm_90", "gfx942"])
    parser.add_argument("--dtypes", nargs="+", default=list(DTYPES), choices=list(DTYPES))
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--out-dir", default=os.path.join("work_dirs", "analysis", "triton_report"))
    parser.add_argument(
        "--scope",
        choices=("full", "ci"),
        default="full",
        help="'ci': the model launches and every block-table row in fp32 (the CI test's set)",
    )
    parser.add_argument("--no-plot", action="store_true")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    from mmvmamba.analysis.plotting import format_table, write_csv

    args = parse_args(argv)
    targets = []
    for target in args.targets:
        why = toolchain_missing(target)
        if why:
            print(f"skipping {target}: {why}")
        else:
            targets.append(target)
    if not targets:
        return 0
    model = model_sites(model_zoo(), args.dtypes)
    sites = model + option_sites(model, args.dtypes)
    if args.scope == "ci":
        sites = [
            s for s in sites if s.section == "model" or (s.section, s.dtype) == ("table", "fp32")
        ]
    results = compile_sites(sites, targets, args.jobs)
    rows = rows_of(sites, targets, results)
    print(format_table(summary(rows)))
    by_cfg: dict[tuple, dict] = {}
    for r in rows:
        if r["section"] != "model" and r["registers"] != "":
            key = (
                r["kernel"],
                r["options"] if r["section"] == "table" else r["section"],
                r["target"],
            )
            empty = {"kernel": key[0], "config": key[1], "target": key[2], "registers": 0}
            line = by_cfg.setdefault(key, {**empty, "spill B": 0, "shared B": 0})
            line["registers"] = max(line["registers"], r["registers"])
            line["spill B"] = max(line["spill B"], r["spill_bytes"])
            line["shared B"] = max(line["shared B"], r["shared_bytes"])
    print()
    print(format_table(list(by_cfg.values())))
    os.makedirs(args.out_dir, exist_ok=True)
    csv_path = write_csv(rows, os.path.join(args.out_dir, "triton_report.csv"))
    print(f"\n{len(rows)} launches, {len(results)} distinct compiles; wrote {csv_path}")
    if not args.no_plot:
        print("wrote", plot(rows, os.path.join(args.out_dir, "triton_report.png")))
    bad = [r for r in rows if r["problem"]]
    for r in bad[:20]:
        print(f"PROBLEM {r['kernel']} {r['model']} stage {r['stage']} {r['dtype']} {r['target']} "
              f"{r['options']}: {r['problem']}")  # fmt: skip
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
