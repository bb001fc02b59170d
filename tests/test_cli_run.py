"""``recbench run`` and ``recbench report`` through Typer's CliRunner, on the synthetic set."""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd
from typer.testing import CliRunner

from recbench.cli import app

runner = CliRunner()


def test_bare_run_uses_synthetic_and_prints_a_table(tmp_path: Path) -> None:
    out = tmp_path / "res"
    r = runner.invoke(app, ["run", "--models", "itempop,bpr", "--set", "bpr.epochs=5", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "synthetic" in r.output
    assert "| Dataset" in r.output and "bpr" in r.output
    assert len(list((out / "records").rglob("*.json"))) == 2


def test_run_then_report_csv(tmp_path: Path) -> None:
    out = tmp_path / "res"
    args = ["run", "-d", "synthetic", "-m", "itempop", "--seeds", "0,1", "--protocol", "both", "--out", str(out)]
    assert runner.invoke(app, args).exit_code == 0
    r = runner.invoke(app, ["report", "--results", str(out), "--format", "csv"])
    assert r.exit_code == 0, r.output
    df = pd.read_csv(io.StringIO(r.stdout))
    assert set(df.protocol) == {"sampled", "full"} and (df.n_seeds == 2).all()
    md = tmp_path / "report.md"
    r = runner.invoke(app, ["report", "--results", str(out), "-o", str(md), "--metric", "hr@5,ndcg@20"])
    assert r.exit_code == 0 and "HR@5" in md.read_text()


def test_unknown_model_is_one_line_error(tmp_path: Path) -> None:
    r = runner.invoke(app, ["run", "-m", "itempop,nosuch", "--out", str(tmp_path)])
    assert r.exit_code == 2
    assert "unknown model 'nosuch'" in r.output and "valid: itempop" in r.output
    assert not (tmp_path / "records").exists()


def test_unknown_dataset_is_one_line_error(tmp_path: Path) -> None:
    r = runner.invoke(app, ["run", "-d", "nosuch", "-m", "itempop", "--out", str(tmp_path)])
    assert r.exit_code == 2
    assert "unknown dataset 'nosuch'" in r.output and "ml-100k" in r.output


def test_bad_set_value(tmp_path: Path) -> None:
    r = runner.invoke(app, ["run", "-m", "bpr", "--set", "bpr.epochs=lots", "--out", str(tmp_path)])
    assert r.exit_code == 2 and "expected an integer" in r.output


def test_report_without_records(tmp_path: Path) -> None:
    r = runner.invoke(app, ["report", "--results", str(tmp_path)])
    assert r.exit_code == 2 and "recbench run" in r.output


def test_report_bad_metric(tmp_path: Path) -> None:
    r = runner.invoke(app, ["report", "--results", str(tmp_path), "--metric", "auc"])  # (mrr is a metric now)
    assert r.exit_code == 2 and "hr@K" in r.output
