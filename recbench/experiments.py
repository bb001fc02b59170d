"""``recbench experiment NAME``: the paper's table and figures, one command each.

``neg-ratio`` (Table 3), ``interaction`` (Figure 2), ``aggregation`` (Figure 3),
``embedding-size`` (Figure 4) and ``table2`` (the main comparison). The presets (models, grids,
the paper's per-dataset settings) are data in ``recbench/experiments.toml``; the paper's Table 3
is ``recbench/paper/table3.csv``.

Every cell is an ordinary result record (tagged ``{"experiment": NAME}``) under ``OUT/records``,
so an experiment resumes where it stopped and a grid can accumulate over several runs; the tag
labels a record without being part of its key, so one fit serves every experiment (and plain
``recbench run``) that asks for the same cell, and the record lists the experiments that reused
it (``used_by``). OPECI-family cells record a per-epoch curve everywhere (``[curves]`` in the
presets) so that they are the same cell in every experiment. The
tables and figures are rebuilt from the records each time. Outputs, under
``OUT/experiments/NAME/``: ``table.md`` and ``table.csv``, ``figure.png`` and ``figure.svg``,
``report.html`` (the table and figure on one page) and ``README.md`` with the exact command.
Anything that departs from the paper's settings (``--epochs``, ``--set``, ``--values``, fewer
than three seeds, a dataset without paper settings) is written in the caption and the README,
never silently.
"""

from __future__ import annotations

import dataclasses
import html
import json
import shlex
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from tabulate import tabulate

from recbench import figures, report
from recbench.data.types import Split
from recbench.models.base import ConfigError
from recbench.plan import execute, resolve_config
from recbench.registry import MODELS
from recbench.results import Record
from recbench.runner import Cell as RunCell
from recbench.runner import (
    Reporter,
    RunOptions,
    SplitSpec,
    existing_record,
    load_splits,
    mark_used,
)

EXPERIMENTS = ("neg-ratio", "interaction", "aggregation", "embedding-size", "table2")
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
    name: str
    title: str
    models: list[str]
    metrics: list[str]
    param: str | None = None
    values: list[Any] = field(default_factory=list)
    eval_every: int = 0
    paper: str | None = None


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


@dataclass(frozen=True)
class ExperimentOptions:
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


# ----------------------------------------------------------------------------- running


@dataclass
class ExperimentResult:
    name: str
    folder: Path
    files: list[Path]
    records: list[Record]
    notes: list[str]
    failed: list[str]


def run_experiment(
    name: str,
    datasets: list[str],
    opts: ExperimentOptions,
    reporter: Reporter | None = None,
    split_loader: Callable[[str], Split] | None = None,
) -> ExperimentResult:
    """Run (or resume) every cell, then write the table, figure, HTML page and README."""
    p, cells, notes = plan(name, datasets, opts)
    run_opts = RunOptions(
        seeds=opts.seeds,
        protocols=opts.protocols,
        out=opts.out,
        force=opts.force,
        device=opts.device,
        split_seed=opts.split_seed,
        data_dir=opts.data_dir,
        jobs=opts.jobs,
        threads=opts.threads,
        checkpoint=opts.checkpoint,
    )
    curves = load_presets().get("curves", {})
    spec = {ds: SplitSpec(ds, opts.split_seed) for ds in datasets}
    run_cells = []
    for c in cells:
        every = max(p.eval_every, curves.get("eval_every", 0) if c.model in curves.get("models", []) else 0)
        for seed in opts.seeds:
            run_cells.append(
                RunCell(spec[c.dataset], c.model, c.config, seed, opts.protocols, every, tags={"experiment": name})
            )
    records: list[Record] = []
    missing: list[str] = []
    if opts.no_fit:
        splits = load_splits(run_cells, run_opts, Reporter(), split_loader)
        for c, rc in zip([c for c in cells for _ in opts.seeds], run_cells, strict=True):
            rec = existing_record(splits[rc.split], rc, run_opts)
            if rec is None:
                what = c.model + (f" {p.param}={c.x}" if p.param is not None else "")
                missing.append(f"{c.dataset} {what} seed {rc.seed}")
            else:
                records.append(mark_used(run_opts, rec, name))
    else:
        records = execute(run_cells, run_opts, reporter, split_loader)
    if missing:
        n = len(cells) * len(opts.seeds)
        notes = [*notes, f"Not run yet ({len(missing)} of {n} fits; built with --no-fit): {'; '.join(missing)}."]
    return write_outputs(p, datasets, records, notes, opts)


def _command(p: Preset, datasets: list[str], opts: ExperimentOptions) -> str:
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


def _fmt(mean: float, std: float) -> str:
    """``mean ± std`` (the mean alone with one seed; ``—`` without a value)."""
    if np.isnan(mean):
        return "—"
    return f"{mean:.3f}" + ("" if np.isnan(std) else f" ± {std:.3f}")


@dataclass(frozen=True)
class Spread:
    """The fewest and most seeds of an experiment's cells, and what that lets a figure draw."""

    lo: int
    hi: int

    @property
    def seeds(self) -> str:
        """``"3 seeds"``, ``"1 seed"``, ``"1–3 seeds"``."""
        n = f"{self.lo}" if self.lo == self.hi else f"{self.lo}–{self.hi}"
        return f"{n} seed{'s' if self.hi != 1 else ''}"

    @property
    def summary(self) -> str:
        """What a table cell holds: ``"mean ± std over 3 seeds"`` or ``"a single seed"``."""
        return "a single seed (no std)" if self.hi < 2 else f"mean ± std over {self.seeds}"

    def drawn(self, what: str = "error bars") -> str:
        """What the figure draws around a mean (``what``: error bars, bands), exactly."""
        if self.hi < 2:
            return f"single seed: no {what}"
        if self.lo < 2:
            return f"{what}: ± 1 std over {self.seeds}, where a cell has 2 or more (none with a single seed)"
        return f"{what}: ± 1 std over {self.seeds}"


@dataclass(frozen=True)
class Part:
    """A paragraph or table of an experiment's page, as markdown and as HTML, both built from the
    same data (never HTML parsed back out of markdown)."""

    md: str
    html: str


def _para(text: str) -> Part:
    """A paragraph of plain text."""
    return Part(text, f"<p>{html.escape(text)}</p>")


def _table(df: pd.DataFrame, html_cells: pd.DataFrame | None = None) -> Part:
    """``df`` as a markdown table and an HTML table; ``html_cells`` (same shape) holds cells
    already in HTML (escaped, with their markup), else ``df``'s cells are escaped."""
    cells = html_cells if html_cells is not None else df.map(lambda v: html.escape(str(v)))
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    body = "".join("<tr>" + "".join(f"<td>{v}</td>" for v in row) + "</tr>" for row in cells.itertuples(index=False))
    return Part(_md(df), f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")


def _pivot_part(summary: pd.DataFrame, paper: bool = False) -> Part:
    """The sampled protocol's models × (data set, metric) table; best per row in bold."""
    md = report.pivot(summary, "sampled", paper, style=report.MD_STYLE).reset_index()
    cells = report.pivot(
        summary, "sampled", paper, style={**report.HTML_STYLE, "second": None, "mark": "&dagger;"}
    ).reset_index()
    for c in ("Dataset", "Metric"):
        cells[c] = cells[c].map(lambda v: html.escape(str(v)))
    return _table(md, cells)


def _default_value(p: Preset) -> Any:
    """The grid parameter's value in the model's default config."""
    return getattr(MODELS[p.models[0]].Config(), p.param) if p.param is not None else None


def _paper_points(p: Preset, datasets: list[str], presets: dict[str, Any]) -> tuple[pd.DataFrame | None, str]:
    """The paper's numbers for the grid's figure: ``(frame of dataset, metric, x, paper; label)``.
    neg-ratio: every point of Table 3. embedding-size: the paper draws Figure 4 but publishes no
    numbers for it; its one number per data set is Table 2's OPECI at the paper's d."""
    if p.paper == "table3.csv":
        return paper_table3(), "paper (Table 3)"
    if p.param == "embedding_size":
        t2 = report.paper_table2()
        rows = []
        for ds in datasets:
            d = paper_settings(ds, "opeci", presets).get("embedding_size")
            for _, r in t2[(t2["dataset"] == ds) & (t2["model"] == "opeci")].iterrows():
                if d is not None:
                    rows.append({"dataset": ds, "metric": r["metric"], "x": d, "paper": r["paper"]})
        return pd.DataFrame(rows, columns=["dataset", "metric", "x", "paper"]), "paper (Table 2, at the paper's d)"
    return None, "paper"


def _param_table(p: Preset, rep: report.Report, paper: pd.DataFrame | None) -> tuple[Part, pd.DataFrame]:
    """(table, tidy frame) for a one-parameter grid (neg-ratio, embedding-size): columns in
    numeric order, the model's default labelled, the paper's number in parentheses at every
    point the paper has (a grid value not run yet shows ``—`` and the paper's number)."""
    s = rep.summary[rep.summary["protocol"] == "sampled"].copy()
    s["x"] = pd.to_numeric(s["model"]).astype(float)
    tidy = s[["dataset", "metric", "x", "n_seeds", "mean", "std", "ci95_low", "ci95_high"]].copy()
    if paper is not None and not paper.empty:
        shown = tidy[["dataset", "metric"]].drop_duplicates()
        pp = paper.assign(x=paper["x"].astype(float)).merge(shown, on=["dataset", "metric"])
        tidy = tidy.merge(pp, on=["dataset", "metric", "x"], how="outer")
    else:
        tidy["paper"] = np.nan
    tidy = tidy.sort_values(["dataset", "metric", "x"], kind="stable").reset_index(drop=True)
    default = _default_value(p)
    col = {x: f"{p.param}={x:g}" + (" (default)" if x == default else "") for x in sorted(set(tidy["x"]))}
    md_rows, html_rows = [], []
    for (ds, met), g in tidy.groupby(["dataset", "metric"], sort=False):
        label = {"Dataset": figures.dataset_label(ds), "Metric": figures.metric_label(met)}
        md_row, html_row = dict(label), {k: html.escape(v) for k, v in label.items()}
        best = g["mean"].max()
        for _, r in g.iterrows():
            ours, bold = _fmt(r["mean"], r["std"]), bool(not np.isnan(r["mean"]) and np.isclose(r["mean"], best))
            extra = "" if np.isnan(r["paper"]) else f" (paper {r['paper']:.3f})"
            md_row[col[r["x"]]] = (f"**{ours}**" if bold else ours) + extra
            html_row[col[r["x"]]] = (f"<b>{html.escape(ours)}</b>" if bold else html.escape(ours)) + html.escape(extra)
        md_rows.append(md_row)
        html_rows.append(html_row)
    columns = ["Dataset", "Metric", *col.values()]
    md = pd.DataFrame(md_rows).reindex(columns=columns).fillna("—")
    cells = pd.DataFrame(html_rows).reindex(columns=columns).fillna("—")
    return _table(md, cells), tidy


def _default_note(p: Preset, datasets: list[str], presets: dict[str, Any]) -> str:
    """Which grid value is the default, and where the paper's setting differs from it."""
    default = _default_value(p)
    differ = [
        f"{figures.dataset_label(d)} {v}"
        for d in datasets
        if (v := paper_settings(d, p.models[0], presets).get(p.param, default)) != default
    ]
    return f"(default): OPECI's default {p.param} = {default}" + (
        f"; the paper's setting differs on {', '.join(differ)}." if differ else "."
    )


def _legend_below(fig: Figure, axes: np.ndarray) -> None:
    """One legend under the panels, each label once."""
    seen: dict[str, Any] = {}
    for ax in axes.ravel():
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            seen.setdefault(lab, h)
    fig.legend(
        list(seen.values()), list(seen), loc="outside lower center", ncol=min(len(seen), 4), fontsize=9, frameon=False
    )


def _param_figure(tidy: pd.DataFrame, xlabel: str, spread: Spread, logx: bool, paper_label: str) -> Figure:
    """Rows = metrics, columns = data sets: our mean against the grid value, ± 1 std error bars
    only where a point has 2 or more seeds; the paper's numbers (every point it has) dashed."""
    datasets = list(dict.fromkeys(tidy["dataset"]))
    metrics = list(dict.fromkeys(tidy["metric"]))
    fig, axes = figures.new_figure(len(metrics), len(datasets), panel=(3.9, 3.0))
    ours_label = "ours (single seed)" if spread.hi < 2 else f"ours (mean ± 1 std over {spread.seeds})"
    for i, met in enumerate(metrics):
        for j, ds in enumerate(datasets):
            ax = axes[i, j]
            d = tidy[(tidy["dataset"] == ds) & (tidy["metric"] == met)].sort_values("x")
            o = d[d["mean"].notna()]
            ax.plot(o["x"], o["mean"], marker="o", linewidth=1.6, color="tab:blue", label=ours_label)
            bars = o[o["std"].notna() & (o["n_seeds"] >= 2)]
            if len(bars):
                ax.errorbar(
                    bars["x"], bars["mean"], yerr=bars["std"], fmt="none", capsize=3, color="tab:blue", linewidth=1.2
                )
            pp = d[d["paper"].notna()]
            if len(pp):
                ax.plot(
                    pp["x"],
                    pp["paper"],
                    marker="s",
                    linestyle="--" if len(pp) > 1 else "none",
                    color="black",
                    linewidth=1.2,
                    label=paper_label,
                )
            if logx:
                ax.set_xscale("log", base=2)
            xs = sorted(set(d["x"]))
            ax.set_xticks(xs, [f"{v:g}" for v in xs])
            ax.minorticks_off()
            if len(xs) == 1:
                ax.set_xlim(xs[0] / 2 if logx else xs[0] - 1, xs[0] * 2 if logx else xs[0] + 1)
            ax.set_title(figures.dataset_label(ds), fontsize=10)
            ax.set_xlabel(xlabel, fontsize=9)
            ax.set_ylabel(f"{figures.metric_label(met)} (sampled)", fontsize=9)
    _legend_below(fig, axes)
    return fig


def _epoch_figure(curves: pd.DataFrame, metric: str) -> Figure:
    """One panel per data set: ``metric`` after each epoch per model, the mean over seeds with a
    ± 1 std band where an epoch has 2 or more seeds; the x axis spans whole epochs (a one-epoch
    fit is a marker at epoch 1, not a lone point on a 0.96–1.04 axis) and the y axis starts at 0."""
    datasets = list(dict.fromkeys(curves["dataset"]))
    models = list(dict.fromkeys(curves["model"]))
    fig, axes = figures.new_figure(1, len(datasets), panel=(4.4, 3.3))
    last = int(curves["epoch"].max())
    for ax, ds in zip(axes[0], datasets, strict=True):
        top = 0.05
        for mod in models:
            d = curves[(curves["dataset"] == ds) & (curves["model"] == mod)]
            if d.empty:
                continue
            g = d.groupby("epoch")[metric].agg(["mean", "std", "count"]).reset_index()
            ax.plot(
                g["epoch"],
                g["mean"],
                marker="o",
                markersize=3 if len(g) > 1 else 7,
                color=figures.model_colour(mod),
                label=mod,
                linewidth=1.6,
            )
            band = g[g["count"] > 1]
            if len(band):
                ax.fill_between(
                    band["epoch"],
                    band["mean"] - band["std"],
                    band["mean"] + band["std"],
                    color=figures.model_colour(mod),
                    alpha=0.2,
                    linewidth=0,
                )
            top = max(top, float((g["mean"] + g["std"].fillna(0)).max()))
        ax.set_xlim(0.5, last + 0.5)
        ax.set_ylim(0, min(1.0, top * 1.15))
        ax.set_xticks(range(1, last + 1, max(1, (last + 9) // 10)))  # whole epochs only
        ax.set_title(figures.dataset_label(ds), fontsize=10)
        ax.set_xlabel("epoch", fontsize=9)
        ax.set_ylabel(f"{figures.metric_label(metric)} (test, sampled)", fontsize=9)
    _legend_below(fig, axes)
    return fig


def _curves(records: list[Record]) -> pd.DataFrame:
    """Per-epoch test metrics of every record: dataset, model, seed, epoch, hr@10, ndcg@10."""
    rows = []
    for r in records:
        if r.status != "ok":
            continue
        for h in r.data.get("history", []):
            if "test" in h and "epoch" in h:
                rows.append(
                    {"dataset": r["dataset"], "model": r["model"], "seed": r["seed"], "epoch": h["epoch"], **h["test"]}
                )
    return pd.DataFrame(rows, columns=["dataset", "model", "seed", "epoch", "hr@10", "ndcg@10"])


def _curve_table(curves: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    """Each model after its last epoch (mean ± std over seeds). No epoch is chosen on the test
    split: the curve's maximum over epochs would be a selection on test (the figure shows it)."""
    rows = []
    for (ds, mod), g in curves.groupby(["dataset", "model"], sort=False):
        last = int(g["epoch"].max())
        at = g[g["epoch"] == last]
        row = {"Dataset": figures.dataset_label(ds), "Model": mod, "Epochs": last}
        for met in metrics:
            row[f"{figures.metric_label(met)} at the last epoch"] = _fmt(at[met].mean(), at[met].std())
        rows.append(row)
    return pd.DataFrame(rows)


def _report_parts(rep: report.Report) -> list[Part]:
    """The ``table2`` page: the paper's layout, the paper's values, the other configurations,
    then the per-protocol tables, statistics, protocol agreement and cost (as ``recbench report``)."""
    parts: list[Part] = []
    ours, paper, others, chosen = report.table2_view(rep)
    if not ours.empty:
        shown = "; ".join(f"{m} = {lab}" for m, lab in chosen.items() if lab != m)
        parts += [
            _para(
                "Table 2 (sampled protocol), as the paper lays it out. Mean ± std over model seeds (the "
                "number of seeds in parentheses); one configuration per model" + (f" ({shown})" if shown else "") + "."
            ),
            _table(ours),
            _para("The paper's Table 2 (HR@10 / NDCG@10, sampled protocol):"),
            _table(paper),
        ]
        if not others.empty:
            parts += [_para("Other configurations and variants (sampled protocol):"), _table(others)]
    for proto in rep.protocols:
        md = report.pivot(rep.summary, proto, proto == "sampled", style=report.MD_STYLE).reset_index()
        cells = report.pivot(
            rep.summary, proto, proto == "sampled", style={**report.HTML_STYLE, "second": None, "mark": "&dagger;"}
        ).reset_index()
        for c in ("Dataset", "Metric"):
            cells[c] = cells[c].map(lambda v: html.escape(str(v)))
        parts += [
            _para(f"{report.proto_title(rep, proto)}. {report.legend(rep, proto)} Best per row in bold."),
            _table(md, cells),
        ]
    for proto in rep.protocols:
        parts += [
            _para(f"Statistics, {proto} protocol: 95 % confidence interval (t, over seeds) and paired tests."),
            _table(report.stats_table(rep, proto)),
        ]
    if not rep.agreement.empty:
        parts += [
            _para(
                "Sampled against full ranking: each model's score and rank under both protocols; Kendall τ "
                "between the two orderings of the models (1: same order)."
            ),
            _table(report.side_by_side(rep)),
            _table(report.agreement_table(rep)),
        ]
        parts += [_para(f"Warning: {w}") for w in rep.warnings]
    if not rep.cost.empty:
        parts += [_para(f"Cost. {report.COST_NOTE}"), _table(report.cost_table(rep))]
    return parts


def write_outputs(
    p: Preset, datasets: list[str], records: list[Record], notes: list[str], opts: ExperimentOptions
) -> ExperimentResult:
    """The table (markdown, CSV), figure (PNG, SVG), HTML page and README, from ``records``."""
    folder = opts.out / "experiments" / p.name
    folder.mkdir(parents=True, exist_ok=True)
    ok = [r for r in records if r.status == "ok"]
    failed = report.failures(records)
    if not ok:
        raise ConfigError(f"experiment {p.name!r}: every cell failed ({failed[0] if failed else 'no cells'})")
    cell_of = lambda r: (r["dataset"], r["model"], json.dumps(r["config"], sort_keys=True))  # noqa: E731
    counts: dict[tuple[str, str, str], int] = {}
    for r in ok:
        counts[cell_of(r)] = counts.get(cell_of(r), 0) + 1
    spread = Spread(min(counts.values()), max(counts.values()))
    negs = sorted({int((r.data.get("split_info") or {}).get("n_negatives", 99)) for r in ok})
    cands = " / ".join(str(n + 1) for n in negs) + " candidates per user"
    title = p.title
    presets = load_presets()
    files: list[Path] = []
    parts: list[Part]

    if p.param is not None:
        rep = report.build_report(None, p.metrics, paper=False, records=ok, label=lambda r: str(r["config"][p.param]))
        paper, paper_label = _paper_points(p, datasets, presets)
        table, tidy = _param_table(p, rep, paper)
        xlabel = {
            "n_negatives": "negative sampling ratio (negatives per positive)",
            "embedding_size": "embedding size d",
        }.get(p.param, p.param)
        fig_err = spread.drawn("error bars")
        fig = _param_figure(tidy, xlabel, spread, logx=p.param == "embedding_size", paper_label=paper_label)
        parts = [table]
        csv = tidy
        if p.paper == "table3.csv":
            paper_text = "; the paper's Table 3 in parentheses (every point it has, also where ours is not run)."
        elif paper is not None and not paper.empty:
            paper_text = (
                "; in parentheses the paper's Table 2 value of OPECI at the paper's d (the paper "
                "publishes Figure 4 as a plot only)."
            )
        else:
            paper_text = "."
        caption = (
            f"{title}. OPECI, sampled protocol ({cands}), {spread.summary}; best per row in bold"
            f"{paper_text} {_default_note(p, datasets, presets)}"
        )
    elif p.name == "interaction":
        rep = report.build_report(None, p.metrics, paper=False, records=ok, label=report.base_label, reference="opeci")
        curves = _curves(ok)
        if curves.empty:
            raise ConfigError("experiment 'interaction': the records hold no per-epoch test metrics (eval_every=1)")
        fig_err = spread.drawn("bands")
        fig = _epoch_figure(curves, "ndcg@10")
        parts = [
            _table(_curve_table(curves, p.metrics)),
            _para("Final models (after the last epoch):"),
            _pivot_part(rep.summary),
            _para(report.legend(rep, "sampled")),
        ]
        csv = curves.groupby(["dataset", "model", "epoch"])[["hr@10", "ndcg@10"]].agg(["mean", "std", "count"])
        csv.columns = [f"{a}_{b}" for a, b in csv.columns]
        csv = csv.reset_index()
        curves.to_csv(folder / "curves_per_seed.csv", index=False)
        files.append(folder / "curves_per_seed.csv")
        caption = (
            f"{title}. NDCG@10 on the test split (sampled protocol) after each epoch, {spread.summary}; "
            "the table gives each model after its last epoch (no epoch is chosen on the test split)."
        )
    else:
        paper_flag = p.name == "table2"
        rep = report.build_report(
            None, p.metrics, paper=paper_flag, records=ok, label=report.base_label, reference="opeci"
        )
        models = [m for m in p.models if m in set(rep.summary["model"])]
        fig = figures.summary_bars(
            rep.summary, "sampled", models, title, paper_note="white diamonds: the paper's Table 2"
        )
        has_paper = rep.summary["paper"].notna().any()
        fig_err = spread.drawn("error bars") + ("; white diamonds: the paper's Table 2" if has_paper else "")
        if p.name == "table2":
            parts = _report_parts(rep)
        else:
            parts = [_pivot_part(rep.summary), _para(report.legend(rep, "sampled") + " Best per row in bold.")]
        csv = rep.summary
        caption = f"{title}. Sampled protocol ({cands}); {spread.summary}."

    caption_full = " ".join([caption, *notes])
    table_md = "\n\n".join(pt.md for pt in parts)
    table_text = f"**{caption_full}**\n\n{table_md}\n"
    if failed:
        table_text += "\nFailed cells:\n" + "\n".join(f"- {f}" for f in failed) + "\n"
        items = "".join(f"<li>{html.escape(f)}</li>" for f in failed)
        parts = [*parts, Part("", f"<p>Failed cells:</p><ul>{items}</ul>")]
    (folder / "table.md").write_text(table_text)
    csv.to_csv(folder / "table.csv", index=False)
    files += [folder / "table.md", folder / "table.csv"]
    short = short_notes(p, datasets, opts)
    figures.retitle(
        fig, f"{title}\n({fig_err})", ("Reduced/changed settings (see README): " + "; ".join(short)) if short else ""
    )
    files += figures.save(fig, folder / "figure")
    files.append(_write_html(folder, p, caption_full, parts, fig))
    files.append(_write_readme(folder, p, datasets, opts, caption_full, table_text))
    return ExperimentResult(p.name, folder, files, records, notes, failed)


def _md(df: pd.DataFrame) -> str:
    """``df`` as a GitHub markdown table, cells verbatim."""
    return tabulate(df, headers="keys", tablefmt="github", showindex=False, disable_numparse=True)


def _write_html(folder: Path, p: Preset, caption: str, parts: list[Part], fig: Figure) -> Path:
    """One self-contained page: caption, tables (built from the data) and the figure (base64 PNG)."""
    style = (
        "body{font-family:sans-serif;margin:2em;max-width:1400px}table{border-collapse:collapse;margin:1em 0}"
        "td,th{padding:4px 10px;border-bottom:1px solid #ccc;text-align:right}img{max-width:100%}"
    )
    body = [f"<h1>{html.escape(p.title)}</h1>", f"<p>{html.escape(caption)}</p>", *(pt.html for pt in parts)]
    body.append(
        f"<figure><img alt='{html.escape(p.title)}' src='data:image/png;base64,{figures.png_base64(fig)}'/>"
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )
    path = folder / "report.html"
    path.write_text(
        f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{html.escape(p.title)}</title>"
        f"<style>{style}</style></head><body>{''.join(body)}</body></html>\n"
    )
    return path


def _write_readme(
    folder: Path, p: Preset, datasets: list[str], opts: ExperimentOptions, caption: str, table_text: str
) -> Path:
    """README.md: the exact command, the settings, the figure and the table."""
    cmd = _command(p, datasets, opts)
    lines = [
        f"# {p.title}",
        "",
        "Regenerate (fits every cell not run yet and reuses the result records under "
        f"`{opts.out}/records`; finished cells are not redone):",
        "",
        "```bash",
        cmd,
        "```",
        "",
        f"- models: {', '.join(p.models)}"
        + (f"; {p.param} ∈ {{{', '.join(map(str, p.values))}}} in the preset" if p.param else ""),
        f"- datasets: {', '.join(datasets)}; seeds: {', '.join(map(str, opts.seeds))}; "
        f"protocol(s): {', '.join(opts.protocols)}",
        f"- the paper's per-dataset settings: {_settings_text(datasets)}",
        f"- written {datetime.now(UTC).isoformat(timespec='seconds')}",
        "",
        "Files: `table.md`, `table.csv`, `figure.png`, `figure.svg`, `report.html`"
        + (" and `curves_per_seed.csv`" if p.name == "interaction" else "")
        + ".",
        "",
        "![figure](figure.png)",
        "",
        table_text,
    ]
    path = folder / "README.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def _settings_text(datasets: list[str]) -> str:
    """The paper's settings of each data set, in words."""
    presets = load_presets()
    parts = []
    for d in datasets:
        s = presets.get("paper_settings", {}).get(d)
        if not s:
            parts.append(f"{d}: none (model defaults)")
        else:
            parts.append(
                f"{d}: " + "; ".join(f"{m} " + ", ".join(f"{k}={v}" for k, v in kv.items()) for m, kv in s.items())
            )
    return " · ".join(parts)
