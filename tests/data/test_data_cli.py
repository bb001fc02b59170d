"""`recbench fetch` and `recbench datasets` through Typer's CliRunner."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from recbench.cli import app

from .builders import Tiny, tiny_entry, toml_dumps

runner = CliRunner()


def _flat(text: str) -> str:
    return " ".join(text.split())


def test_fetch_unknown_name_exits_2_listing_valid_names() -> None:
    res = runner.invoke(app, ["fetch", "ml-20m"])
    assert res.exit_code == 2
    out = _flat(res.output)
    assert "unknown dataset 'ml-20m'" in out and "ml-100k, ml-1m, yelp, filmtrust, synthetic" in out


def test_fetch_prints_stats_and_datasets_lists_them(tiny: Tiny, tmp_path: Path) -> None:
    home = tmp_path / "home"
    res = runner.invoke(app, ["fetch", "tiny", "--from", str(tiny.archive), "--data-dir", str(home)])
    assert res.exit_code == 0, res.output
    assert "tiny: 20 users, 30 items, 120 ratings, density 20.00%, 0 duplicates dropped" in _flat(res.output)
    assert (home / "datasets" / "tiny" / "interactions.npz").is_file()
    res = runner.invoke(app, ["datasets", "--data-dir", str(home)], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    lines = {ln.split("│")[1].strip(): ln for ln in res.output.splitlines() if ln.count("│") > 3}
    assert "fetched" in lines["tiny"] and "120" in lines["tiny"] and "20.00%" in lines["tiny"]
    assert "not fetched" in lines["ml-100k"]
    assert "built-in" in lines["synthetic"]


def test_fetch_error_is_one_line_exit_1(tiny: Tiny, tmp_path: Path) -> None:
    res = runner.invoke(app, ["fetch", "tiny", "--from", str(tmp_path / "missing.zip")])
    assert res.exit_code == 1
    assert "error:" in res.output and "no such file or folder" in _flat(res.output)


def test_offline_fetch_names_from(tiny: Tiny, monkeypatch: pytest.MonkeyPatch) -> None:
    # the registry URL of the tiny data set points at a closed port (127.0.0.1:9)
    res = runner.invoke(app, ["fetch", "tiny"])
    assert res.exit_code == 1
    out = _flat(res.output)
    assert "cannot download tiny" in out and "recbench fetch tiny --from PATH" in out


def test_fetch_warning_is_shown(tiny: Tiny, monkeypatch: pytest.MonkeyPatch) -> None:
    """Other statistics than expected: an error naming both numbers; accepted on request, with
    the warning."""
    tiny.register(monkeypatch, expected={"users": 25})
    res = runner.invoke(app, ["fetch", "tiny", "--from", str(tiny.folder)])
    assert res.exit_code == 1
    assert "error: tiny: expected 25 users, parsed 20" in _flat(res.output) and "--allow-mismatch" in _flat(res.output)
    res = runner.invoke(app, ["fetch", "tiny", "--from", str(tiny.folder), "--allow-mismatch"])
    assert res.exit_code == 0
    assert "warning: tiny: expected 25 users, parsed 20" in _flat(res.output)


@pytest.mark.parametrize("command", [["datasets"], ["fetch", "tiny"], ["fetch", "ml-100k"]])
def test_bad_registry_entry_is_one_line_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: list[str]
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(toml_dumps({"tiny": tiny_entry(archive="rar")}))
    monkeypatch.setenv("RECBENCH_DATASETS", str(bad))
    home = tmp_path / "home"
    res = runner.invoke(app, [*command, "--data-dir", str(home)], env={"COLUMNS": "300"})
    assert res.exit_code == 2
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and "archive: 'rar' is not one of: zip, file" in lines[0]
    assert not home.exists()


def test_fetch_from_on_a_cached_set_says_it_was_not_read(tiny: Tiny, monkeypatch: pytest.MonkeyPatch) -> None:
    tiny.register(monkeypatch)
    assert runner.invoke(app, ["fetch", "tiny", "--from", str(tiny.folder)]).exit_code == 0
    again = runner.invoke(app, ["fetch", "tiny", "--from", str(tiny.archive)])
    assert (
        again.exit_code == 0 and "already cached" in _flat(again.output) and "--force replaces" in _flat(again.output)
    )
