"""A report cell pools only records of one experiment (issue 14, issue 16): one split, one
configuration, distinct model seeds; split seeds are a dimension, pooled only on request with the
spread decomposed and users paired within a split."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from recbench.cli import app
from recbench.report import build_report
from recbench.results import iter_records
from recbench.stats import paired_values, split_variance

runner = CliRunner()


def _run(out: Path, *args: str) -> None:
    r = runner.invoke(app, ["run", "--dataset", "synthetic", "--out", str(out), *args])
    assert r.exit_code == 0, r.output


def _csv(out: Path, *args: str) -> pd.DataFrame:
    r = runner.invoke(app, ["report", "--results", str(out), "--format", "csv", *args])
    assert r.exit_code == 0, r.output
    return pd.read_csv(io.StringIO(r.stdout))


def _cells(df: pd.DataFrame, model: str) -> dict[str, int]:
    sub = df[(df.model == model) & (df.protocol == "sampled") & (df.metric == "hr@10")]
    return dict(zip(sub.dataset, sub.n_seeds, strict=True))


def test_other_split_seeds_are_their_own_cells(tmp_path: Path) -> None:
    _run(tmp_path, "--models", "itempop,bpr", "--set", "bpr.epochs=3", "--seeds", "0,1")
    _run(tmp_path, "--models", "itempop,bpr", "--set", "bpr.epochs=3", "--seeds", "0", "--split-seed", "3")
    assert _cells(_csv(tmp_path), "itempop") == {"synthetic · split 0": 2, "synthetic · split 3": 1}
    pooled = _csv(tmp_path, "--pool-split-seeds")
    assert _cells(pooled, "itempop") == {"synthetic · splits 0,3": 3}
    row = pooled[(pooled.model == "itempop") & (pooled.protocol == "sampled") & (pooled.metric == "hr@10")].iloc[0]
    assert row.n_splits == 2 and row.std_within_split == 0.0 and row.std_between_splits > 0  # itempop: no seed spread
    text = runner.invoke(
        app, ["report", "--results", str(tmp_path), "--pool-split-seeds", "--reference", "itempop"]
    ).stdout
    assert "Split seeds pooled" in text and "Std between splits" in text


def test_a_duplicate_seed_is_counted_once_and_named(tmp_path: Path) -> None:
    _run(tmp_path, "--models", "bpr", "--set", "bpr.epochs=3", "--seeds", "0,1")
    _run(
        tmp_path, "--models", "bpr", "--set", "bpr.epochs=3", "--seeds", "0", "--eval-every", "1"
    )  # another record of seed 0
    assert len(list(iter_records(tmp_path))) == 3
    rep = build_report(tmp_path, ["hr@10"])
    assert set(rep.summary.n_seeds) == {2}
    assert any("two records of one seed" in n for n in rep.notes)


def test_split_seeds_option_runs_every_cell_on_each_split(tmp_path: Path) -> None:
    _run(tmp_path, "--models", "itempop", "--seeds", "0", "--split-seeds", "0,1,2")
    assert sorted(r["split_info"]["seed"] for r in iter_records(tmp_path)) == [0, 1, 2]
    bad = runner.invoke(
        app, ["run", "--dataset", "synthetic", "--models", "itempop", "--split-seeds", "0,,1", "--out", str(tmp_path)]
    )
    assert bad.exit_code == 2 and "empty entry" in bad.output


def test_split_variance_by_hand() -> None:
    splits = np.array(["a", "a", "b", "b"])
    values = np.array([1.0, 3.0, 5.0, 7.0])  # means 2 and 6; variances 2 and 2
    between, within = split_variance(splits, values)
    assert between == pytest.approx(np.std([2, 6], ddof=1)) and within == pytest.approx(np.sqrt(2))
    assert np.isnan(split_variance(np.array(["a", "a"]), np.array([1.0, 2.0]))[0])


def test_pairing_is_within_a_split(tmp_path: Path) -> None:
    _run(tmp_path, "--models", "itempop,bpr", "--set", "bpr.epochs=3", "--seeds", "0", "--split-seeds", "0,1")
    recs = list(iter_records(tmp_path))
    pop = [r for r in recs if r["model"] == "itempop"]
    bpr = [r for r in recs if r["model"] == "bpr"]
    a, b = paired_values(pop, bpr, "hr@10", "test/sampled")
    assert len(a) == len(b) == sum(len(r.users) for r in pop)  # every user once per split
    only0 = [r for r in bpr if r["split_info"]["seed"] == 0]
    a0, _ = paired_values(pop, only0, "hr@10", "test/sampled")
    assert len(a0) == len(pop[0].users)


def test_side_by_side_sorts_ranks_as_numbers() -> None:
    from recbench.report import Report, side_by_side

    rows = []
    for k in range(12):
        for proto in ("sampled", "full"):
            rows.append(
                {
                    "dataset": "ml-100k",
                    "protocol": proto,
                    "metric": "hr@10",
                    "model": f"m{k}",
                    "mean": 1.0 - k / 100,
                    "std": 0.0,
                }
            )
    table = side_by_side(Report(summary=pd.DataFrame(rows), failed=[], protocols=["sampled", "full"]))
    assert list(table["Rank (sampled)"]) == [str(k) for k in range(1, 13)]


def test_table2_view_one_configuration_per_model_and_paper_apart(tmp_path: Path) -> None:
    from recbench.report import render, table2_view

    _run(tmp_path, "--models", "itempop,bpr", "--set", "bpr.epochs=3", "--seeds", "0,1")
    _run(tmp_path, "--models", "bpr", "--set", "bpr.epochs=2", "--seeds", "0")  # another configuration
    rep = build_report(tmp_path, ["hr@10", "ndcg@10"])
    ours, paper, others, chosen = table2_view(rep)
    assert list(ours.columns) == ["Dataset", "Metric", "itempop", "bpr"]
    assert chosen["bpr"] == "bpr[epochs=3]" and ours.iloc[0]["bpr"].endswith("(2)")  # the one with most seeds
    assert list(others["Model"]) == ["bpr[epochs=2]", "bpr[epochs=2]"] and others.iloc[0][
        "Mean ± std (seeds)"
    ].endswith("(1)")
    assert (paper[["itempop", "bpr"]] == "—").all().all()  # the paper has no synthetic data
    text = render(rep, "markdown")
    assert text.startswith("### Table 2 (sampled protocol)") and "(paper" not in text.split("### Sampled protocol")[0]
    latex = render(rep, "latex")
    assert "\\toprule" in latex and "\\textit{paper}" in latex


def test_one_colour_per_model_in_every_figure() -> None:
    from recbench.figures import MODEL_COLOURS_ORDER, model_colour
    from recbench.registry import MODELS

    assert set(MODEL_COLOURS_ORDER) == set(MODELS)
    colours = [model_colour(m) for m in MODELS]
    assert len(set(colours)) == len(colours)  # 14 models, 14 colours (tab10 had 10)
    assert model_colour("ncf[epochs=2]") != model_colour("ncf") and model_colour("ncf (tuned)") == model_colour(
        "ncf[epochs=2]"
    )
