"""An experiment's cells: the options of ``recbench experiment`` turned into typed cells (data
set × model × grid value, each with its resolved config), every check before any work; and what
the outputs say about them: each departure from the paper's settings in words (the caption's
notes, the figure's short notes) and the command that regenerates the page."""

from __future__ import annotations

import dataclasses
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recbench.experiments.presets import MIN_SEEDS, Preset, check_models, get_preset, load_presets, paper_settings
from recbench.models.base import ConfigError
from recbench.plan import resolve_config
from recbench.registry import MODELS


@dataclass(frozen=True)
class ExperimentOptions:
    """The options of ``recbench experiment`` (one field per flag)."""

    seeds: tuple[int, ...] = (0, 1, 2)
    epochs: int | None = None  # every model with an ``epochs`` field
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)  # --set
    values: tuple[str, ...] | None = None  # a subset of the grid (--values)
    protocols: tuple[str, ...] = ("sampled",)
    out: Path = Path("results")
    device: str = "cpu"
    split_seed: int = 0
    data_dir: Path | None = None
    force: bool = False
    no_fit: bool = False  # build the outputs from the records already there; list what is missing
    jobs: int = 1  # cells at a time, in worker processes
    threads: int = 1  # torch threads per worker
    checkpoint: bool = True
    command: str | None = None  # the exact command, for the README


@dataclass(frozen=True)
class Cell:
    """One (data set, model, grid value) of an experiment; run once per seed."""

    dataset: str
    model: str
    x: Any  # the grid value (None without a grid)
    overrides: dict[str, Any]  # what the experiment sets: paper settings, --epochs, --set, the grid value
    config: Any  # the resolved config (defaults with ``overrides`` applied in that order)


def _field_names(model: str) -> set[str]:
    """The config fields of ``model``."""
    return {f.name for f in dataclasses.fields(MODELS[model].Config)}


def _coerce_values(p: Preset, values: tuple[str, ...] | None) -> list[Any]:
    """``--values`` parsed as the grid parameter's type (the preset's grid without it)."""
    if values is None:
        return list(p.values)
    if p.param is None:
        raise ConfigError(f"--values: experiment {p.name!r} has no grid (only neg-ratio and embedding-size do)")
    out = []
    for v in values:
        cfg = resolve_config(p.models[0], sets={p.param: v})
        out.append(getattr(cfg, p.param))
    return out


def plan(name: str, datasets: list[str], opts: ExperimentOptions) -> tuple[Preset, list[Cell], list[str]]:
    """``(preset, cells, caption notes)``; every check before any work."""
    presets = load_presets()
    p = get_preset(name, presets)
    check_models(p)
    if not datasets:
        raise ConfigError("--dataset: give at least one dataset")
    for m, params in opts.overrides.items():
        if m not in p.models:
            raise ConfigError(
                f"--set names model {m!r}, which experiment {name!r} does not run ({', '.join(p.models)})"
            )
        if p.param is not None and p.param in params:
            raise ConfigError(f"--set {m}.{p.param}: experiment {name!r} varies {p.param} itself (use --values)")
        resolve_config(m, sets=params)
    if "sampled" not in opts.protocols:
        raise ConfigError("--protocol: experiments report the sampled protocol (the paper's); use sampled or both")
    if opts.epochs is not None and opts.epochs < 1:
        raise ConfigError(f"--epochs {opts.epochs}: need at least 1")
    values = _coerce_values(p, opts.values)
    cells = []
    for ds in datasets:
        for m in p.models:
            fields = _field_names(m)
            paper = {k: v for k, v in paper_settings(ds, m, presets).items() if k in fields}
            for x in values if p.param else [None]:
                sets = {**opts.overrides.get(m, {}), **({p.param: x} if p.param is not None else {})}
                config = resolve_config(m, paper=paper, epochs=opts.epochs, sets=sets)  # checked now, not half way
                epochs = {"epochs": opts.epochs} if opts.epochs is not None and "epochs" in fields else {}
                cells.append(Cell(ds, m, x, {**paper, **epochs, **sets}, config))
    return p, cells, caption_notes(p, datasets, opts, values, presets)


def caption_notes(
    p: Preset, datasets: list[str], opts: ExperimentOptions, values: list[Any], presets: dict[str, Any]
) -> list[str]:
    """Every departure from the paper's settings, in words."""
    notes = []
    if len(opts.seeds) < MIN_SEEDS:
        notes.append(
            f"{len(opts.seeds)} seed{'s' if len(opts.seeds) != 1 else ''} (fewer than the {MIN_SEEDS} planned"
            + ("; no error bars" if len(opts.seeds) == 1 else "")
            + ")."
        )
    if opts.epochs is not None:
        defaults = ", ".join(f"{m} {MODELS[m].Config().epochs}" for m in p.models if "epochs" in _field_names(m))
        notes.append(f"Epochs set to {opts.epochs} for every model (defaults: {defaults}).")
    if opts.overrides:
        sets = " ".join(f"{m}.{k}={v}" for m, kv in opts.overrides.items() for k, v in kv.items())
        notes.append(f"Changed from the paper's settings with --set: {sets}.")
    if p.param is not None and values != list(p.values):
        notes.append(
            f"Grid reduced to {p.param} ∈ {{{', '.join(map(str, values))}}} "
            f"(paper: {{{', '.join(map(str, p.values))}}})."
        )
    no_paper = [d for d in datasets if d not in presets.get("paper_settings", {})]
    if no_paper:
        notes.append(f"No paper settings for {', '.join(no_paper)}: every model at its config defaults there.")
    return notes


def short_notes(p: Preset, datasets: list[str], opts: ExperimentOptions) -> list[str]:
    """The departures from the paper's settings in a few words (for a figure's title)."""
    out = []
    if len(opts.seeds) < MIN_SEEDS:
        out.append(f"{len(opts.seeds)} seed{'s' if len(opts.seeds) != 1 else ''}")
    if opts.epochs is not None:
        out.append(f"epochs {opts.epochs}")
    by_setting: dict[str, list[str]] = {}
    for m, kv in opts.overrides.items():
        for k, v in kv.items():
            by_setting.setdefault(f"{k}={v}", []).append(m)
    if by_setting:
        out.append(
            "--set "
            + ", ".join(k if set(ms) >= set(p.models) else f"{k} ({', '.join(ms)})" for k, ms in by_setting.items())
        )
    if opts.values is not None:
        out.append(f"{p.param} ∈ {{{', '.join(opts.values)}}} only")
    presets = load_presets()
    no_paper = [d for d in datasets if d not in presets.get("paper_settings", {})]
    if no_paper:
        out.append(f"model defaults on {', '.join(no_paper)}")
    return out


def regenerate_command(p: Preset, datasets: list[str], opts: ExperimentOptions) -> str:
    """The command that regenerates the page: the invocation without ``--no-fit`` (which fits
    nothing, so cannot fill the cells the page lacks); finished cells are reused anyway."""
    if opts.command:
        return shlex.join([a for a in shlex.split(opts.command) if a != "--no-fit"])
    args = [
        "recbench",
        "experiment",
        p.name,
        "--dataset",
        ",".join(datasets),
        "--seeds",
        ",".join(map(str, opts.seeds)),
    ]
    if opts.epochs is not None:
        args += ["--epochs", str(opts.epochs)]
    for m, kv in opts.overrides.items():
        for k, v in kv.items():
            args += ["--set", f"{m}.{k}={v}"]
    if opts.values is not None:
        args += ["--values", ",".join(opts.values)]
    if opts.protocols != ("sampled",):
        args += ["--protocol", "both" if set(opts.protocols) == {"sampled", "full"} else opts.protocols[0]]
    if opts.split_seed:
        args += ["--split-seed", str(opts.split_seed)]
    args += ["--out", str(opts.out)]
    return shlex.join(args)
