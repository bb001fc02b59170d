"""The plan: typed cells resolved once (precedence, range checks), progress in a terminal and in
a log, and the runner free of the tuner."""

from __future__ import annotations

import ast
import io
import json
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from recbench.cli import app
from recbench.models.base import ConfigError
from recbench.plan import PRECEDENCE, plan_run, resolve_config
from recbench.progress import PlainReporter, RichReporter, make_reporter
from recbench.runner import Cell, RunOptions, SplitSpec

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]


def test_precedence_defaults_paper_tuned_epochs_set() -> None:
    assert PRECEDENCE == ("defaults", "paper", "tuned", "epochs", "set")
    assert resolve_config("ncf").learning_rate == 1e-3  # code default
    cfg = resolve_config(
        "ncf",
        paper={"learning_rate": 0.1, "epochs": 7, "n_negatives": 2},
        tuned={"learning_rate": "0.01", "epochs": 9},
        epochs=3,
        sets={"epochs": "5"},
    )
    assert (cfg.learning_rate, cfg.epochs, cfg.n_negatives) == (0.01, 5, 2)  # tuned, --set, paper
    assert resolve_config("ncf", paper={"epochs": 7}, epochs=3).epochs == 3
    assert resolve_config("itempop", epochs=3) == resolve_config("itempop")  # no epochs field: ignored


@pytest.mark.parametrize(
    ("model", "field", "value", "message"),
    [
        ("ncf", "epochs", "0", "ncf.epochs=0: epochs must be ≥ 1"),
        ("ncf", "epochs", "-3", "epochs must be ≥ 1"),
        ("ncf", "batch_size", "0", "batch_size must be ≥ 1"),
        ("ncf", "learning_rate", "0", "learning_rate must be > 0"),
        ("ncf", "learning_rate", "-0.1", "learning_rate must be > 0"),
        ("opeci", "n_negatives", "0", "n_negatives must be ≥ 1"),
        ("opeci", "reg", "-1", "reg must be ≥ 0"),
        ("opeci", "mlp_hidden", "(64,0)", "every layer size must be ≥ 1"),
        ("ncf", "alpha", "1.5", "alpha must be ≤ 1"),
        ("bpr", "learning_rate", "nan", "not a number"),
    ],
)
def test_ranges_are_checked_with_the_field_named(model: str, field: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        resolve_config(model, sets={field: value})


def test_cli_rejects_a_bad_value_before_loading_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import recbench.data as data

    def no_data(*_a, **_k):
        raise AssertionError("data loaded before the check")

    monkeypatch.setattr(data, "load_split", no_data)
    for args, msg in [
        (["--set", "ncf.epochs=0"], "ncf.epochs=0: epochs must be ≥ 1"),
        (["--jobs", "0"], "--jobs 0: must be ≥ 1"),
        (["--checkpoint-every", "0"], "--checkpoint-every 0: must be ≥ 1"),
        (["--seeds", "-1"], "seeds must be ≥ 0"),
        (["--split-seed", "-5"], "--split-seed -5: must be ≥ 0"),
        (["--eval-every", "-1"], "--eval-every -1: must be ≥ 0"),
    ]:
        r = runner.invoke(app, ["run", "--dataset", "synthetic", "--models", "ncf", "--out", str(tmp_path), *args])
        assert r.exit_code == 2 and msg in r.output, (args, r.output)
    assert not (tmp_path / "records").exists()


def test_plan_run_makes_typed_cells_in_grid_order() -> None:
    opts = RunOptions(seeds=(0, 1), overrides={"ncf": {"epochs": "2"}}, split_seed=3, validation=True, early_stopping=2)
    cells = plan_run(["a", "b"], ["itempop", "ncf"], opts)
    assert [(c.dataset, c.model, c.seed) for c in cells] == [
        (d, m, s) for d in ("a", "b") for m in ("itempop", "ncf") for s in (0, 1)
    ]
    ncf = cells[2]
    assert isinstance(ncf, Cell) and ncf.config.epochs == 2 and type(ncf.config).__name__ == "NCFConfig"
    assert ncf.split == SplitSpec("a", 3, True, 99) and ncf.early_stopping == 2
    assert ncf.label == "a · ncf · seed 0"


def test_plain_progress_in_a_log(tmp_path: Path) -> None:
    """CliRunner's stderr is not a terminal: one line per epoch and per cell."""
    r = runner.invoke(
        app,
        [
            "run",
            "--dataset",
            "synthetic",
            "--models",
            "ncf",
            "--set",
            "ncf.epochs=2",
            "--eval-every",
            "1",
            "--out",
            str(tmp_path),
        ],
    )
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    epochs = [ln for ln in lines if "synthetic · ncf · seed 0: epoch" in ln]
    assert len(epochs) == 2 and epochs[0].startswith("synthetic · ncf · seed 0: epoch 1/2 · loss ")
    assert "samples/s · test hr@10 " in epochs[1] and "s elapsed [" in epochs[1]
    assert sum(ln.startswith("✓ synthetic · ncf · seed 0  sampled: hr@10") for ln in lines) == 1


def test_make_reporter_picks_by_terminal() -> None:
    assert isinstance(make_reporter(Console(file=io.StringIO())), PlainReporter)
    assert isinstance(make_reporter(Console(file=io.StringIO(), force_terminal=True)), RichReporter)


def test_rich_reporter_draws_concurrent_cells(tiny_split, tmp_path: Path) -> None:
    from recbench.plan import run_grid

    buf = io.StringIO()
    console = Console(file=buf, force_terminal=True, width=200)
    with RichReporter(console) as rep:
        rep.cell_start("a · ncf · seed 0", 3)
        rep.cell_start("a · ncf · seed 1", 3)
        rep.epoch("a · ncf · seed 1", {"epoch": 1, "loss": 0.5, "samples_per_s": 10.0})
        rep.batch("a · ncf · seed 0", 5, 10)
        assert len(rep.tasks) == 2
        recs = run_grid(["tiny"], ["itempop"], RunOptions(out=tmp_path), rep, split_loader=lambda _n: tiny_split)
    assert "✓" in buf.getvalue() and "tiny · itempop · seed 0" in buf.getvalue() and recs[0].status == "ok"


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return out


def test_the_runner_does_not_import_the_tuner_or_the_plan() -> None:
    for module in ("runner.py", "executors.py", "provenance.py"):
        imports = _imports(ROOT / "recbench" / module)
        banned = ("recbench.tune", "recbench.plan", "recbench.experiments")
        found = [m for m in imports if m in banned or m.startswith(tuple(b + "." for b in banned))]
        assert not found, (module, found)


def test_records_of_run_keep_their_keys(tiny_split, tmp_path: Path) -> None:
    """The record key is the hash of the same identity as before the plan existed."""
    from recbench.plan import run_grid
    from recbench.results import record_key

    (rec,) = run_grid(
        ["tiny"],
        ["ncf"],
        RunOptions(out=tmp_path, overrides={"ncf": {"epochs": "1"}}),
        split_loader=lambda _n: tiny_split,
    )
    d = json.loads(rec.path.read_text())
    ident = {k: d[k] for k in ("dataset", "split", "model", "config", "seed", "device", "eval_every", "early_stopping")}
    ident["tags"] = {}
    assert record_key(ident) == d["key"]


def test_report_metric_bounds(tmp_path: Path) -> None:
    runner.invoke(app, ["run", "--dataset", "synthetic", "--models", "itempop", "--out", str(tmp_path)])
    zero = runner.invoke(app, ["report", "--results", str(tmp_path), "--metric", "hr@0"])
    assert zero.exit_code == 2 and "K must be ≥ 1" in zero.output
    big = runner.invoke(app, ["report", "--results", str(tmp_path), "--metric", "hr@500"])
    assert big.exit_code == 2 and "100 candidates" in big.output
    ok = runner.invoke(app, ["report", "--results", str(tmp_path), "--metric", "hr@99"])
    assert ok.exit_code == 0, ok.output


def test_bench_refuses_negative_threads_in_one_line() -> None:
    r = runner.invoke(app, ["bench", "--threads", "-1"])
    assert r.exit_code == 2 and "--threads -1" in r.output and "Traceback" not in r.output


def test_help_shows_flags_as_flags() -> None:
    r = runner.invoke(app, ["experiment", "--help"], env={"COLUMNS": "160"})
    assert r.exit_code == 0
    line = next(ln for ln in r.output.splitlines() if "--dry-run" in ln)
    assert "<bool>" not in line
    assert "MODEL.PARAM=VALUE" in r.output


def test_run_dry_run_lists_cells_with_estimates(tmp_path: Path) -> None:
    assert (
        runner.invoke(
            app, ["run", "--dataset", "synthetic", "--models", "ncf", "--set", "ncf.epochs=2", "--out", str(tmp_path)]
        ).exit_code
        == 0
    )
    r = runner.invoke(
        app,
        [
            "run",
            "--dataset",
            "synthetic",
            "--models",
            "ncf,itempop",
            "--set",
            "ncf.epochs=4",
            "--seeds",
            "0",
            "--out",
            str(tmp_path),
            "--dry-run",
        ],
        env={"COLUMNS": "200"},
    )
    assert r.exit_code == 0, r.output
    ncf = next(ln for ln in r.output.splitlines() if "│ ncf" in ln)
    assert "to run" in ncf and " s" in ncf.split("│")[-2]  # estimated from the 2-epoch record
    assert "unknown" in next(ln for ln in r.output.splitlines() if "│ itempop" in ln)
    assert "estimated" in r.output and len(list((tmp_path / "records").rglob("*.json"))) == 1  # nothing fitted
    again = runner.invoke(
        app,
        [
            "run",
            "--dataset",
            "synthetic",
            "--models",
            "ncf",
            "--set",
            "ncf.epochs=2",
            "--out",
            str(tmp_path),
            "--dry-run",
        ],
        env={"COLUMNS": "200"},
    )
    assert "record exists" in again.output


def test_dry_run_finds_the_record_of_a_model_with_execution_switches(tmp_path: Path) -> None:
    """A record stores its config's identity (no execution switches such as OPECI's
    ``loo_aggregation``); the dry run compares identities, so an OPECI cell that has a record is
    not shown as "to run"."""
    small = ["--set", "opeci.epochs=1", "--set", "opeci.embedding_size=8", "--set", "opeci.mlp_hidden=(16,)"]
    args = ["run", "--dataset", "synthetic", "--models", "opeci", *small, "--threads", "1", "--out", str(tmp_path)]
    assert runner.invoke(app, args).exit_code == 0
    again = runner.invoke(app, [*args, "--dry-run"], env={"COLUMNS": "200"})
    assert again.exit_code == 0, again.output
    assert "record exists" in next(ln for ln in again.output.splitlines() if "│ opeci" in ln)


def test_dry_run_uses_the_runs_own_record_test(tmp_path: Path) -> None:
    """A record of the same model, config and seed on another split (the test split against the
    validation split), with other early stopping or fewer protocols, is not this cell's record:
    the dry run says "to run" exactly where the run would fit (it said "record exists")."""
    base = ["run", "--dataset", "synthetic", "--models", "ncf", "--set", "ncf.epochs=2", "--seeds", "0"]
    base += ["--threads", "1", "--out", str(tmp_path)]
    assert runner.invoke(app, base).exit_code == 0

    def status(*extra: str) -> str:
        r = runner.invoke(app, [*base, *extra, "--dry-run"], env={"COLUMNS": "200"})
        assert r.exit_code == 0, r.output
        return next(ln for ln in r.output.splitlines() if "│ ncf" in ln)

    assert "record exists" in status()
    assert "to run" in status("--force")  # a forced run refits it
    assert "to run" in status("--validation")
    assert "to run" in status("--protocol", "both")
    assert runner.invoke(app, [*base, "--validation", "--early-stopping", "2"]).exit_code == 0
    assert "record exists" in status("--validation", "--early-stopping", "2")
    assert "to run" in status("--validation", "--early-stopping", "3")
