"""An experiment's figure: our mean against a grid value with the paper's points
(``neg-ratio``, ``embedding-size``) or a metric after each epoch per model (``interaction``),
with error bars or bands only where a point has 2 or more seeds (:class:`Spread` says which)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from recbench import figures


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


def _legend_below(fig: Figure, axes: np.ndarray) -> None:
    """One legend under the panels, each label once."""
    seen: dict[str, Any] = {}
    for ax in axes.ravel():
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            seen.setdefault(lab, h)
    fig.legend(
        list(seen.values()), list(seen), loc="outside lower center", ncol=min(len(seen), 4), fontsize=9, frameon=False
    )


def param_figure(tidy: pd.DataFrame, xlabel: str, spread: Spread, logx: bool, paper_label: str) -> Figure:
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


def epoch_figure(curves: pd.DataFrame, metric: str) -> Figure:
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
