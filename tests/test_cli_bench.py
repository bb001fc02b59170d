"""``recbench bench`` through Typer's CliRunner: the default command, progress lines, the record
written after every model (a killed bench keeps what it measured), resuming, comma-separated data
sets, and the data and merge subcommands."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from recbench.bench import session
from recbench.cli import app
from recbench.data import leave_one_out, make_synthetic
from recbench.data.types import Split

runner = CliRunner()
FAST = ["--repeats", "1", "--epochs", "1", "--matmul-n", "32", "--eval-runs", "1", "--protocol", "sampled"]


def _records(out: Path) -> list[tuple[Path, dict[str, Any]]]:
    return [(p, json.loads(p.read_text())) for p in sorted(out.glob("*.json"))]


def _patch_bench_model(monkeypatch: pytest.MonkeyPatch, kill_at: str | None = None) -> list[str]:
    """Record the models measured (``bench_model`` calls, in order); with ``kill_at``, that model
    is interrupted as a kill would (KeyboardInterrupt during its fit)."""
    calls: list[str] = []
    real = session.bench_model

    def measured(split: Split, name: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
        calls.append(name)
        if name == kill_at:
            raise KeyboardInterrupt
        return real(split, name, *args, **kwargs)

    monkeypatch.setattr(session, "bench_model", measured)
    return calls


def test_bench_without_a_subcommand_runs_the_bench_with_progress_lines(tmp_path: Path) -> None:
    out = tmp_path / "bench"
    r = runner.invoke(app, ["bench", "-d", "synthetic", "-m", "itempop,bpr", *FAST, "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "| itempop | ok |" in r.stdout and "| bpr | ok |" in r.stdout
    # plain progress lines (not a terminal): a start and an end per model, with the speed
    assert "synthetic · bpr · seed 0: started (1 epochs)" in r.stderr
    assert "✓ synthetic · bpr · seed 0" in r.stderr and "samples/s" in r.stderr
    [(path, rec)] = _records(out)
    assert rec["complete"] is True and [m["model"] for m in rec["models"]] == ["itempop", "bpr"]
    assert rec["matmul_peak"]["end"] is not None and len(rec["runs"]) == 1
    assert path.with_suffix(".md").exists() and f"wrote {path}" in r.stderr
    # the explicit subcommand is the same command
    r = runner.invoke(app, ["bench", "run", "-d", "synthetic", "-m", "itempop", *FAST, "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert len(_records(out)) == 2  # a finished bench run again measures again, into a new file


def test_a_killed_bench_keeps_its_models_and_the_rerun_resumes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "bench"
    args = ["bench", "-d", "synthetic", "-m", "itempop,bpr,ncf", *FAST, "--set", "ncf.embedding_size=4"]
    args += ["--out", str(out)]
    with monkeypatch.context() as m:
        _patch_bench_model(m, kill_at="bpr")
        r = runner.invoke(app, args)
    assert r.exit_code != 0
    [(path, partial)] = _records(out)
    assert partial["complete"] is False
    assert [m["model"] for m in partial["models"]] == ["itempop"] and partial["models"][0]["status"] == "ok"
    assert partial["matmul_peak"]["end"] is None
    md = path.with_suffix(".md").read_text()
    assert "| itempop | ok |" in md and "unfinished" in md
    assert not list(out.glob(".*.tmp"))  # atomic writes leave no temporary file

    calls = _patch_bench_model(monkeypatch)
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    assert calls == ["bpr", "ncf"]  # itempop was measured before the kill
    assert f"resuming {path}" in r.stderr and "itempop: measured in the unfinished record, skipped" in r.stderr
    [(path2, rec)] = _records(out)
    assert path2 == path and rec["complete"] is True
    assert [m["model"] for m in rec["models"]] == ["itempop", "bpr", "ncf"]
    assert rec["models"][0] == partial["models"][0]  # kept as measured
    assert [run["models"] for run in rec["runs"]] == [["itempop"], ["bpr", "ncf"]]
    assert rec["models"][2]["peak_fraction"] > 0
    assert "measured in 2 runs" in path.with_suffix(".md").read_text()


def test_fresh_and_other_options_start_a_new_record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "bench"
    base = ["bench", "-d", "synthetic", "-m", "itempop,bpr", *FAST, "--out", str(out)]
    with monkeypatch.context() as m:
        _patch_bench_model(m, kill_at="bpr")
        assert runner.invoke(app, base).exit_code != 0
    calls = _patch_bench_model(monkeypatch)
    assert runner.invoke(app, [*base, "--set", "bpr.epochs=2"]).exit_code == 0  # other options: not resumed
    assert runner.invoke(app, [*base, "--fresh"]).exit_code == 0
    assert calls == ["itempop", "bpr"] * 2
    recs = _records(out)
    assert len(recs) == 3 and sum(rec["complete"] is False for _p, rec in recs) == 1


def test_bench_takes_a_comma_list_of_datasets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def tiny(name: str, _opts: Any) -> Split:
        seed = {"tiny-a": 1, "tiny-b": 2}[name]
        return leave_one_out(
            make_synthetic(n_users=40, n_items=150, mean_interactions=12, seed=seed, name=name), seed=0
        )

    checked: list[list[str]] = []
    monkeypatch.setattr("recbench.runner.check_datasets", lambda names, _dir: checked.append(list(names)))
    monkeypatch.setattr(session, "_load_split", tiny)
    out = tmp_path / "bench"
    r = runner.invoke(app, ["bench", "--dataset", "tiny-a, tiny-b", "-m", "itempop", *FAST, "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert checked == [["tiny-a", "tiny-b"]]
    assert sorted(rec["dataset"] for _p, rec in _records(out)) == ["tiny-a", "tiny-b"]
    assert "# recbench bench: tiny-a" in r.stdout and "# recbench bench: tiny-b" in r.stdout


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--threads", "-1"], "--threads -1"),
        (["--device", "gpu"], "unknown device 'gpu'; valid: cpu, cuda, cuda:N, mps, auto"),
        (["-d", "nosuch"], "unknown dataset 'nosuch'"),
        (["-d", " , "], "--dataset: give at least one dataset"),
        (["-m", "nosuch"], "unknown model 'nosuch'"),
        (["-m", "bpr", "--set", "ncf.epochs=2"], "not in --models"),
        (["-d", "ml-100k", "-m", "bpr", "--set", "bpr.nope=1"], "unknown parameter bpr.nope"),  # before a fetch
        (["--repeats", "0"], "--repeats must be at least 1"),
    ],
)
def test_bench_errors_are_one_line_and_write_nothing(tmp_path: Path, args: list[str], needle: str) -> None:
    out = tmp_path / "bench"
    r = runner.invoke(app, ["bench", *args, "--out", str(out)])
    assert r.exit_code == 2, r.output
    assert needle in r.output and "Traceback" not in r.output
    assert not out.exists()


def test_bench_help_lists_the_subcommands() -> None:
    r = runner.invoke(app, ["bench", "--help"], env={"COLUMNS": "200"})
    assert r.exit_code == 0
    for sub in ("run", "data", "make-ml1m", "merge"):
        assert sub in r.output
    r = runner.invoke(app, ["bench", "run", "--help"], env={"COLUMNS": "200"})
    assert r.exit_code == 0 and "--fresh" in r.output and "--matmul-n" in r.output


def test_make_ml1m_data_and_merge(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dat = tmp_path / "ratings.dat"
    r = runner.invoke(app, ["bench", "make-ml1m", str(dat), "--users", "30", "--items", "150", "--ratings", "600"])
    assert r.exit_code == 0, r.output
    made = json.loads(r.stdout)
    assert made["source"] == "synthetic" and made["rows"] == len(dat.read_text().splitlines()) > 0
    timing = tmp_path / "timing.json"
    r = runner.invoke(app, ["bench", "data", str(dat), "--repeats", "1", "--json", str(timing)])
    assert r.exit_code == 0, r.output
    assert json.loads(timing.read_text())["rows"] == made["rows"] == json.loads(r.stdout)["rows"]
    assert runner.invoke(app, ["bench", "data", str(tmp_path / "none.dat")]).exit_code == 2

    out = tmp_path / "bench"
    for m in ("itempop", "bpr"):
        assert runner.invoke(app, ["bench", "-m", m, *FAST, "--out", str(out / m)]).exit_code == 0
    parts = [str(p) for p in sorted(out.glob("*/*.json"))]
    merged = tmp_path / "merged.json"
    (tmp_path / "empty.json").write_text("")  # a process killed as it claimed its file
    r = runner.invoke(
        app, ["bench", "merge", str(merged), *parts, str(tmp_path / "missing.json"), str(tmp_path / "empty.json")]
    )
    assert r.exit_code == 0, r.output
    assert "empty.json: not a bench record, skipped" in r.stderr
    rec = json.loads(merged.read_text())
    assert [m["model"] for m in rec["models"]] == ["bpr", "itempop"] and len(rec["runs"]) == 2
    assert "| bpr | ok |" in merged.with_suffix(".md").read_text()
    r = runner.invoke(app, ["bench", "merge", str(merged), str(tmp_path / "missing.json")])
    assert r.exit_code == 1 and "no records to merge" in r.output


def test_python_dash_m_recbench_bench_is_the_same_app() -> None:
    from recbench.bench import __main__ as main_module
    from recbench.bench.cli import bench_app

    assert main_module.bench_app is bench_app
