"""The experiment grid behind ``recbench run``: for each (dataset, model, seed) fit, evaluate and
write one result record, skipping cells whose record already exists (resume after a crash).

Data flow: registry → fetch → split (cached, fingerprinted) → ``model.fit`` → evaluator →
:class:`~recbench.results.Record`. Nothing here reads global configuration: everything arrives as
arguments.
"""

from __future__ import annotations

import os
import platform
import random
import resource
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from recbench.data.types import Split
from recbench.eval import metrics as M
from recbench.eval.evaluator import PROTOCOLS, evaluate
from recbench.models.base import ConfigError, FitContext, Model, apply_overrides, config_to_dict
from recbench.registry import get_model_class
from recbench.results import (
    Record,
    cell_lock,
    find_record,
    record_key,
    remove_stale_files,
    write_record,
)


@dataclass(frozen=True)
class RunOptions:
    """Everything that shapes a grid besides the datasets and models."""

    seeds: tuple[int, ...] = (0,)
    protocols: tuple[str, ...] = ("sampled",)
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)  # model -> {param: value}
    out: Path = Path("results")
    force: bool = False
    device: str = "cpu"
    validation: bool = False
    split_seed: int = 0
    n_negatives: int = 99
    eval_every: int = 0
    early_stopping: int = 0
    ks: tuple[int, ...] = (10,)
    data_dir: Path | None = None
    tags: dict[str, Any] = field(default_factory=dict)  # recorded; part of the key except LABEL_TAGS
    tuned: Path | None = None  # results folder whose tuned/ configs to apply (``run --tuned``)

    def __post_init__(self) -> None:
        bad = [p for p in self.protocols if p not in PROTOCOLS]
        if bad:
            raise ConfigError(f"unknown protocol {bad[0]!r}; valid: {', '.join(PROTOCOLS)}, both")
        if self.early_stopping and not self.validation:
            raise ConfigError("--early-stopping needs a validation split (--validation)")


class Reporter:
    """Progress callbacks (no-op here; the CLI draws them with rich)."""

    def cell_start(self, dataset: str, model: str, seed: int, epochs: int | None) -> None: ...
    def cell_skip(self, rec: Record) -> None: ...
    def epoch(self, info: dict[str, Any]) -> None: ...
    def batch(self, done: int, total: int) -> None: ...
    def phase(self, text: str) -> None: ...
    def cell_end(self, rec: Record) -> None: ...


# ----------------------------------------------------------------------------- environment


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in ("recbench", "numpy", "scipy", "torch", "implicit", "pandas"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "absent"
    return out


def hardware(device: str = "cpu") -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info: dict[str, Any] = {"cpu": cpu, "cores": os.cpu_count(), "platform": platform.platform()}
    try:
        import torch

        info["torch_threads"] = torch.get_num_threads()
        if device != "cpu" and torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:  # pragma: no cover
        pass
    return info


class PeakMemory:
    """Peak resident memory (MiB) during a block, sampled from /proc (falls back to the
    process high-water mark where /proc is unavailable)."""

    def __init__(self, interval: float = 0.02) -> None:
        self.interval = interval
        self.peak_mb = 0.0
        self._stop = threading.Event()
        self._page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096

    def _rss_mb(self) -> float:
        try:
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * self._page / 2**20
        except OSError:
            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.peak_mb = max(self.peak_mb, self._rss_mb())
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakMemory:
        self.peak_mb = self._rss_mb()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_mb = max(self.peak_mb, self._rss_mb())


# ----------------------------------------------------------------------------- one cell


def build_model(name: str, overrides: dict[str, Any] | None = None) -> Model:
    cls = get_model_class(name)
    cfg = apply_overrides(cls.Config(), overrides or {}, name)
    return cls(cfg)


LABEL_TAGS = ("experiment",)
"""Tags that label a record without being part of its identity: one fit serves every experiment
that asks for the same cell (the experiments that reused it are listed in ``used_by``)."""


def cell_identity(split: Split, model: Model, seed: int, opts: RunOptions) -> dict[str, Any]:
    return {
        "dataset": split.dataset,
        "split": split.fingerprint,
        "model": model.name,
        "config": config_to_dict(model.config),
        "seed": seed,
        "device": opts.device,
        "eval_every": opts.eval_every,
        "early_stopping": opts.early_stopping,
        "tags": {k: v for k, v in opts.tags.items() if k not in LABEL_TAGS},
    }


def seed_everything(seed: int) -> np.random.Generator:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    try:
        import torch

        torch.manual_seed(seed)
    except ImportError:  # pragma: no cover
        pass
    return np.random.default_rng(seed)


def run_cell(
    split: Split, model_name: str, seed: int, opts: RunOptions, reporter: Reporter | None = None
) -> Record:
    """Fit and evaluate one (dataset, model, seed) cell and write its record, holding the cell's
    file lock so that concurrent runs on one results folder do each cell once (the second finds
    the first's record and skips it)."""
    key = record_key(cell_identity(split, build_model(model_name, opts.overrides.get(model_name)), seed, opts))

    def waiting() -> None:
        if reporter is not None:
            reporter.phase(f"waiting: another run holds {split.dataset} · {model_name} · seed {seed}")

    with cell_lock(opts.out, split.dataset, model_name, seed, key, on_wait=waiting):
        rec = _run_cell(split, model_name, seed, opts, reporter)
        if rec.path is not None:
            remove_stale_files(rec.path)
        return rec


def _run_cell(
    split: Split, model_name: str, seed: int, opts: RunOptions, reporter: Reporter | None = None
) -> Record:
    reporter = reporter or Reporter()
    model = build_model(model_name, opts.overrides.get(model_name))
    ident = cell_identity(split, model, seed, opts)
    key = record_key(ident)
    wanted = sorted(opts.protocols)
    if not opts.force:
        old = _reusable(opts.out, split.dataset, model_name, seed, key, wanted)
        if old is not None:
            reporter.cell_skip(old)
            return _mark_used(opts, old)

    reporter.cell_start(split.dataset, model_name, seed, getattr(model.config, "epochs", None))

    def ctx_evaluate(m: Model, role: str) -> dict[str, float]:
        held = split.test if role == "test" else split.validation
        if held is None:
            raise ConfigError("no validation split: run with --validation")
        return M.summarize(evaluate(m, split.train, held, "sampled"), opts.ks)

    ctx = FitContext(
        device=opts.device,
        eval_every=opts.eval_every,
        early_stopping_patience=opts.early_stopping,
        early_stopping_metric=f"ndcg@{opts.ks[0]}",
        evaluate=ctx_evaluate,
        on_epoch=reporter.epoch,
        on_batch=reporter.batch,
    )
    data: dict[str, Any] = {
        **ident,
        "tags": dict(opts.tags),
        "key": key,
        "protocols": wanted,
        "split_info": {
            "seed": split.seed,
            "validation": split.validation is not None,
            "n_negatives": split.n_negatives,
            "n_eval_users": len(split.test),
            "n_not_evaluated": split.n_not_evaluated,
            "n_users": split.n_users,
            "n_items": split.n_items,
            "n_train": len(split.train),
        },
        "versions": versions(),
        "hardware": hardware(opts.device),
        "command": [Path(sys.argv[0]).name, *sys.argv[1:]],
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "metrics": {},
        "history": ctx.history,
        "timing": {},
        "error": None,
    }
    ranks: dict[str, np.ndarray] = {}
    rng = seed_everything(seed)
    try:
        with PeakMemory() as mem:
            t0 = time.perf_counter()
            model.fit(split.train, rng, ctx)
            data["timing"]["fit_s"] = time.perf_counter() - t0
            epochs = [h for h in ctx.history if "seconds" in h]
            if epochs:
                data["timing"]["s_per_epoch"] = float(np.median([h["seconds"] for h in epochs]))
                data["timing"]["samples_per_s"] = float(np.median([h["samples_per_s"] for h in epochs]))
                data["timing"]["epochs_run"] = len(epochs)
            roles = [("test", split.test)] + ([("validation", split.validation)] if split.validation is not None else [])
            for role, held in roles:
                for proto in wanted if role == "test" else ["sampled"]:
                    reporter.phase(f"evaluating {role}/{proto}")
                    t1 = time.perf_counter()
                    r = evaluate(model, split.train, held, proto)
                    data["timing"][f"eval_{role}_{proto}_s"] = time.perf_counter() - t1
                    ranks[f"{role}/{proto}"] = r
                    data["metrics"][f"{role}/{proto}" if role != "test" else proto] = M.summarize(r, opts.ks)
        data["peak_rss_mb"] = mem.peak_mb
        data["status"] = "ok"
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as e:  # the grid goes on; the failure is recorded
        data["status"] = "failed"
        data["error"] = f"{type(e).__name__}: {e}"
        data["traceback"] = traceback.format_exc(limit=8)
        ranks = {}
    rec = Record(data=data, users=split.test.users, ranks=ranks)
    write_record(opts.out, rec)
    reporter.cell_end(rec)
    return rec


def existing_record(split: Split, model_name: str, seed: int, opts: RunOptions) -> Record | None:
    """The finished record of a cell, if there is one that covers ``opts.protocols`` (no fit)."""
    model = build_model(model_name, opts.overrides.get(model_name))
    key = record_key(cell_identity(split, model, seed, opts))
    return _reusable(opts.out, split.dataset, model_name, seed, key, opts.protocols)


def _reusable(out: Path, dataset: str, model_name: str, seed: int, key: str, protocols: Iterable[str]) -> Record | None:
    """The cell's record if it finished and evaluated every protocol wanted, else None."""
    old = find_record(out, dataset, model_name, seed, key)
    if old is not None and old.status == "ok" and set(protocols) <= set(old.data.get("protocols", [])):
        return old
    return None


def _mark_used(opts: RunOptions, rec: Record) -> Record:
    """Reusing a record for an experiment other than the one that made it: list that experiment
    in the record's ``used_by`` (rewritten atomically, under the cell's lock)."""
    name = opts.tags.get("experiment")
    if name is None or rec.data.get("tags", {}).get("experiment") == name or name in rec.data.get("used_by", []):
        return rec
    rec.data["used_by"] = sorted({*rec.data.get("used_by", []), name})
    write_record(opts.out, rec)
    return rec


def mark_used(opts: RunOptions, rec: Record) -> Record:
    """:func:`_mark_used` for a record found without running its cell (``experiment --no-fit``),
    under the cell's lock."""
    d = rec.data
    with cell_lock(opts.out, d["dataset"], d["model"], d["seed"], d["key"]):
        rec = _mark_used(opts, rec)
        if rec.path is not None:
            remove_stale_files(rec.path)
    return rec


# ----------------------------------------------------------------------------- the grid


SplitLoader = Callable[[str], Split]


def default_split_loader(opts: RunOptions) -> SplitLoader:
    from recbench.data import load_split

    def load(name: str) -> Split:
        return load_split(
            name,
            seed=opts.split_seed,
            validation=opts.validation,
            n_negatives=opts.n_negatives,
            data_dir=opts.data_dir,
        )

    return load


def validate_overrides(models: list[str], overrides: dict[str, dict[str, Any]]) -> None:
    """Fail before any work on an unknown model or parameter or an ill-typed value."""
    for name, params in overrides.items():
        if name not in models:
            raise ConfigError(f"--set names model {name!r}, which is not in --models ({', '.join(models)})")
        build_model(name, params)


def run_grid(
    datasets: list[str],
    models: list[str],
    opts: RunOptions,
    reporter: Reporter | None = None,
    split_loader: SplitLoader | None = None,
) -> list[Record]:
    """Run every (dataset, model, seed) cell; records are written as each finishes."""
    validate_overrides(models, opts.overrides)
    per_dataset = {ds: opts for ds in datasets}
    if opts.tuned is not None:  # per-dataset tuned configs (explicit --set wins), all checked first
        from recbench.tune import tuned_overrides

        for ds in datasets:
            ov = tuned_overrides(opts.tuned, ds, models, opts.overrides)
            validate_overrides(models, ov)
            per_dataset[ds] = replace(opts, overrides=ov, tags={**opts.tags, "tuned": True}, tuned=None)
    load = split_loader or default_split_loader(opts)
    records: list[Record] = []
    for ds in datasets:
        if reporter is not None:
            reporter.phase(f"loading {ds}")
        split = load(ds)
        for model_name in models:
            for seed in opts.seeds:
                records.append(run_cell(split, model_name, seed, per_dataset[ds], reporter))
    return records


def parse_overrides(items: list[str]) -> dict[str, dict[str, Any]]:
    """``["ncf.learning_rate=0.005", ...]`` → ``{"ncf": {"learning_rate": "0.005"}}``."""
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        lhs, eq, value = item.partition("=")
        model, dot, param = lhs.partition(".")
        if not eq or not dot or not model or not param:
            raise ConfigError(f"--set {item!r}: expected MODEL.PARAM=VALUE, e.g. ncf.learning_rate=0.005")
        out.setdefault(model.strip().lower(), {})[param.strip()] = value.strip()
    return out


def options_from_record(data: dict[str, Any], out: Path, data_dir: Path | None = None) -> tuple[str, str, RunOptions]:
    """Rebuild the exact cell a record describes: ``(dataset, model, options)``."""
    model = data["model"]
    cls = get_model_class(model)
    defaults = config_to_dict(cls.Config())
    diff = {k: v for k, v in data["config"].items() if defaults.get(k) != v}
    info = data.get("split_info", {})
    opts = RunOptions(
        seeds=(int(data["seed"]),),
        protocols=tuple(data.get("protocols") or ["sampled"]),
        overrides={model: diff} if diff else {},
        out=out,
        force=True,
        device=data.get("device", "cpu"),
        validation=bool(info.get("validation", False)),
        split_seed=int(info.get("seed", 0)),
        n_negatives=int(info.get("n_negatives", 99)),
        eval_every=int(data.get("eval_every", 0)),
        early_stopping=int(data.get("early_stopping", 0)),
        data_dir=data_dir,
        tags=data.get("tags", {}),
    )
    return data["dataset"], model, opts

