"""From what a user asked for to typed cells: the one place where configurations are resolved.

Every front end (``run``, ``tune``, ``experiment``) turns its options into a list of
:class:`~recbench.runner.Cell` here, once, before any data is loaded; the runner only executes
cells. A cell's model configuration is built in one order of precedence, written once in
:func:`resolve_config`::

    code defaults  →  paper / preset settings  →  tuned values  →  --epochs  →  --set

Each layer is converted to the config's field types and every value is range-checked
(:func:`recbench.models.base.check_ranges`): a bad value is one line naming the field and the value.

The tuned-config store (``OUT/tuned/<dataset>/<model>.json``, written by ``recbench tune``) and
the search spaces it is checked against are read here too, so that the runner never imports the
tuner.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import replace
from importlib import resources
from pathlib import Path
from typing import Any

from recbench.executors import execute_local
from recbench.models.base import ConfigError, apply_overrides, check_ranges, config_from_dict
from recbench.registry import get_model_class
from recbench.results import Record
from recbench.runner import (
    Cell,
    Reporter,
    RunOptions,
    SplitLoader,
    SplitSpec,
    load_splits,
)

PRECEDENCE = ("defaults", "paper", "tuned", "epochs", "set")
"""The layers of :func:`resolve_config`, later ones winning parameter by parameter."""


def resolve_config(
    model: str,
    *,
    paper: Mapping[str, Any] | None = None,
    tuned: Mapping[str, Any] | None = None,
    epochs: int | None = None,
    sets: Mapping[str, Any] | None = None,
) -> Any:
    """The model's frozen config: its code defaults with each layer of :data:`PRECEDENCE`
    applied in order (values converted to the field's type), then range-checked."""
    cls = get_model_class(model)
    config = cls.Config()
    has_epochs = hasattr(config, "epochs")
    layers = (paper, tuned, {"epochs": epochs} if epochs is not None and has_epochs else None, sets)
    for layer in layers:
        if layer:
            config = apply_overrides(config, dict(layer), model)
    check_ranges(config, model)
    return config


# ----------------------------------------------------------------------------- search spaces, tuned configs


def load_search_spaces(path: Path | None = None) -> dict[str, Any]:
    """The search-space data file (the packaged one by default)."""
    if path is None:
        with resources.files("recbench").joinpath("search_spaces.toml").open("rb") as f:
            return tomllib.load(f)
    with open(path, "rb") as f:
        return tomllib.load(f)


def default_space(model: str, spaces: dict[str, Any] | None = None) -> dict[str, list[Any]]:
    """The model's default space (``extends`` followed), ``{}`` when it has nothing to tune."""
    spaces = spaces or load_search_spaces()
    seen: set[str] = set()
    name = model
    chain = []
    while name and name not in seen:
        seen.add(name)
        table = spaces.get(name, {})
        chain.append(table)
        name = table.get("extends")
    merged: dict[str, list[Any]] = {}
    for table in reversed(chain):
        merged.update({k: list(v) for k, v in table.items() if k != "extends"})
    return merged


def tuned_path(out: Path, dataset: str, model: str) -> Path:
    return out / "tuned" / dataset / f"{model}.json"


def load_tuned(out: Path, dataset: str, model: str) -> dict[str, Any] | None:
    path = tuned_path(out, dataset, model)
    if not path.exists():
        return None
    try:
        doc = json.loads(path.read_text())
        return doc if isinstance(doc, dict) and isinstance(doc.get("best"), dict) else None
    except (OSError, json.JSONDecodeError):
        raise ConfigError(f"{path}: not a valid tuned-config file") from None


def tuned_values(tuned_dir: Path, dataset: str, model: str) -> dict[str, Any]:
    """The tuned layer of one (dataset, model). A model with nothing to tune (empty default
    space) needs no file; any other without one is an error naming the command that makes it."""
    get_model_class(model)
    doc = load_tuned(tuned_dir, dataset, model)
    if doc is None:
        if default_space(model):
            raise ConfigError(
                f"no tuned config for {dataset}/{model} under {tuned_dir / 'tuned'}: run "
                f"`recbench tune --dataset {dataset} --model {model} --out {tuned_dir}` first"
            )
        return {}
    return dict(doc["best"].get("overrides", doc["best"].get("params", {})))


def tuned_overrides(
    tuned_dir: Path, dataset: str, models: list[str], explicit: dict[str, dict[str, Any]] | None = None
) -> dict[str, dict[str, Any]]:
    """Per-model overrides for ``dataset``: the tuned values with ``explicit`` (``--set``)
    winning parameter by parameter (models left with nothing to override are omitted)."""
    out = {}
    for m in models:
        params = {**tuned_values(tuned_dir, dataset, m), **(explicit or {}).get(m, {})}
        if params:
            out[m] = params
    return out


# ----------------------------------------------------------------------------- recbench run


def validate_overrides(models: Sequence[str], overrides: Mapping[str, Mapping[str, Any]]) -> None:
    """Fail before any work on an unknown model or parameter, an ill-typed or out-of-range value."""
    for name, params in overrides.items():
        if name not in models:
            raise ConfigError(f"--set names model {name!r}, which is not in --models ({', '.join(models)})")
        resolve_config(name, sets=params)


def plan_run(datasets: Sequence[str], models: Sequence[str], opts: RunOptions) -> list[Cell]:
    """The cells of ``recbench run``: dataset × split seed × model × seed, in that order, each config
    resolved (with ``--tuned``: per data set) and checked before anything runs."""
    validate_overrides(models, opts.overrides)
    cells = []
    for ds in datasets:
        configs = {}
        for m in models:
            tuned = tuned_values(opts.tuned, ds, m) if opts.tuned is not None else None
            tags = {**opts.tags, "tuned": True} if tuned else dict(opts.tags)  # only where applied
            configs[m] = (resolve_config(m, tuned=tuned, sets=opts.overrides.get(m)), tags)
        for split_seed in opts.split_seeds or (opts.split_seed,):
            split = SplitSpec(ds, split_seed, opts.validation, opts.n_negatives)
            for m in models:
                config, tags = configs[m]
                ref = getattr(get_model_class(m), "ref", None)  # a model from outside the package
                for seed in opts.seeds:
                    cells.append(
                        Cell(split, m, config, seed, opts.protocols, opts.eval_every, opts.early_stopping, tags, ref)
                    )
    return cells


def with_seeds(cells: Sequence[Cell], seeds: Sequence[int]) -> list[Cell]:
    """Each cell once per model seed (cell order kept, seeds innermost)."""
    return [replace(c, seed=s) for c in cells for s in seeds]


def execute(
    cells: Sequence[Cell],
    opts: RunOptions,
    reporter: Reporter | None = None,
    split_loader: SplitLoader | None = None,
) -> list[Record]:
    """Run every cell (records written as each finishes); returns the records in cell order:
    on this machine (``opts.jobs`` at a time) or, with ``opts.executor == "ray"``, on Ray."""
    reporter = reporter or Reporter()
    splits = load_splits(cells, opts, reporter, split_loader)
    if opts.executor == "ray":
        from recbench.ray_executor import execute_ray

        return execute_ray(cells, splits, opts, reporter)
    return execute_local(cells, splits, opts, reporter)


def run_grid(
    datasets: Sequence[str],
    models: Sequence[str],
    opts: RunOptions,
    reporter: Reporter | None = None,
    split_loader: SplitLoader | None = None,
) -> list[Record]:
    """``recbench run`` as a library call: plan every (dataset, model, seed) cell, then execute;
    records are written as each finishes."""
    return execute(plan_run(datasets, models, opts), opts, reporter, split_loader)


def cell_from_record(data: Mapping[str, Any]) -> Cell:
    """The exact cell a record describes (config, split, seed, schedule, tags)."""
    model = data["model"]
    ref = data.get("model_ref")
    config = config_from_dict(get_model_class(ref or model).Config, data["config"], model)
    check_ranges(config, model)
    info = data.get("split_info", {})
    split = SplitSpec(
        data["dataset"], int(info.get("seed", 0)), bool(info.get("validation", False)), int(info.get("n_negatives", 99))
    )
    return Cell(
        split,
        model,
        config,
        int(data["seed"]),
        tuple(data.get("protocols") or ["sampled"]),
        int(data.get("eval_every", 0)),
        int(data.get("early_stopping", 0)),
        dict(data.get("tags", {})),
        ref,
    )


def parse_overrides(items: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``["ncf.learning_rate=0.005", ...]`` → ``{"ncf": {"learning_rate": "0.005"}}``."""
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        lhs, eq, value = item.partition("=")
        model, dot, param = lhs.partition(".")
        if not eq or not dot or not model or not param:
            raise ConfigError(f"--set {item!r}: expected MODEL.PARAM=VALUE, e.g. ncf.learning_rate=0.005")
        out.setdefault(model.strip().lower(), {})[param.strip()] = value.strip()
    return out


def estimate_seconds(cell: Cell, records: Sequence[Record], cpu: str) -> tuple[float, str] | None:
    """``(seconds, CPU measured on)``: the expected wall time of ``cell`` from earlier records of
    the same model on the same data set, those made on this CPU model if any (else on another,
    which the second item names): the median of their s/epoch times the cell's epochs, plus their
    median evaluation time (their fit time when the model has no epochs). None without a record."""
    import numpy as np

    mine = [r for r in records if r.status == "ok" and r["model"] == cell.model and r["dataset"] == cell.dataset]
    same = [r for r in mine if (r.data.get("hardware") or {}).get("cpu") == cpu] or mine
    if not same:
        return None
    measured_on = (same[0].data.get("hardware") or {}).get("cpu", "?")
    timing = [r.data.get("timing") or {} for r in same]
    evals = float(np.median([sum(v for k, v in t.items() if k.startswith("eval_")) for t in timing]))
    per_epoch = [t["s_per_epoch"] for t in timing if "s_per_epoch" in t]
    epochs = getattr(cell.config, "epochs", None)
    if per_epoch and epochs:
        return float(np.median(per_epoch)) * int(epochs) + evals, measured_on
    return float(np.median([t.get("fit_s", 0.0) for t in timing])) + evals, measured_on
