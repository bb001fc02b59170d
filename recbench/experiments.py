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
from tabulate import tabulate

from recbench import figures as F
from recbench import report as R
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
    return {f.name for f in dataclasses.fields(MODELS[model].Config)}


def _coerce_values(p: Preset, values: tuple[str, ...] | None) -> list[Any]:
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
            raise ConfigError(f"--set names model {m!r}, which experiment {name!r} does not run ({', '.join(p.models)})")
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


def caption_notes(p: Preset, datasets: list[str], opts: ExperimentOptions, values: list[Any], presets: dict[str, Any]) -> list[str]:
    """Every departure from the paper's settings, in words."""
    notes = []
    if len(opts.seeds) < MIN_SEEDS:
        notes.append(f"{len(opts.seeds)} seed{'s' if len(opts.seeds) != 1 else ''} (fewer than the {MIN_SEEDS} planned"
                     + ("; no error bars" if len(opts.seeds) == 1 else "") + ").")
    if opts.epochs is not None:
        defaults = ", ".join(f"{m} {MODELS[m].Config().epochs}" for m in p.models if "epochs" in _field_names(m))
        notes.append(f"Epochs set to {opts.epochs} for every model (defaults: {defaults}).")
    if opts.overrides:
        sets = " ".join(f"{m}.{k}={v}" for m, kv in opts.overrides.items() for k, v in kv.items())
        notes.append(f"Changed from the paper's settings with --set: {sets}.")
    if p.param is not None and values != list(p.values):
        notes.append(f"Grid reduced to {p.param} ∈ {{{', '.join(map(str, values))}}} (paper: {{{', '.join(map(str, p.values))}}}).")
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
        out.append("--set " + ", ".join(k if set(ms) >= set(p.models) else f"{k} ({', '.join(ms)})" for k, ms in by_setting.items()))
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
        seeds=opts.seeds, protocols=opts.protocols, out=opts.out, force=opts.force, device=opts.device,
        split_seed=opts.split_seed, data_dir=opts.data_dir, jobs=opts.jobs, threads=opts.threads,
        checkpoint=opts.checkpoint,
    )
    curves = load_presets().get("curves", {})
    spec = {ds: SplitSpec(ds, opts.split_seed) for ds in datasets}
    run_cells = []
    for c in cells:
        every = max(p.eval_every, curves.get("eval_every", 0) if c.model in curves.get("models", []) else 0)
        for seed in opts.seeds:
            run_cells.append(RunCell(spec[c.dataset], c.model, c.config, seed, opts.protocols, every, tags={"experiment": name}))
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
    if opts.command:
        return opts.command
    args = ["recbench", "experiment", p.name, "--dataset", ",".join(datasets), "--seeds", ",".join(map(str, opts.seeds))]
    if opts.epochs is not None:
        args += ["--epochs", str(opts.epochs)]
    for m, kv in opts.overrides.items():
        for k, v in kv.items():
            args += ["--set", f"{m}.{k}={v}"]
    if opts.values is not None:
        args += ["--values", ",".join(opts.values)]
    if opts.protocols != ("sampled",):
        args += ["--protocol", "both" if set(opts.protocols) == {"sampled", "full"} else opts.protocols[0]]
    args += ["--out", str(opts.out)]
    return shlex.join(args)


def _fmt(mean: float, std: float) -> str:
    if np.isnan(mean):
        return "—"
    return f"{mean:.3f}" + ("" if np.isnan(std) else f" ± {std:.3f}")


def _param_table(p: Preset, rep: R.Report, paper: pd.DataFrame | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(formatted wide table, tidy frame) for a one-parameter grid (neg-ratio, embedding-size)."""
    s = rep.summary[rep.summary["protocol"] == "sampled"].copy()
    s["x"] = pd.to_numeric(s["model"])
    tidy = s[["dataset", "metric", "x", "n_seeds", "mean", "std", "ci95_low", "ci95_high"]].copy()
    if paper is not None:
        tidy = tidy.merge(paper, on=["dataset", "metric", "x"], how="left")
    else:
        tidy["paper"] = np.nan
    tidy = tidy.sort_values(["dataset", "metric", "x"], kind="stable")
    rows = []
    for (ds, met), g in tidy.groupby(["dataset", "metric"], sort=False):
        row = {"Dataset": F.dataset_label(ds), "Metric": F.metric_label(met)}
        best = g["mean"].max()
        for _, r in g.iterrows():
            cell = _fmt(r["mean"], r["std"])
            if np.isclose(r["mean"], best):
                cell = f"**{cell}**"
            if not np.isnan(r["paper"]):
                cell += f" (paper {r['paper']:.3f})"
            row[f"{p.param}={r['x']:g}"] = cell
        rows.append(row)
    return pd.DataFrame(rows).fillna("—"), tidy


def _curves(records: list[Record]) -> pd.DataFrame:
    rows = []
    for r in records:
        if r.status != "ok":
            continue
        for h in r.data.get("history", []):
            if "test" in h and "epoch" in h:
                rows.append({"dataset": r["dataset"], "model": r["model"], "seed": r["seed"], "epoch": h["epoch"], **h["test"]})
    return pd.DataFrame(rows, columns=["dataset", "model", "seed", "epoch", "hr@10", "ndcg@10"])


def _curve_table(curves: pd.DataFrame, metric: str) -> pd.DataFrame:
    rows = []
    for (ds, mod), g in curves.groupby(["dataset", "model"], sort=False):
        m = g.groupby("epoch")[metric].agg(["mean", "std"])
        last, best = m.index.max(), m["mean"].idxmax()
        rows.append({
            "Dataset": F.dataset_label(ds), "Model": mod,
            f"{F.metric_label(metric)} at the last epoch ({last})": _fmt(m.loc[last, "mean"], m.loc[last, "std"]),
            f"best {F.metric_label(metric)} over epochs": _fmt(m.loc[best, "mean"], m.loc[best, "std"]),
            "best epoch": int(best),
        })
    return pd.DataFrame(rows)


def write_outputs(p: Preset, datasets: list[str], records: list[Record], notes: list[str], opts: ExperimentOptions) -> ExperimentResult:
    """The table (markdown, CSV), figure (PNG, SVG), HTML page and README, from ``records``."""
    folder = opts.out / "experiments" / p.name
    folder.mkdir(parents=True, exist_ok=True)
    ok = [r for r in records if r.status == "ok"]
    failed = R.failures(records)
    if not ok:
        raise ConfigError(f"experiment {p.name!r}: every cell failed ({failed[0] if failed else 'no cells'})")
    cell_of = lambda r: (r["dataset"], r["model"], json.dumps(r["config"], sort_keys=True))  # noqa: E731
    counts: dict[tuple[str, str, str], int] = {}
    for r in ok:
        counts[cell_of(r)] = counts.get(cell_of(r), 0) + 1
    n_seeds = sorted(set(counts.values()))
    seeds_text = f"{n_seeds[0]}" if len(n_seeds) == 1 else f"{n_seeds[0]}–{n_seeds[-1]}"
    err_text = f"error bars: ± 1 std over {seeds_text} seed{'s' if n_seeds[-1] != 1 else ''}"
    negs = sorted({int((r.data.get("split_info") or {}).get("n_negatives", 99)) for r in ok})
    cands = " / ".join(str(n + 1) for n in negs) + " candidates per user"
    title = p.title
    files: list[Path] = []
    extra_md: list[str] = []

    if p.param is not None:
        rep = R.build_report(None, p.metrics, paper=False, records=ok, label=lambda r: str(r["config"][p.param]))
        paper = paper_table3() if p.paper == "table3.csv" else None
        wide, tidy = _param_table(p, rep, paper)
        xlabel = {"n_negatives": "negative sampling ratio (negatives per positive)", "embedding_size": "embedding size d"}.get(p.param, p.param)
        fig_err = err_text
        fig = F.param_lines(tidy, xlabel, title, logx=p.param == "embedding_size",
                            paper_label="paper (Table 3)")
        table_md = _md(wide)
        csv = tidy
        caption = (f"{title}. OPECI, sampled protocol ({cands}), mean ± std over {seeds_text} seed(s); best per row in bold"
                   + ("; the paper's Table 3 in parentheses." if paper is not None else "."))
    elif p.name == "interaction":
        rep = R.build_report(None, p.metrics, paper=False, records=ok, label=R.base_label, reference="opeci")
        curves = _curves(ok)
        if curves.empty:
            raise ConfigError("experiment 'interaction': the records hold no per-epoch test metrics (eval_every=1)")
        fig_err = f"bands: ± 1 std over {seeds_text} seed{'s' if n_seeds[-1] != 1 else ''}"
        fig = F.epoch_curves(curves, "ndcg@10", title)
        table_md = _md(_curve_table(curves, "ndcg@10"))
        extra_md = ["Final models (after the last epoch):\n", _md(R.pivot(rep.summary, "sampled", False, style=R.MD_STYLE).reset_index()),
                    R.legend(rep, "sampled")]
        csv = curves.groupby(["dataset", "model", "epoch"])[["hr@10", "ndcg@10"]].agg(["mean", "std", "count"])
        csv.columns = [f"{a}_{b}" for a, b in csv.columns]
        csv = csv.reset_index()
        curves.to_csv(folder / "curves_per_seed.csv", index=False)
        files.append(folder / "curves_per_seed.csv")
        caption = (f"{title}. NDCG@10 on the test split (sampled protocol) after each epoch, mean over {seeds_text} seed(s); "
                   "the table gives the last and the best epoch.")
    else:
        paper_flag = p.name == "table2"
        rep = R.build_report(None, p.metrics, paper=paper_flag, records=ok, label=R.base_label, reference="opeci")
        models = [m for m in p.models if m in set(rep.summary["model"])]
        fig = F.summary_bars(rep.summary, "sampled", models, title, paper_note="white diamonds: the paper's Table 2")
        has_paper = rep.summary["paper"].notna().any()
        fig_err = err_text + ("; white diamonds: the paper's Table 2" if has_paper else "")
        if p.name == "table2":
            table_md = R.render(rep, "markdown", paper=True).strip()
        else:
            table_md = _md(R.pivot(rep.summary, "sampled", False, style=R.MD_STYLE).reset_index())
            extra_md = [R.legend(rep, "sampled") + " Best per row in bold."]
        csv = rep.summary
        caption = f"{title}. Sampled protocol ({cands}); mean ± std over {seeds_text} seed(s)."

    caption_full = " ".join([caption, *notes])
    table_text = f"**{caption_full}**\n\n{table_md}\n" + ("\n" + "\n\n".join(extra_md) + "\n" if extra_md else "")
    if failed:
        table_text += "\nFailed cells:\n" + "\n".join(f"- {f}" for f in failed) + "\n"
    (folder / "table.md").write_text(table_text)
    csv.to_csv(folder / "table.csv", index=False)
    files += [folder / "table.md", folder / "table.csv"]
    short = short_notes(p, datasets, opts)
    F.retitle(fig, f"{title}\n({fig_err})", ("Reduced/changed settings (see README): " + "; ".join(short)) if short else "")
    files += F.save(fig, folder / "figure")
    files.append(_write_html(folder, p, caption_full, table_md, extra_md, fig))
    files.append(_write_readme(folder, p, datasets, opts, caption_full, table_text))
    return ExperimentResult(p.name, folder, files, records, notes, failed)


def _md(df: pd.DataFrame) -> str:
    return tabulate(df, headers="keys", tablefmt="github", showindex=False, disable_numparse=True)


def _write_html(folder: Path, p: Preset, caption: str, table_md: str, extra: list[str], fig: Any) -> Path:
    """One self-contained page: caption, tables and the figure (base64 PNG)."""
    style = ("body{font-family:sans-serif;margin:2em;max-width:1400px}table{border-collapse:collapse;margin:1em 0}"
             "td,th{padding:4px 10px;border-bottom:1px solid #ccc;text-align:right}img{max-width:100%}")
    body = [f"<h1>{html.escape(p.title)}</h1>", f"<p>{html.escape(caption)}</p>", _md_to_html(table_md)]
    body += [_md_to_html(e) for e in extra]
    body.append(f"<figure><img alt='{html.escape(p.title)}' src='data:image/png;base64,{F.png_base64(fig)}'/>"
                f"<figcaption>{html.escape(caption)}</figcaption></figure>")
    path = folder / "report.html"
    path.write_text(f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{html.escape(p.title)}</title>"
                    f"<style>{style}</style></head><body>{''.join(body)}</body></html>\n")
    return path


def _md_to_html(text: str) -> str:
    """Markdown tables and paragraphs to HTML without a markdown library: pipe tables become
    <table>, everything else <p>."""
    out = []
    for block in text.strip().split("\n\n"):
        lines = [ln for ln in block.splitlines() if ln.strip()]
        if lines and all(ln.lstrip().startswith("|") for ln in lines):
            rows = [[c.strip() for c in ln.strip().strip("|").split("|")] for ln in lines]
            rows = [r for r in rows if not all(set(c) <= set("-: ") for c in r)]
            head, body = rows[0], rows[1:]
            cell = lambda c: html.escape(c).replace("**", "")  # noqa: E731
            out.append("<table><thead><tr>" + "".join(f"<th>{cell(c)}</th>" for c in head) + "</tr></thead><tbody>"
                       + "".join("<tr>" + "".join(
                           f"<td>{'<b>' + cell(c) + '</b>' if c.startswith('**') else cell(c)}</td>" for c in r) + "</tr>" for r in body)
                       + "</tbody></table>")
        elif lines:
            out.append("<p>" + html.escape(" ".join(ln.lstrip("#> ").strip() for ln in lines)).replace("**", "") + "</p>")
    return "\n".join(out)


def _write_readme(folder: Path, p: Preset, datasets: list[str], opts: ExperimentOptions, caption: str, table_text: str) -> Path:
    cmd = _command(p, datasets, opts)
    lines = [
        f"# {p.title}",
        "",
        "Regenerate (resumes from the result records under "
        f"`{opts.out}/records`; finished cells are not redone):",
        "",
        "```bash",
        cmd,
        "```",
        "",
        f"- models: {', '.join(p.models)}" + (f"; {p.param} ∈ {{{', '.join(map(str, p.values))}}} in the preset" if p.param else ""),
        f"- datasets: {', '.join(datasets)}; seeds: {', '.join(map(str, opts.seeds))}; protocol(s): {', '.join(opts.protocols)}",
        f"- the paper's per-dataset settings: {_settings_text(datasets)}",
        f"- written {datetime.now(UTC).isoformat(timespec='seconds')}",
        "",
        "Files: `table.md`, `table.csv`, `figure.png`, `figure.svg`, `report.html`"
        + (" and `curves_per_seed.csv`" if p.name == "interaction" else "") + ".",
        "",
        "![figure](figure.png)",
        "",
        table_text,
    ]
    path = folder / "README.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def _settings_text(datasets: list[str]) -> str:
    presets = load_presets()
    parts = []
    for d in datasets:
        s = presets.get("paper_settings", {}).get(d)
        if not s:
            parts.append(f"{d}: none (model defaults)")
        else:
            parts.append(f"{d}: " + "; ".join(f"{m} " + ", ".join(f"{k}={v}" for k, v in kv.items()) for m, kv in s.items()))
    return " · ".join(parts)

