"""Figures for reports and experiments (matplotlib, Agg, no pyplot state).

Every figure has labelled axes, a legend and error bars or bands across seeds (± 1 standard
deviation over seeds; a cell with one seed has none, and the caption says how many seeds there
were). :func:`save` writes PNG and SVG; :func:`png_base64` / :func:`svg_inline` embed a figure in
an HTML page.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure  # object-oriented API: rendered by Agg, no pyplot state

from recbench.data.registry import dataset_label  # re-exported: experiments label panels with it

__all__ = [
    "ERR_NOTE",
    "MODEL_COLOURS_ORDER",
    "agreement_scatter",
    "dataset_label",
    "epoch_curves",
    "grouped_bars",
    "metric_label",
    "model_colour",
    "new_figure",
    "param_lines",
    "png_base64",
    "retitle",
    "save",
    "summary_bars",
    "svg_inline",
]

ERR_NOTE = "error bars: ± 1 std over seeds"


def metric_label(metric: str) -> str:
    """``"ndcg@10"`` → ``"NDCG@10"``."""
    name, _, k = metric.partition("@")
    return f"{name.upper()}@{k}" if k else name.upper()


def new_figure(n_rows: int, n_cols: int, panel: tuple[float, float] = (4.2, 3.2)) -> tuple[Figure, np.ndarray]:
    """A constrained-layout figure of ``n_rows × n_cols`` gridded panels of size ``panel`` (inches)."""
    fig = Figure(figsize=(panel[0] * n_cols, panel[1] * n_rows + 0.6), layout="constrained")
    axes = np.asarray(fig.subplots(n_rows, n_cols, squeeze=False))
    for ax in axes.ravel():
        ax.grid(True, alpha=0.3, linewidth=0.6)
        ax.tick_params(labelsize=9)
    return fig, axes


def save(fig: Figure, stem: Path) -> list[Path]:
    """Write ``stem.png`` (150 dpi) and ``stem.svg``; returns the paths."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_suffix(".png"), stem.with_suffix(".svg")]
    fig.savefig(paths[0], dpi=150)
    fig.savefig(paths[1])
    return paths


def png_base64(fig: Figure, dpi: int = 110) -> str:
    """The figure as a base64 PNG (for a ``data:`` URL)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def svg_inline(fig: Figure) -> str:
    """The figure as an ``<svg>`` element to inline in HTML."""
    buf = io.StringIO()
    fig.savefig(buf, format="svg")
    text = buf.getvalue()
    return text[text.index("<svg") :]


def _err(std: Sequence[float]) -> np.ndarray | None:
    """Error bar sizes (NaN as 0), or None when there is no spread at all."""
    s = np.asarray(std, dtype=np.float64)
    return None if np.all(np.isnan(s)) else np.nan_to_num(s)


MODEL_COLOURS_ORDER = [
    "itempop",
    "bpr",
    "dmf",
    "ncf",
    "cml",
    "cadncf",
    "opeci",
    "opeci-res",
    "opeci-inner",
    "opeci-i",
    "opeci-u",
    "opeci-iu",
    "cadncf-mhsa",
    "outer-mlp",
    "opeci-res-inner",
    "opeci-res-i",
    "opeci-res-u",
    "opeci-res-iu",
]
"""Every registered model, in the order that fixes its colour (a test checks it against the
registry): one colour per model in every figure, whatever else the figure shows."""


def model_colour(label: str) -> tuple[float, ...]:
    """The colour of a model label: a fixed dark shade per registered model (its defaults), the
    paired light shade for its other configurations; other names hashed into the rest."""
    palette = [*matplotlib.colormaps["tab20"].colors, *matplotlib.colormaps["tab20b"].colors]
    base = label.split("[")[0].split(" (")[0]
    if base in MODEL_COLOURS_ORDER:
        i = 2 * MODEL_COLOURS_ORDER.index(base) + (0 if label == base else 1)
        return palette[i % len(palette)]
    return palette[2 * len(MODEL_COLOURS_ORDER) + sum(map(ord, label)) % (len(palette) - 2 * len(MODEL_COLOURS_ORDER))]


def grouped_bars(
    ax: Axes,
    groups: Sequence[str],
    series: Sequence[str],
    mean: np.ndarray,
    std: np.ndarray,
    paper: np.ndarray | None = None,
) -> None:
    """Bars of ``mean[g, s]`` (groups on the x axis, one colour per series), ± std error bars,
    and the paper's value as a white diamond where ``paper[g, s]`` is not NaN."""
    n_s = len(series)
    width = 0.8 / max(n_s, 1)
    x = np.arange(len(groups))
    for k, s in enumerate(series):
        pos = x - 0.4 + width * (k + 0.5)
        ax.bar(
            pos,
            np.nan_to_num(mean[:, k]),
            width * 0.92,
            yerr=_err(std[:, k]),
            capsize=2.5,
            color=model_colour(s),
            label=s,
            error_kw={"linewidth": 0.8},
        )
        if paper is not None and not np.all(np.isnan(paper[:, k])):
            ax.scatter(
                pos,
                paper[:, k],
                marker="D",
                s=22,
                facecolor="white",
                edgecolor="black",
                linewidths=1.2,
                zorder=3,
                label="paper",
            )
    ax.set_xticks(x, list(groups), fontsize=9)


def _grid(n: int, max_cols: int = 2) -> tuple[int, int]:
    """(rows, columns) of a grid for ``n`` panels, at most ``max_cols`` wide."""
    cols = min(n, max_cols)
    return (n + cols - 1) // cols, cols


def _finish_grid(fig: Figure, axes: np.ndarray, used: int) -> None:
    """Hide the panels after the first ``used``."""
    for ax in axes.ravel()[used:]:
        ax.set_visible(False)


def summary_bars(
    summary: pd.DataFrame,
    protocol: str,
    models: Sequence[str],
    title: str,
    paper_note: str = "white diamonds: the paper's Table 2",
) -> Figure | None:
    """One panel per dataset: metrics as groups, models as bars (mean ± std over seeds), the
    paper's number as a white diamond where the summary has one."""
    sub = summary[summary["protocol"] == protocol]
    if sub.empty:
        return None
    datasets = list(dict.fromkeys(sub["dataset"]))
    metrics = list(dict.fromkeys(sub["metric"]))
    rows, cols = _grid(len(datasets))
    fig, axes = new_figure(rows, cols, panel=(max(4.0, 0.4 * len(models) * len(metrics) + 1.5), 3.4))
    for ax, ds in zip(axes.ravel(), datasets, strict=False):
        d = sub[sub["dataset"] == ds].set_index(["metric", "model"])
        shape = (len(metrics), len(models))
        mean, std, paper = np.full(shape, np.nan), np.full(shape, np.nan), np.full(shape, np.nan)
        for i, m in enumerate(metrics):
            for j, mod in enumerate(models):
                if (m, mod) in d.index:
                    row = d.loc[(m, mod)]
                    mean[i, j], std[i, j] = row["mean"], row["std"]
                    paper[i, j] = row.get("paper", np.nan)
        grouped_bars(ax, [metric_label(m) for m in metrics], models, mean, std, paper)
        ax.set_title(dataset_label(ds), fontsize=11)
        ax.set_xlabel("metric", fontsize=9)
        ax.set_ylabel("score (mean over seeds)", fontsize=9)
        top = np.nanmax(np.r_[mean.ravel() + np.nan_to_num(std.ravel()), np.nan_to_num(paper.ravel()), 0.05])
        ax.set_ylim(0, min(1.0, float(top) * 1.15))
    _finish_grid(fig, axes, len(datasets))
    _legend_below(fig, axes)
    has_paper = "paper" in sub and sub["paper"].notna().any()
    fig.suptitle(f"{title} ({ERR_NOTE}" + (f"; {paper_note})" if has_paper else ")"), fontsize=11)
    return fig


def _legend_below(fig: Figure, axes: np.ndarray) -> None:
    """One legend for all panels (each label once), below them."""
    seen: dict[str, object] = {}
    for ax in axes.ravel():
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            seen.setdefault(lab, h)
    fig.legend(
        list(seen.values()), list(seen), loc="outside lower center", ncol=min(len(seen), 8), fontsize=9, frameon=False
    )


def agreement_scatter(summary: pd.DataFrame, models: Sequence[str]) -> Figure | None:
    """Sampled (x) against full-ranking (y) score per model, one panel per dataset × metric:
    points off a monotone curve are models the two protocols order differently."""
    pairs = summary.pivot_table(index=["dataset", "metric", "model"], columns="protocol", values="mean")
    if not {"sampled", "full"} <= set(pairs.columns):
        return None
    pairs = pairs.dropna(subset=["sampled", "full"]).reset_index()
    if pairs.empty:
        return None
    datasets = list(dict.fromkeys(pairs["dataset"]))
    metrics = list(dict.fromkeys(pairs["metric"]))
    fig, axes = new_figure(len(datasets), len(metrics), panel=(4.0, 3.4))
    for i, ds in enumerate(datasets):
        for j, met in enumerate(metrics):
            ax = axes[i, j]
            p = pairs[(pairs["dataset"] == ds) & (pairs["metric"] == met)]
            for _, r in p.iterrows():
                ax.scatter(r["sampled"], r["full"], color=model_colour(r["model"]), label=r["model"], s=30, zorder=3)
                ax.annotate(
                    r["model"], (r["sampled"], r["full"]), fontsize=7, xytext=(3, 3), textcoords="offset points"
                )
            ax.margins(0.15)
            ax.set_title(f"{dataset_label(ds)} · {metric_label(met)}", fontsize=10)
            ax.set_xlabel(f"{metric_label(met)}, sampled protocol", fontsize=9)
            ax.set_ylabel(f"{metric_label(met)}, full ranking", fontsize=9)
    _legend_below(fig, axes)
    fig.suptitle("Sampled against full-ranking metrics (one point per model; mean over seeds)", fontsize=11)
    return fig


def param_lines(df: pd.DataFrame, xlabel: str, title: str, logx: bool = False, paper_label: str = "paper") -> Figure:
    """Rows = metrics, columns = datasets; our mean over seeds against the parameter with ± std
    error bars, and the paper's numbers (column ``paper``) as a dashed line where present.
    ``df``: dataset, metric, x (numeric), mean, std[, paper]."""
    datasets = list(dict.fromkeys(df["dataset"]))
    metrics = list(dict.fromkeys(df["metric"]))
    fig, axes = new_figure(len(metrics), len(datasets), panel=(3.9, 3.0))
    for i, met in enumerate(metrics):
        for j, ds in enumerate(datasets):
            ax = axes[i, j]
            d = df[(df["dataset"] == ds) & (df["metric"] == met)].sort_values("x")
            ax.errorbar(
                d["x"],
                d["mean"],
                yerr=_err(d["std"]),
                marker="o",
                capsize=3,
                linewidth=1.6,
                color="tab:blue",
                label="ours (mean ± std over seeds)",
            )
            if "paper" in d and d["paper"].notna().any():
                p = d[d["paper"].notna()]
                ax.plot(p["x"], p["paper"], marker="s", linestyle="--", color="black", linewidth=1.2, label=paper_label)
            if logx:
                ax.set_xscale("log", base=2)
            ax.set_xticks(list(d["x"]), [f"{v:g}" for v in d["x"]])
            ax.minorticks_off()
            ax.set_title(f"{dataset_label(ds)}", fontsize=10)
            ax.set_xlabel(xlabel, fontsize=9)
            ax.set_ylabel(f"{metric_label(met)} (sampled)", fontsize=9)
    _legend_below(fig, axes)
    fig.suptitle(title, fontsize=11)
    return fig


def epoch_curves(curves: pd.DataFrame, metric: str, title: str, ylabel: str = "test, sampled") -> Figure:
    """One panel per dataset: ``metric`` per epoch for each model, mean over seeds with a ± std
    band. ``curves``: dataset, model, seed, epoch, and one column per metric; ``ylabel``: which
    split and protocol the metric comes from."""
    datasets = list(dict.fromkeys(curves["dataset"]))
    models = list(dict.fromkeys(curves["model"]))
    fig, axes = new_figure(1, len(datasets), panel=(4.4, 3.3))
    for ax, ds in zip(axes[0], datasets, strict=True):
        for mod in models:
            d = curves[(curves["dataset"] == ds) & (curves["model"] == mod)]
            if d.empty:
                continue
            g = d.groupby("epoch")[metric].agg(["mean", "std", "count"]).reset_index()
            ax.plot(g["epoch"], g["mean"], marker="o", markersize=3, color=model_colour(mod), label=mod, linewidth=1.6)
            if (g["count"] > 1).any():
                ax.fill_between(
                    g["epoch"],
                    g["mean"] - g["std"].fillna(0),
                    g["mean"] + g["std"].fillna(0),
                    color=model_colour(mod),
                    alpha=0.2,
                    linewidth=0,
                )
        ax.set_title(dataset_label(ds), fontsize=10)
        ax.set_xlabel("epoch", fontsize=9)
        ax.set_ylabel(f"{metric_label(metric)} ({ylabel})", fontsize=9)
        ax.xaxis.get_major_locator().set_params(integer=True)
    _legend_below(fig, axes)
    fig.suptitle(title, fontsize=11)
    return fig


def retitle(fig: Figure, title: str, note: str = "", fontsize: int = 11) -> None:
    """Replace the figure's title with ``title`` and, under it, ``note`` wrapped to the figure's
    width (constrained layout keeps room for both, so nothing overlaps the panels)."""
    import textwrap

    width = max(36, int(fig.get_figwidth() * 9.5))
    text = "\n".join(textwrap.fill(line, width) for line in title.split("\n"))
    if note:
        text += "\n" + textwrap.fill(note, int(width * 1.1))
    fig.suptitle(text, fontsize=fontsize if not note else fontsize - 1)
