"""Reproducibility: the same grid with the same seeds in two separate processes (separate data
caches and results folders) gives bit-identical metrics, per-user ranks and loss curves on CPU;
a record carries what is needed to rerun its cell, and ``recbench run --from-record FILE`` does
so exactly, or refuses with a one-line error when it cannot."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from recbench.cli import app
from recbench.registry import MODELS
from recbench.results import Record, iter_records

from ._procs import child_env, cli, home, json_records, spawn

GRID = [
    "run",
    "-d",
    "synthetic",
    "-m",
    "itempop,bpr,ncf",
    "--seeds",
    "0,1",
    "--protocol",
    "both",
    "--validation",
    "--split-seed",
    "3",
    "--set",
    "bpr.epochs=5",
    "--set",
    "ncf.epochs=2",
    "--set",
    "ncf.batch_size=1024",
]


def _by_cell(out: Path) -> dict[tuple[str, int], Record]:
    return {(r["model"], r["seed"]): r for r in iter_records(out)}


@pytest.fixture(scope="module")
def twin_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The grid run twice, at the same time, in two separate processes (a ``recbench``
    subprocess and this one), each with its own data cache and results folder."""
    base = tmp_path_factory.mktemp("twins")
    env = child_env(RECBENCH_HOME=str(base / "home-a"))
    proc = spawn([*GRID, "--out", base / "a"], base / "a.log", env=env)
    with home(base / "home-b"):
        r = cli([*GRID, "--out", base / "b"])
    assert proc.wait(timeout=180) == 0, (base / "a.log").read_text()
    assert r.exit_code == 0, r.output
    return base / "a", base / "b"


def test_two_processes_same_seed_are_bit_identical(fault: Any, twin_runs: tuple[Path, Path]) -> None:
    with fault(
        "the same grid (itempop, bpr, ncf × seeds 0, 1) run in two separate processes, each building its own split",
        "reproducibility",
    ) as f:
        a, b = (_by_cell(p) for p in twin_runs)
        assert a.keys() == b.keys() and len(a) == 6
        n_arrays = 0
        for cell, ra in a.items():
            rb = b[cell]
            assert ra.key == rb.key and ra["split"] == rb["split"]
            assert ra["metrics"] == rb["metrics"], cell  # JSON floats: bit-identical or unequal
            assert ra.ranks.keys() == rb.ranks.keys() == {"test/sampled", "test/full", "validation/sampled"}
            for k in ra.ranks:
                assert ra.ranks[k].dtype == rb.ranks[k].dtype and np.array_equal(ra.ranks[k], rb.ranks[k]), (cell, k)
                n_arrays += 1
            assert np.array_equal(ra.users, rb.users)
            la = [h["loss"] for h in ra["history"] if "loss" in h]
            assert la == [h["loss"] for h in rb["history"] if "loss" in h], cell
        # the seed matters: otherwise identical results would prove nothing
        for model in ("bpr", "ncf"):
            assert not np.array_equal(a[model, 0].ranks["test/full"], a[model, 1].ranks["test/full"]), model
        f.observed(
            f"identical record keys and split fingerprints, metrics equal to the last bit, all "
            f"{n_arrays} per-user rank arrays and the NCF loss curves identical; seeds 0 and 1 "
            f"differ, so the equality is not trivial"
        )


def test_records_carry_what_a_rerun_needs(twin_runs: tuple[Path, Path]) -> None:
    for r in iter_records(twin_runs[0]):
        assert set(r["config"]) == {f.name for f in dataclasses.fields(MODELS[r["model"]].Config)}
        assert len(r["split"]) >= 16 and r["split_info"]["seed"] == 3 and r["split_info"]["validation"]
        assert r["split_info"]["n_negatives"] == 99
        assert {"python", "numpy", "torch", "implicit", "recbench"} <= set(r["versions"])
        assert isinstance(r["seed"], int) and r["device"] == "cpu" and r["protocols"] == ["full", "sampled"]


def test_from_record_reruns_a_cell_exactly(fault: Any, twin_runs: tuple[Path, Path], tmp_path: Path) -> None:
    a = twin_runs[0]
    src = _by_cell(a)["ncf", 1]
    changed_data = tmp_path / "datasets.toml"
    changed_data.write_text(
        '[synthetic]\ngenerator = "synthetic"\nrating_values = [1, 2, 3, 4, 5]\ntimestamps = true\n'
        "[synthetic.params]\nn_users = 100\nn_items = 150\nmean_interactions = 9\nn_factors = 2\n"
        "affinity_scale = 8.0\npopularity_weight = 0.25\nseed = 1\n"
    )
    with fault(
        "`recbench run --from-record` of an NCF cell (non-default config, validation split, split seed 3, seed 1) "
        "in another process with a fresh cache",
        "reproducibility",
    ) as f:
        r = cli(["run", "--from-record", src.path, "--out", tmp_path / "rerun"])
        log = r.output
        assert r.exit_code == 0, log
        assert "identical metrics to the record" in log
        (new,) = list(iter_records(tmp_path / "rerun"))
        assert new.key == src.key and new["metrics"] == src["metrics"]
        assert all(np.array_equal(new.ranks[k], src.ranks[k]) for k in src.ranks)
        f.observed(
            "same record key, bit-identical metrics and per-user ranks; it prints “identical metrics to the record”"
        )
    with fault(
        "`--from-record` after the data set changed (synthetic regenerated with another seed)", "reproducibility"
    ) as f:
        with home(tmp_path / "home-2"), pytest.MonkeyPatch.context() as mp:
            mp.setenv("RECBENCH_DATASETS", str(changed_data))
            r = cli(["run", "--from-record", src.path, "--out", tmp_path / "changed"])
        log = r.output
        assert r.exit_code == 2, log
        line = next(ln for ln in log.splitlines() if ln.startswith("error:"))
        assert "cannot rerun it exactly" in line and src["split"][:16] in line
        assert json_records(tmp_path / "changed") == []
        f.observed(f"refused before fitting, exit 2, nothing written: “{line}”")


def _edited_record(src: Record, tmp_path: Path, **changes: Any) -> Path:
    d = json.loads(src.path.read_text())
    d.update(changes)
    p = tmp_path / src.path.name
    p.write_text(json.dumps(d))
    (tmp_path / d["ranks_file"]).write_bytes(src.path.with_name(d["ranks_file"]).read_bytes())
    return p


@pytest.mark.parametrize(
    ("name", "change", "needle"),
    [
        (
            "`--from-record` of a record whose model is no longer registered",
            {"model": "gone"},
            "unknown model 'gone'; valid: " + ", ".join(MODELS),
        ),
        (
            "`--from-record` of a record whose config has a parameter the model no longer has",
            "config",
            "unknown parameter ncf.dropout_old; valid: ",
        ),
        ("`--from-record` of a file that is not a record", "garbage", "not a valid JSON record"),
    ],
)
def test_from_record_refuses_what_it_cannot_rerun(
    fault: Any, twin_runs: tuple[Path, Path], tmp_path: Path, name: str, change: Any, needle: str
) -> None:
    with fault(name, "reproducibility") as f:
        src = _by_cell(twin_runs[0])["ncf", 0]
        if change == "config":
            path = _edited_record(src, tmp_path, config={**src["config"], "dropout_old": 0.5})
        elif change == "garbage":
            path = tmp_path / "x.json"
            path.write_bytes(b"\x00\x01 not json")
        else:
            path = _edited_record(src, tmp_path, **change)
        out = tmp_path / "out"
        r = CliRunner().invoke(app, ["run", "--from-record", str(path), "--out", str(out)])
        assert r.exit_code == 2, r.output
        line = next(ln for ln in r.output.splitlines() if ln.startswith("error:"))
        assert needle in line, line
        assert not out.exists()
        f.observed(f"exit 2, nothing written: “{line}”")


def test_from_record_made_with_other_library_versions(fault: Any, twin_runs: tuple[Path, Path], tmp_path: Path) -> None:
    with fault(
        "`--from-record` of a record made with other library versions (torch 1.0.0, implicit 0.1.0)", "reproducibility"
    ) as f:
        src = _by_cell(twin_runs[0])["bpr", 0]
        old = dict(src["versions"], torch="1.0.0", implicit="0.1.0")
        path = _edited_record(src, tmp_path, versions=old)
        r = cli(["run", "--from-record", path, "--out", tmp_path / "out"])
        assert r.exit_code == 0, r.output
        line = next(ln for ln in r.stderr.splitlines() if "versions differ" in ln)
        assert "torch 1.0.0 →" in line and "implicit 0.1.0 →" in line
        assert "identical metrics to the record" in r.stderr
        f.observed(
            f"reruns it and warns first: “{line}”; then reports whether the metrics are identical (here they are)"
        )
