"""Executing one cell: for a typed :class:`Cell` (data set, model, frozen config, seed, split)
fit, evaluate and write one result record, skipping a cell whose record already exists (resume
after a crash) and resuming a fit from its last per-epoch checkpoint. Also here: the options of a
run (:class:`RunOptions`, checked when made; :func:`check_run_options` and
:func:`check_datasets` before any work), a cell's identity (its record key), loading the splits
cells need, and the :class:`Reporter` callbacks.

Data flow: ``plan`` (options → cells) → split (cached, fingerprinted) → ``model.fit`` →
evaluator → :class:`~recbench.results.Record`. Nothing here reads global configuration or
resolves a configuration: cells arrive fully resolved (:mod:`recbench.plan`).

Executors run many cells: in this process or ``--jobs`` worker processes
(:mod:`recbench.executors`), or on a Ray cluster (:mod:`recbench.ray_executor`);
:func:`recbench.plan.execute` chooses. Every executor writes the same files with the same numbers.
What a record says about the code and the machine comes from :mod:`recbench.provenance`.
"""

from __future__ import annotations

import functools
import json
import random
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from recbench.data.types import Split
from recbench.eval.evaluator import PROTOCOLS, evaluate
from recbench.eval.metrics import summarize
from recbench.models.base import ConfigError, FitContext, Model, apply_overrides, config_diff, identity_config
from recbench.numerics import DENORMALS, FLOATS, ensure_floats, set_denormals
from recbench.provenance import PeakMemory, code_version, hardware, versions
from recbench.registry import get_model_class
from recbench.results import Record, cell_lock, find_record, record_key, remove_stale_files, write_record

EXECUTORS = ("local", "ray")
"""``--executor``: :mod:`recbench.executors` (this machine) or :mod:`recbench.ray_executor`."""


@dataclass(frozen=True)
class RunOptions:
    """What ``recbench run`` was asked for. The cell-shaping part (seeds, protocols, overrides,
    split, evaluation schedule, tags, tuned) is resolved into cells by :mod:`recbench.plan`; the
    rest says how cells are executed."""

    seeds: tuple[int, ...] = (0,)
    protocols: tuple[str, ...] = ("sampled",)
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)  # model -> {param: value}
    out: Path = Path("results")
    force: bool = False
    device: str = "cpu"
    validation: bool = False
    split_seed: int = 0
    split_seeds: tuple[int, ...] = ()  # several splits (``--split-seeds``); empty: (split_seed,)
    n_negatives: int = 99
    eval_every: int = 0
    early_stopping: int = 0
    ks: tuple[int, ...] = (10,)
    data_dir: Path | None = None
    tags: dict[str, Any] = field(default_factory=dict)  # recorded; part of the key except LABEL_TAGS
    tuned: Path | None = None  # results folder whose tuned/ configs to apply (``run --tuned``)
    checkpoint: bool = True  # per-epoch checkpoints of torch fits
    checkpoint_every: int = 1
    checkpoint_dir: Path | None = None  # default OUT/.checkpoints
    keep_checkpoints: bool = False  # keep a fit's checkpoint once its record lands (diagnose --checkpoint)
    jobs: int = 1  # cells at a time (worker processes; Ray tasks in flight)
    threads: int = 1  # torch intra-op threads of each worker process (0: torch's default)
    executor: str = "local"
    ray_address: str | None = None  # None: a local Ray instance; "auto": a running cluster
    floats: str = "native"  # "portable": the same float bits on every x86-64 CPU (recbench.numerics)
    denormals: str = "flush"  # subnormal floats flushed to zero ("keep": records made before; recbench.numerics)

    def __post_init__(self) -> None:
        bad = [p for p in self.protocols if p not in PROTOCOLS]
        if bad:
            raise ConfigError(f"unknown protocol {bad[0]!r}; valid: {', '.join(PROTOCOLS)}, both")
        if self.early_stopping and not self.validation:
            raise ConfigError("--early-stopping needs a validation split (--validation)")
        for name, low in (
            ("jobs", 1),
            ("checkpoint_every", 1),
            ("threads", 0),
            ("eval_every", 0),
            ("early_stopping", 0),
            ("split_seed", 0),
            ("n_negatives", 1),
        ):
            value = getattr(self, name)
            if value < low:
                raise ConfigError(f"--{name.replace('_', '-')} {value}: must be ≥ {low}")
        if any(s < 0 for s in self.split_seeds):
            raise ConfigError(f"--split-seeds {','.join(map(str, self.split_seeds))}: seeds must be ≥ 0")
        if any(s < 0 for s in self.seeds):
            raise ConfigError(f"--seeds {','.join(map(str, self.seeds))}: seeds must be ≥ 0")
        if any(k < 1 for k in self.ks):
            raise ConfigError(f"K={min(self.ks)}: cut-offs must be ≥ 1")
        for name, valid in (("floats", FLOATS), ("denormals", DENORMALS)):
            if getattr(self, name) not in valid:
                raise ConfigError(f"{name} {getattr(self, name)!r}; valid: {', '.join(valid)}")
        if self.floats != "native" and self.device != "cpu":
            raise ConfigError(f"--portable-floats is for CPU fits (device {self.device!r})")
        if self.executor not in EXECUTORS:
            raise ConfigError(f"--executor {self.executor!r}; valid: {', '.join(EXECUTORS)}")

    @property
    def checkpoint_root(self) -> Path:
        """Where fits keep their per-epoch checkpoints."""
        return self.checkpoint_dir if self.checkpoint_dir is not None else self.out / ".checkpoints"


@dataclass(frozen=True)
class SplitSpec:
    """Which split of a data set a cell is evaluated on (the split's cache key)."""

    dataset: str
    seed: int = 0
    validation: bool = False
    n_negatives: int = 99


@dataclass(frozen=True)
class Cell:
    """One fit: a data set's split, a model with its resolved frozen config, a model seed, the
    protocols to evaluate, the evaluation schedule and the record's tags."""

    split: SplitSpec
    model: str
    config: Any  # the model's frozen Config dataclass
    seed: int
    protocols: tuple[str, ...] = ("sampled",)
    eval_every: int = 0
    early_stopping: int = 0
    tags: dict[str, Any] = field(default_factory=dict, hash=False)
    ref: str | None = None  # ``module:Class`` of a model from outside the package (any process finds it)

    @property
    def dataset(self) -> str:
        return self.split.dataset

    @property
    def label(self) -> str:
        return f"{self.dataset} · {self.model} · seed {self.seed}"

    def build(self) -> Model:
        return get_model_class(self.ref or self.model)(self.config)


class Reporter:
    """Progress callbacks, each naming its cell by :attr:`Cell.label` (no-op here; the CLI draws
    them with rich on a terminal and as plain lines in a log, :mod:`recbench.progress`)."""

    def cell_start(self, cell: str, epochs: int | None) -> None: ...
    def cell_skip(self, rec: Record) -> None: ...
    def epoch(self, cell: str, info: dict[str, Any]) -> None: ...
    def batch(self, cell: str, done: int, total: int) -> None: ...
    def phase(self, cell: str | None, text: str) -> None: ...
    def message(self, text: str) -> None: ...
    def cell_end(self, rec: Record) -> None: ...


# ----------------------------------------------------------------------------- one cell


def build_model(name: str, overrides: dict[str, Any] | None = None) -> Model:
    """A model by name, its defaults with ``overrides`` applied."""
    cls = get_model_class(name)
    cfg = apply_overrides(cls.Config(), overrides or {}, name)
    return cls(cfg)


LABEL_TAGS = ("experiment",)
"""Tags that label a record without being part of its identity: one fit serves every experiment
that asks for the same cell (the experiments that reused it are listed in ``used_by``)."""


def cell_identity(split: Split, cell: Cell, device: str, floats: str = "native") -> dict[str, Any]:
    """Everything that determines a cell's result; its hash is the record key (a model revision
    above 1 is part of it, so that records of older code are never reused; so are portable floats,
    so that native records keep their keys)."""
    revision = get_model_class(cell.ref or cell.model).revision_of(cell.config)
    return {
        **({"revision": revision} if revision > 1 else {}),
        "dataset": split.dataset,
        "split": split.fingerprint,
        "model": cell.model,
        "config": identity_config(cell.config),
        "seed": cell.seed,
        "device": device,
        "eval_every": cell.eval_every,
        "early_stopping": cell.early_stopping,
        "tags": {k: v for k, v in cell.tags.items() if k not in LABEL_TAGS},
        **({"floats": floats} if floats != "native" else {}),
    }


def cell_key(split: Split, cell: Cell, device: str, floats: str = "native") -> str:
    """The cell's record key (the hash of :func:`cell_identity`)."""
    return record_key(cell_identity(split, cell, device, floats))


def checkpoint_path(opts: RunOptions, dataset: str, model: str, seed: int, key: str) -> Path:
    """A cell's checkpoint file (beside the records' layout, under ``opts.checkpoint_root``)."""
    return opts.checkpoint_root / dataset / model / f"seed{seed}-{key}.ckpt"


def seed_everything(seed: int) -> np.random.Generator:
    """Seed Python, numpy and torch; returns the fit's generator."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    try:
        import torch

        torch.manual_seed(seed)
    except ImportError:  # pragma: no cover
        pass
    return np.random.default_rng(seed)


def run_cell(split: Split, cell: Cell, opts: RunOptions, reporter: Reporter | None = None) -> Record:
    """Fit and evaluate one cell and write its record, holding the cell's file lock so that
    concurrent runs on one results folder do each cell once (the second finds the first's record
    and skips it). A finished record is reused unless ``opts.force``."""
    reporter = reporter or Reporter()
    key = cell_key(split, cell, opts.device, opts.floats)

    def waiting() -> None:
        reporter.phase(cell.label, f"waiting: another run holds {cell.label}")

    with cell_lock(opts.out, cell.dataset, cell.model, cell.seed, key, on_wait=waiting):
        old = None if opts.force else _reusable(opts.out, cell, key)
        if old is not None:
            reporter.cell_skip(old)
            rec = _mark_used(opts.out, old, cell.tags.get("experiment"))
        else:
            rec = compute_cell(split, cell, opts, reporter)
            finish_record(opts, rec)
            reporter.cell_end(rec)
        if rec.path is not None:
            remove_stale_files(rec.path)
        return rec


def finish_record(opts: RunOptions, rec: Record) -> Path:
    """Write a computed record atomically and remove the fit's checkpoint (a rerun finds the
    record), unless ``opts.keep_checkpoints`` (its weights, for ``recbench diagnose --checkpoint``)."""
    path = write_record(opts.out, rec)
    d = rec.data
    if not opts.keep_checkpoints:
        checkpoint_path(opts, d["dataset"], d["model"], d["seed"], d["key"]).unlink(missing_ok=True)
    return path


def compute_cell(split: Split, cell: Cell, opts: RunOptions, reporter: Reporter | None = None) -> Record:
    """Fit (resuming from the cell's checkpoint if there is one) and evaluate one cell; the
    record is returned, not written (:func:`run_cell` writes it; on Ray, the driver does)."""
    reporter = reporter or Reporter()
    ensure_floats(opts.floats)  # before the model's first tensor
    denormals = set_denormals(opts.denormals)
    model = cell.build()
    ident = cell_identity(split, cell, opts.device, opts.floats)
    key = record_key(ident)
    wanted = sorted(cell.protocols)
    reporter.cell_start(cell.label, getattr(model.config, "epochs", None))

    def ctx_evaluate(m: Model, role: str) -> dict[str, float]:
        held = split.test if role == "test" else split.validation
        if held is None:
            raise ConfigError("no validation split: run with --validation")
        return summarize(evaluate(m, split.train, held, "sampled"), opts.ks)

    from recbench.checkpoint import CheckpointSpec

    ctx = FitContext(
        device=opts.device,
        eval_every=cell.eval_every,
        early_stopping_patience=cell.early_stopping,
        early_stopping_metric=f"ndcg@{opts.ks[0]}",
        evaluate=ctx_evaluate,
        on_epoch=functools.partial(reporter.epoch, cell.label),
        on_batch=functools.partial(reporter.batch, cell.label),
        checkpoint=(
            CheckpointSpec(
                checkpoint_path(opts, cell.dataset, cell.model, cell.seed, key),
                key,
                cell.label,
                opts.checkpoint_every,
                reporter.message,
            )
            if opts.checkpoint
            else None
        ),
    )
    data = record_data(split, cell, opts, ident, key) | {"denormals": denormals}
    data["history"] = ctx.history
    ranks: dict[str, np.ndarray] = {}
    rng = seed_everything(cell.seed)
    try:
        with PeakMemory() as mem:
            t0 = time.perf_counter()
            model.fit(split.train, rng, ctx)
            data["timing"]["fit_s"] = time.perf_counter() - t0
            if ctx.resumed_from_epoch is not None:
                data["resumed_from_epoch"] = ctx.resumed_from_epoch  # fit_s counts this process only
            epochs = [h for h in ctx.history if "seconds" in h]
            if epochs:
                data["timing"]["s_per_epoch"] = float(np.median([h["seconds"] for h in epochs]))
                data["timing"]["samples_per_s"] = float(np.median([h["samples_per_s"] for h in epochs]))
                data["timing"]["epochs_run"] = len(epochs)
            roles = [("test", split.test)] + (
                [("validation", split.validation)] if split.validation is not None else []
            )
            for role, held in roles:
                for proto in wanted if role == "test" else ["sampled"]:
                    reporter.phase(cell.label, f"evaluating {role}/{proto}")
                    t1 = time.perf_counter()
                    r = evaluate(model, split.train, held, proto)
                    data["timing"][f"eval_{role}_{proto}_s"] = time.perf_counter() - t1
                    ranks[f"{role}/{proto}"] = r
                    data["metrics"][f"{role}/{proto}" if role != "test" else proto] = summarize(r, opts.ks)
        data["peak_rss_mb"] = mem.peak_mb
        data["status"] = "ok"
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as e:  # the grid goes on; the failure is recorded
        data["status"] = "failed"
        data["error"] = f"{type(e).__name__}: {e}"
        data["traceback"] = traceback.format_exc(limit=8)
        ranks = {}
    return Record(data=data, users=split.test.users, ranks=ranks)


def record_data(split: Split, cell: Cell, opts: RunOptions, ident: dict[str, Any], key: str) -> dict[str, Any]:
    """A record's fields before its fit: identity, split, environment and code."""
    return {
        **ident,
        # what differs from the model's defaults at run time: reports label the record by it
        "overrides": json.loads(json.dumps(config_diff(cell.config), default=str)),
        "tags": dict(cell.tags),
        "key": key,
        "protocols": sorted(cell.protocols),
        "split_info": {
            "seed": split.seed,
            "validation": split.validation is not None,
            "n_negatives": split.n_negatives,
            "n_eval_users": len(split.test),
            "n_not_evaluated": split.n_not_evaluated,
            "n_users": split.n_users,
            "n_items": split.n_items,
            "n_train": len(split.train),
            **({"accepted_mismatch": split.meta["accepted_mismatch"]} if split.meta.get("accepted_mismatch") else {}),
        },
        "versions": versions(),
        "code": code_version(),
        "hardware": hardware(opts.device),
        "command": [Path(sys.argv[0]).name, *sys.argv[1:]],
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        **({"model_ref": cell.ref} if cell.ref else {}),
        "metrics": {},
        "history": [],
        "timing": {},
        "error": None,
    }


def failed_record(split: Split, cell: Cell, opts: RunOptions, error: str) -> Record:
    """The record of a cell whose fit never returned (a worker lost for good)."""
    ident = cell_identity(split, cell, opts.device, opts.floats)
    data = record_data(split, cell, opts, ident, record_key(ident))
    data.update(status="failed", error=error)
    return Record(data=data, users=split.test.users)


def existing_record(split: Split, cell: Cell, opts: RunOptions) -> Record | None:
    """The finished record of a cell, if there is one that covers its protocols (no fit)."""
    return _reusable(opts.out, cell, cell_key(split, cell, opts.device, opts.floats))


def _reusable(out: Path, cell: Cell, key: str) -> Record | None:
    """The cell's record if it finished and evaluated every protocol wanted, else None."""
    old = find_record(out, cell.dataset, cell.model, cell.seed, key)
    if old is not None and old.status == "ok" and set(cell.protocols) <= set(old.data.get("protocols", [])):
        return old
    return None


def _mark_used(out: Path, rec: Record, name: str | None) -> Record:
    """Reusing a record for an experiment other than the one that made it: list that experiment
    in the record's ``used_by`` (rewritten atomically, under the cell's lock)."""
    if name is None or rec.data.get("tags", {}).get("experiment") == name or name in rec.data.get("used_by", []):
        return rec
    rec.data["used_by"] = sorted({*rec.data.get("used_by", []), name})
    write_record(out, rec)
    return rec


def mark_used(opts: RunOptions, rec: Record, experiment: str | None) -> Record:
    """:func:`_mark_used` for a record found without running its cell (``experiment --no-fit``),
    under the cell's lock."""
    d = rec.data
    with cell_lock(opts.out, d["dataset"], d["model"], d["seed"], d["key"]):
        rec = _mark_used(opts.out, rec, experiment)
        if rec.path is not None:
            remove_stale_files(rec.path)
    return rec


# ----------------------------------------------------------------------------- splits


SplitLoader = Callable[[str], Split]
"""A data set name → its split (tests pass their own; the default reads the cache)."""


def default_split_loader(opts: RunOptions) -> SplitLoader:
    """Load a data set's split as ``opts`` describes it."""
    return lambda name: load_spec(SplitSpec(name, opts.split_seed, opts.validation, opts.n_negatives), opts.data_dir)


def load_spec(spec: SplitSpec, data_dir: Path | None) -> Split:
    """The split ``spec`` names, from the cache (made if missing)."""
    from recbench.data import load_split

    return load_split(
        spec.dataset, seed=spec.seed, validation=spec.validation, n_negatives=spec.n_negatives, data_dir=data_dir
    )


def load_splits(
    cells: Sequence[Cell], opts: RunOptions, reporter: Reporter, split_loader: SplitLoader | None
) -> dict[SplitSpec, Split]:
    """Each split the cells need, loaded once."""
    splits: dict[SplitSpec, Split] = {}
    for c in cells:
        if c.split not in splits:
            reporter.phase(None, f"loading {c.dataset}")
            splits[c.split] = split_loader(c.dataset) if split_loader is not None else load_spec(c.split, opts.data_dir)
    return splits


# ----------------------------------------------------------------------------- checks before any work


def check_device(device: str) -> None:
    """``device`` is cpu, cuda, cuda:N, mps or auto, and present on this machine (ConfigError)."""
    import re

    if device not in ("auto", "cpu", "mps") and not re.fullmatch(r"cuda(:\d+)?", device):
        raise ConfigError(f"unknown device {device!r}; valid: cpu, cuda, cuda:N, mps, auto")
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise ConfigError(f"--device {device}: no CUDA device is available here; valid: cpu, auto")
        index = int(device.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise ConfigError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    if device == "mps":
        import torch

        if not torch.backends.mps.is_available():
            raise ConfigError("--device mps: no MPS device is available here; valid: cpu, auto")


def check_run_options(out: Path, device: str) -> None:
    """Fail before any work (and before anything is written) on an unusable ``out`` or ``device``."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} exists and is not a folder")
    check_device(device)


def check_datasets(names: Sequence[str], data_dir: Path | None) -> None:
    """Unknown names fail before any work; known but unfetched ones are fetched."""
    from recbench.data import fetch, is_fetched, load_registry

    reg = load_registry()
    for n in names:
        if n not in reg:
            raise ConfigError(f"unknown dataset {n!r}; valid: {', '.join(reg)}")
    for n in names:
        if not is_fetched(n, data_dir):
            fetch(n, data_dir=data_dir)
