"""A bench run: every model on a data set into one record (the run's context, each model's
measurement from :func:`recbench.bench.measure.bench_model`, the matmul peak at the start and the
end), with progress, and :func:`bench_datasets`, which writes one record per data set
(``<dataset>-<device>-<timestamp>.json`` + ``.md``), atomically after every measured model, and
resumes an unfinished record (a killed bench) of the same data, device, split and options.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from recbench.bench.flops import matmul_peak, torch_device
from recbench.bench.measure import BenchOptions, bench_model, median, overrides_for
from recbench.data.types import Split
from recbench.models.base import ConfigError
from recbench.provenance import hardware, versions
from recbench.results import Record
from recbench.runner import Reporter, build_model

__all__ = ["bench_datasets", "check_models", "run_bench"]


def _git_state() -> dict[str, Any] | None:
    """The checkout's commit and modified files (the code a benchmark ran), when in a git tree."""
    root = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if commit.returncode != 0:
        return None
    return {"commit": commit.stdout.strip(), "modified": [ln[3:] for ln in status.stdout.splitlines()]}


def _loadavg() -> list[float] | None:
    try:
        return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    except (OSError, ValueError):
        return None


def check_models(models: list[str], opts: BenchOptions) -> None:
    """Every model name and override resolves before any work."""
    from recbench.registry import get_model_class

    for m in models:
        get_model_class(m)
    for m in opts.overrides:
        if m not in models:
            raise ConfigError(f"--set names model {m!r}, which is not in --models ({', '.join(models)})")
        build_model(m, overrides_for(m, opts))


def _this_run(peak_start: dict[str, Any]) -> dict[str, Any]:
    """One process's part of a record: when, how, with which code, its own matmul peak and its models."""
    return {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": [Path(sys.argv[0]).name, *sys.argv[1:]],
        "matmul_peak": {"start": peak_start, "end": None, "flops_per_s": peak_start["flops_per_s"]},
        "load_average": _loadavg(),
        "git": _git_state(),
        "models": [],
    }


def _options(opts: BenchOptions) -> dict[str, Any]:
    """The options a record states (a rerun resumes a record only when they are the same)."""
    return {
        "epochs": opts.epochs,
        "repeats": opts.repeats,
        "protocols": list(opts.protocols),
        "overrides": opts.overrides,
        "validation": opts.validation,
        "split_seed": opts.split_seed,
        "seed": opts.seed,
        "threads": opts.threads,
        "eval_runs": opts.eval_runs,
    }


def _load_split(dataset: str, opts: BenchOptions) -> Split:
    from recbench.data import load_split

    return load_split(dataset, seed=opts.split_seed, validation=opts.validation, data_dir=opts.data_dir)


def _new_record(dataset: str, opts: BenchOptions, dev: Any, split: Split, load_s: float, run: dict[str, Any]) -> dict:
    """The record before its first model: the run's context, ``"complete": false``."""
    return {
        "kind": "recbench-bench",
        "format": 1,
        "dataset": dataset,
        "device": opts.device,
        "device_resolved": str(dev),
        "created": run["created"],
        "command": run["command"],
        "options": _options(opts),
        "split_info": {
            "fingerprint": split.fingerprint,
            "n_users": split.n_users,
            "n_items": split.n_items,
            "n_train": len(split.train),
            "n_eval_users": len(split.test),
            "n_candidates": int(split.test.candidates.shape[1]),
            "load_s": load_s,
        },
        "hardware": hardware(opts.device),
        "versions": versions(),
        "git": run["git"],
        "load_average": run["load_average"],
        "matmul_peak": dict(run["matmul_peak"]),
        "complete": False,
        "runs": [run],
        "models": [],
    }


def _cell_end(reporter: Reporter, dataset: str, rec: dict[str, Any], opts: BenchOptions) -> None:
    """A finished model as the reporter's cell line, then its speed."""
    data = {
        "dataset": dataset,
        "model": rec["model"],
        "seed": opts.seed,
        "status": rec["status"],
        "error": rec["error"],
        "protocols": list(opts.protocols),
        "metrics": rec["metrics"] or {},
        "timing": {"fit_s": rec["fit_s"] or 0.0},
    }
    reporter.cell_end(Record(data=data))
    if rec["status"] == "ok":
        speed = [f"{rec['samples_per_s']:,.0f} samples/s"] if rec["samples_per_s"] else []
        speed += [f"{rec['s_per_epoch']:.3g} s/epoch"] if rec["s_per_epoch"] else []
        speed += [f"{p} eval {rec[f'eval_{p}_s']:.3g} s" for p in opts.protocols if rec.get(f"eval_{p}_s")]
        reporter.message(f"  {rec['model']}: " + " · ".join(speed or ["no epochs"]))


def run_bench(
    dataset: str,
    models: list[str],
    opts: BenchOptions,
    split_loader: Callable[[str], Split] | None = None,
    on_model: Callable[[dict[str, Any]], None] | None = None,
    reporter: Reporter | None = None,
    resume: dict[str, Any] | None = None,
    on_update: Callable[[dict[str, Any]], None] | None = None,
    load_s: float | None = None,
) -> dict[str, Any]:
    """Benchmark ``models`` on ``dataset``; returns the whole record (``on_update`` gets it after
    every measured model, e.g. to write it). With ``resume`` (an unfinished record of the same
    data, device and options) its models measured ``ok`` are kept and skipped, the others
    measured and added; every model's ``peak_fraction`` is against its own run's matmul peak.
    ``load_s``: the split's load time when ``split_loader`` hands over a split loaded before."""
    check_models(models, opts)
    dev = torch_device(opts.device)
    if opts.threads:
        import torch

        torch.set_num_threads(int(opts.threads))
    from recbench.numerics import set_denormals

    denormals = set_denormals("flush")  # as every fit (recbench.numerics)
    t0 = time.perf_counter()
    split = split_loader(dataset) if split_loader is not None else _load_split(dataset, opts)
    load_s = time.perf_counter() - t0 if load_s is None else load_s
    if resume is not None and resume["split_info"]["fingerprint"] != split.fingerprint:
        raise ConfigError(f"the unfinished record of {dataset!r} to resume was measured on another split")
    if reporter is not None:
        reporter.phase(None, "timing the fp32 matmul peak")
    run = _this_run(matmul_peak(opts.device, opts.matmul_n, opts.matmul_repeats))
    run["denormals"] = denormals
    peak_start = run["matmul_peak"]["start"]
    if resume is None:
        record = _new_record(dataset, opts, dev, split, load_s, run)
    else:
        record = {**resume, "models": list(resume["models"]), "runs": [*(resume.get("runs") or []), run]}
    done = {m["model"] for m in record["models"] if m["status"] == "ok"}  # a failed model is measured again
    measured = []
    for m in models:
        if m in done:
            if reporter is not None:
                reporter.message(f"= {dataset} · {m}: measured in the unfinished record, skipped")
            continue
        label = f"{dataset} · {m} · seed {opts.seed}"
        rec = bench_model(split, m, opts, peak_start["flops_per_s"], reporter, label)
        failed_before = [k for k, old in enumerate(record["models"]) if old["model"] == m]
        if failed_before:
            record["models"][failed_before[0]] = rec
        else:
            record["models"].append(rec)
        run["models"].append(m)
        measured.append(rec)
        if reporter is not None:
            _cell_end(reporter, dataset, rec, opts)
        if on_model is not None:
            on_model(rec)
        if on_update is not None:
            on_update(record)
    peak_end = matmul_peak(opts.device, opts.matmul_n, opts.matmul_repeats)
    peak = median([peak_start["flops_per_s"], peak_end["flops_per_s"]])
    run["matmul_peak"] = {"start": peak_start, "end": peak_end, "flops_per_s": peak}
    for rec in measured:  # the fraction against the run's median peak (start and end), stages too
        if rec.get("achieved_flops_per_s") and peak:
            rec["peak_fraction"] = rec["achieved_flops_per_s"] / peak
        for stage in rec.get("stages") or []:
            if stage.get("flops_per_s") and peak:
                stage["peak_fraction"] = stage["flops_per_s"] / peak
    first = record["runs"][0]["matmul_peak"]
    peaks = [r["matmul_peak"]["flops_per_s"] for r in record["runs"]]
    record["matmul_peak"] = {"start": first["start"], "end": peak_end, "flops_per_s": median(peaks)}
    record["complete"] = True
    return record


def bench_datasets(
    datasets: Sequence[str],
    models: list[str],
    opts: BenchOptions,
    reporter: Reporter | None = None,
    fresh: bool = False,
    split_loader: Callable[[str], Split] | None = None,
) -> list[tuple[Path, dict[str, Any]]]:
    """Benchmark ``models`` on every data set, one record file each under ``opts.out``, written
    atomically after every measured model (a killed bench keeps what it measured) and once more
    when the data set is done. An unfinished record of the same data, device, split and options
    under ``opts.out`` is resumed (its measured models skipped) unless ``fresh``. Returns each
    data set's record and its path."""
    check_models(models, opts)
    return [_bench_dataset(ds, models, opts, reporter, fresh, split_loader) for ds in datasets]


def _bench_dataset(
    dataset: str,
    models: list[str],
    opts: BenchOptions,
    reporter: Reporter | None,
    fresh: bool,
    split_loader: Callable[[str], Split] | None,
) -> tuple[Path, dict[str, Any]]:
    from recbench.bench.files import bench_path, find_unfinished, save_bench

    if reporter is not None:
        reporter.phase(None, f"loading {dataset}")
    t0 = time.perf_counter()
    split = split_loader(dataset) if split_loader is not None else _load_split(dataset, opts)
    load_s = time.perf_counter() - t0
    like = {
        "dataset": dataset,
        "device_resolved": str(torch_device(opts.device)),
        "options": _options(opts),
        "split_info": {"fingerprint": split.fingerprint},
    }
    found = None if fresh else find_unfinished(opts.out, like)
    if found is not None and reporter is not None:
        reporter.message(f"resuming {found[0]}: {len(found[1]['models'])} model(s) measured there")
    path = found[0] if found is not None else None

    def write(record: dict[str, Any]) -> None:
        nonlocal path
        if path is None:
            path = bench_path(opts.out, record["dataset"], record["device_resolved"], record["created"])
        save_bench(record, path)

    record = run_bench(
        dataset,
        models,
        opts,
        lambda _name: split,
        reporter=reporter,
        resume=found[1] if found is not None else None,
        on_update=write,
        load_s=load_s,
    )
    write(record)
    assert path is not None
    return path, record
