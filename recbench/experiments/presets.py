"""The experiments' presets: ``recbench/experiments.toml`` (each experiment's models, metrics and
grid, the per-epoch ``[curves]``, the paper's per-dataset settings) and the paper's Table 3
(``recbench/paper/table3.csv``), both data, not code; and the check that an experiment's models
are registered."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import pandas as pd

from recbench.models.base import ConfigError
from recbench.registry import MODELS

EXPERIMENTS = (
    "neg-ratio",
    "interaction",
    "aggregation",
    "embedding-size",
    "table2",
    "interaction-res",
    "aggregation-res",
)
MIN_SEEDS = 3


def load_presets() -> dict[str, Any]:
    """``recbench/experiments.toml``: the experiments' grids and the paper's settings."""
    with resources.files("recbench").joinpath("experiments.toml").open("rb") as f:
        return tomllib.load(f)


def paper_table3() -> pd.DataFrame:
    """The paper's Table 3 (OPECI against the negative sampling ratio), long format:
    dataset, metric, x (ratio), paper."""
    with resources.files("recbench.paper").joinpath("table3.csv").open() as f:
        wide = pd.read_csv(f)
    long = wide.melt(id_vars=["dataset", "metric"], var_name="x", value_name="paper")
    long["x"] = long["x"].astype(int)
    return long


@dataclass(frozen=True)
class Preset:
    """One experiment of ``experiments.toml``: its models and metrics, the grid (``param`` over
    ``values``; none for ``interaction``, ``aggregation``, ``table2``), the paper's file, the
    model the others are tested against (``reference``), and ``eval_every`` (a page of per-epoch
    curves, as ``interaction``'s, when set)."""

    name: str
    title: str
    models: list[str]
    metrics: list[str]
    param: str | None = None
    values: list[Any] = field(default_factory=list)
    eval_every: int = 0
    paper: str | None = None
    reference: str = "opeci"


def get_preset(name: str, presets: dict[str, Any] | None = None) -> Preset:
    """The preset of experiment ``name`` (a one-line error naming the valid ones)."""
    presets = presets or load_presets()
    table = presets.get("experiments", {}).get(name)
    if table is None:
        raise ConfigError(f"unknown experiment {name!r}; valid: {', '.join(presets.get('experiments', {}))}")
    return Preset(name=name, **table)


def check_models(p: Preset) -> None:
    """A one-line error naming the models the experiment needs that are not registered."""
    missing = [m for m in p.models if m not in MODELS]
    if missing:
        raise ConfigError(
            f"experiment {p.name!r} needs model{'s' if len(missing) > 1 else ''} not registered yet: "
            f"{', '.join(missing)} (registered: {', '.join(MODELS)})"
        )


def paper_settings(dataset: str, model: str, presets: dict[str, Any] | None = None) -> dict[str, Any]:
    """The paper's settings of ``model`` on ``dataset`` (``{}``: the model's defaults)."""
    presets = presets or load_presets()
    source = presets.get("share_settings", {}).get(model, model)
    return dict(presets.get("paper_settings", {}).get(dataset, {}).get(source, {}))
