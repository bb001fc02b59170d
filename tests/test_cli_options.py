"""The options the commands share: declared once (same help, same default everywhere), checked
before any work (``--device``, ``--threads``, ``--test``), and ``--from-record``'s checks as a
library function (:func:`recbench.rerun.prepare_rerun`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from recbench.cli import app
from recbench.models.base import ConfigError

runner = CliRunner()


def _commands() -> dict[str, Any]:
    """Every leaf command of the app by its path (``run``, ``bench run``, ...)."""
    out: dict[str, Any] = {}

    def walk(cmd: Any, path: str) -> None:
        subs = getattr(cmd, "commands", None)
        if subs:
            for name, sub in subs.items():
                walk(sub, f"{path} {name}".strip())
        else:
            out[path] = cmd

    walk(typer.main.get_command(app), "")
    return out


def _params(name: str) -> dict[str, Any]:
    return {p.name: p for p in _commands()[name].params}


def test_shared_options_have_one_help_and_one_default() -> None:
    commands = _commands()
    for option, expected_default in (("threads", 1), ("data_dir", None), ("device", "cpu"), ("jobs", 1)):
        found = {name: _params(name)[option] for name in commands if option in _params(name)}
        assert len(found) >= 3, (option, sorted(found))
        assert {p.default for p in found.values()} == {expected_default}, option
        assert len({p.help for p in found.values()}) == 1, (option, {n: p.help for n, p in found.items()})
    threads_in = {name for name in commands if "threads" in _params(name)}
    assert {"run", "tune", "experiment", "diagnose", "bench run"} <= threads_in


def test_seed_defaults_are_explained_where_they_differ() -> None:
    run, experiment = _params("run")["seeds"], _params("experiment")["seeds"]
    assert run.default == "0" and experiment.default == "0,1,2"
    assert "experiment" in run.help and "0,1,2" in run.help
    assert "run" in experiment.help


@pytest.mark.parametrize("command", [["run", "-m", "itempop"], ["tune", "-d", "synthetic", "-m", "bpr"], ["bench"]])
@pytest.mark.parametrize(
    ("device", "needle"),
    [("gpu", "unknown device 'gpu'; valid: cpu, cuda, cuda:N, mps, auto"), ("cuda:x", "unknown device 'cuda:x'")],
)
def test_device_is_checked_before_any_work(tmp_path: Path, command: list[str], device: str, needle: str) -> None:
    out = tmp_path / "out"
    r = runner.invoke(app, [*command, "--device", device, "--out", str(out)])
    assert r.exit_code == 2, r.output
    lines = [ln for ln in r.output.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and needle in lines[0]
    assert not out.exists()


def test_device_check_accepts_the_valid_forms(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from recbench.runner import check_device

    for ok in ("cpu", "auto"):
        check_device(ok)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    for ok in ("cuda", "cuda:0", "cuda:1"):
        check_device(ok)
    with pytest.raises(ConfigError, match="2 CUDA device"):
        check_device("cuda:2")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="no MPS device"):
        check_device("mps")
    for bad in ("CUDA", "cuda:", "gpu", "cpu:0", ""):
        with pytest.raises(ConfigError, match="unknown device"):
            check_device(bad)


@pytest.mark.parametrize("command", [["run", "-m", "itempop"], ["experiment", "table2", "-d", "synthetic"], ["bench"]])
def test_negative_threads_is_one_line(tmp_path: Path, command: list[str]) -> None:
    r = runner.invoke(app, [*command, "--threads", "-1", "--out", str(tmp_path / "out")])
    assert r.exit_code == 2 and "error: --threads -1: give 0" in r.output
    assert not (tmp_path / "out").exists()


def test_report_test_is_a_choice() -> None:
    p = _params("report")["test"]
    assert p.default == "wilcoxon" and "wilcoxon|bootstrap" in (p.metavar or "")
    r = runner.invoke(app, ["report", "--test", "ttest"])
    assert r.exit_code == 2 and "unknown test 'ttest'; valid: wilcoxon, bootstrap" in r.output


def test_prepare_rerun_checks_a_record_before_any_fit(tmp_path: Path) -> None:
    from recbench.rerun import prepare_rerun

    src = tmp_path / "src"
    assert runner.invoke(app, ["run", "-m", "itempop", "--out", str(src)]).exit_code == 0
    [path] = list((src / "records").rglob("*.json"))
    rerun = prepare_rerun(path, out=tmp_path / "again")
    assert rerun.cell.model == "itempop" and rerun.cell.dataset == "synthetic"
    assert rerun.opts.force and rerun.opts.device == "cpu" and rerun.opts.out == tmp_path / "again"
    assert rerun.split.fingerprint == rerun.record.data["split"] and rerun.changed_versions == {}

    doc = json.loads(path.read_text())
    doc["versions"] = {**doc["versions"], "torch": "1.0.0"}
    changed = path.with_name("changed.json")  # beside its ranks file
    changed.write_text(json.dumps(doc))
    assert prepare_rerun(changed, out=tmp_path / "again").changed_versions["torch"][0] == "1.0.0"
    doc["split"] = "0" * 64
    changed.write_text(json.dumps(doc))
    with pytest.raises(ConfigError, match="cannot rerun it exactly"):
        prepare_rerun(changed, out=tmp_path / "again")
    doc["device"] = "gpu"
    changed.write_text(json.dumps(doc))
    with pytest.raises(ConfigError, match="unknown device 'gpu'"):
        prepare_rerun(changed, out=tmp_path / "again")
    assert not (tmp_path / "again").exists()
