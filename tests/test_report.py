"""Reports: every format parses back; numbers are the mean ± std of the records."""

from __future__ import annotations

import io
import json
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recbench.data.types import Split
from recbench.plan import run_grid
from recbench.report import build_report, paper_table2, render
from recbench.runner import RunOptions


@pytest.fixture(scope="module")
def results(small_split: Split, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("results")
    opts = RunOptions(out=out, seeds=(0, 1, 2), protocols=("sampled", "full"), overrides={"bpr": {"epochs": "20"}})
    run_grid([small_split.dataset], ["itempop", "bpr"], opts, split_loader=lambda _: small_split)
    return out


def test_paper_table_is_data() -> None:
    p = paper_table2()
    row = p[(p.dataset == "ml-100k") & (p.metric == "hr@10") & (p.model == "itempop")]
    assert float(row.paper.iloc[0]) == pytest.approx(0.406)
    assert len(p) == 4 * 2 * 7


def test_csv_roundtrip_and_values(results: Path) -> None:
    rep = build_report(results, ["hr@10", "ndcg@10"])
    df = pd.read_csv(io.StringIO(render(rep, "csv")))
    assert set(df.model) == {"itempop", "bpr[epochs=20]"}
    assert (df.n_seeds == 3).all()
    from recbench.results import iter_records

    vals = [r["metrics"]["sampled"]["hr@10"] for r in iter_records(results) if r["model"] == "bpr"]
    got = df[(df.model == "bpr[epochs=20]") & (df.metric == "hr@10") & (df.protocol == "sampled")]
    assert got["mean"].iloc[0] == pytest.approx(np.mean(vals))
    assert got["std"].iloc[0] == pytest.approx(np.std(vals, ddof=1))
    assert (df.ci95_low <= df["mean"]).all()


def test_json_and_html_parse(results: Path) -> None:
    rep = build_report(results, ["hr@10"])
    data = json.loads(render(rep, "json"))
    assert data["rows"] and data["failed"] == []

    class P(HTMLParser):
        tables = 0

        def handle_starttag(self, tag: str, attrs: list) -> None:
            if tag == "table" and "results" in (dict(attrs).get("class") or ""):
                P.tables += 1

    P().feed(render(rep, "html"))
    assert P.tables == 2  # the main tables: sampled and full (statistics tables come after)


def test_markdown_marks_best(results: Path) -> None:
    md = render(build_report(results, ["hr@10", "ndcg@10"]), "markdown")
    assert "**" in md and "| Dataset" in md and "Full ranking" in md


def test_latex_is_balanced(results: Path) -> None:
    tex = render(build_report(results, ["hr@10"]), "latex")
    assert tex.count("\\begin{table}") == tex.count("\\end{table}") == 3  # Table 2 view, sampled, full
    assert tex.count("\\begin{tabular}") == tex.count("\\end{tabular}")
    assert "\\toprule" in tex and "\\textbf{" in tex


def test_paper_numbers_beside_ours(tmp_path: Path, small_split: Split) -> None:
    # a dataset named like a paper dataset gets the paper column
    from dataclasses import replace

    split = replace(small_split, dataset="ml-100k")
    run_grid(["ml-100k"], ["itempop"], RunOptions(out=tmp_path), split_loader=lambda _: split)
    md = render(build_report(tmp_path, ["hr@10"]), "markdown")
    assert "paper 0.406" in md


def test_cost_table_is_the_median_of_the_records(results: Path, small_split: Split, tmp_path: Path) -> None:
    """The cost section: medians over seeds of what each record measured, in every format."""
    from recbench.results import iter_records

    rep = build_report(results, ["hr@10"])
    recs = [r for r in iter_records(results) if r["model"] == "bpr"]
    row = rep.cost[rep.cost.Model == "bpr[epochs=20]"].iloc[0]
    assert row["Seeds"] == 3
    assert row["Fit s"] == pytest.approx(np.median([r["timing"]["fit_s"] for r in recs]))
    assert row["Full eval s"] == pytest.approx(np.median([r["timing"]["eval_test_full_s"] for r in recs]))
    assert row["Peak RSS MB"] == pytest.approx(np.median([r["peak_rss_mb"] for r in recs]))
    assert np.isnan(row["Samples/s"])  # implicit's BPR reports no per-epoch history
    # a torch model has per-epoch throughput
    run_grid(
        [small_split.dataset],
        ["ncf"],
        RunOptions(out=tmp_path, seeds=(0,), overrides={"ncf": {"epochs": "2"}}),
        split_loader=lambda _: small_split,
    )
    ncf = build_report(tmp_path, ["hr@10"]).cost.iloc[0]
    rec = next(iter_records(tmp_path))
    assert ncf["Epochs"] == 2 and ncf["Samples/s"] == pytest.approx(rec["timing"]["samples_per_s"])
    assert ncf["Subnormals"] == "flushed" and rec["denormals"] == "flush"
    md = render(rep, "markdown")
    assert "### Cost" in md and "| bpr[epochs=20]" in md.split("### Cost")[1]
    assert json.loads(render(rep, "json"))["cost"][0]["Seeds"] == 3
    assert "<h2>Cost</h2>" in render(rep, "html")


def test_cost_table_says_which_records_kept_subnormals() -> None:
    """Records without a ``denormals`` field were made before the flush: their timings are marked."""
    from recbench.report.frames import subnormals_of
    from recbench.results import Record

    def rec(**extra: str) -> Record:
        return Record({"dataset": "d", "model": "m", "status": "ok", **extra})

    assert subnormals_of([rec(denormals="flush"), rec(denormals="flush")]) == "flushed"
    assert subnormals_of([rec(), rec(denormals="keep")]) == "kept"
    assert subnormals_of([rec(), rec(denormals="flush"), rec(denormals="flush")]) == "kept 1/3"


def test_ambiguous_default_reference_is_named(small_split: Split, tmp_path: Path) -> None:
    """Two OPECI configurations: no silent choice of reference; the note names both."""
    tiny = {
        "embedding_size": "8",
        "batch_size": "1024",
        "precise_bn_batches": "1",
        "mlp_hidden": "(16,)",
        "epochs": "1",
    }
    run_grid(
        [small_split.dataset],
        ["opeci", "itempop"],
        RunOptions(out=tmp_path, overrides={"opeci": tiny}),
        split_loader=lambda _: small_split,
    )
    run_grid(
        [small_split.dataset],
        ["opeci"],
        RunOptions(out=tmp_path, overrides={"opeci": {**tiny, "exclude_target": "false"}}),
        split_loader=lambda _: small_split,
    )
    rep = build_report(tmp_path, ["hr@10"])
    assert rep.reference is None
    assert any("opeci has several configurations" in n and "--reference" in n for n in rep.notes)
    labels = sorted(set(rep.summary.model))
    chosen = build_report(
        tmp_path, ["hr@10"], reference=next(lab for lab in labels if "exclude_target" not in lab and "opeci" in lab)
    )
    assert chosen.reference is not None and chosen.reference.startswith("opeci[")
