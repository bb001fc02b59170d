"""Helpers of the reliability suite: run the real ``recbench`` in subprocesses, snapshot and
validate a results folder."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pytest
import torch
from typer.testing import CliRunner, Result

from recbench.cli import app
from recbench.results import Record, RecordWarning, iter_records, read_record

REPO = Path(__file__).resolve().parents[2]
RECBENCH = [sys.executable, "-m", "recbench.cli"]
KILLER = [sys.executable, str(Path(__file__).with_name("_killer.py"))]

# The grid of the crash and concurrency tests: 10 cheap cells on the embedded synthetic set,
# both protocols (so every record has two rank arrays and a validation-free split).
GRID_SEEDS = (0, 1, 2, 3, 4)
GRID = [
    "--dataset",
    "synthetic",
    "--models",
    "itempop,bpr",
    "--set",
    "bpr.epochs=5",
    "--protocol",
    "both",
]
N_CELLS = 2 * len(GRID_SEEDS)

# The embedded synthetic set is sized for a demo (NCF ~0.1 s an epoch): the tests that kill a fit
# after its second checkpoint run on this larger generated set instead (``large_env``).
LARGE = "synthetic-large"
LARGE_DATASETS = Path(__file__).with_name("datasets-large.toml")


def grid_args(out: Path, seeds: Sequence[int] = GRID_SEEDS) -> list[str]:
    return ["run", *GRID, "--seeds", ",".join(map(str, seeds)), "--out", str(out)]


def child_env(**extra: str) -> dict[str, str]:
    """The environment of a ``recbench`` subprocess: this test's RECBENCH_HOME (set per test by
    ``tests/conftest.py``; pass ``RECBENCH_HOME=...`` to override), one BLAS/torch thread (2
    shared cores), no colour and a wide console so an error stays on one line."""
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[var] = "1"
    env.pop("FORCE_COLOR", None)
    env["NO_COLOR"] = "1"
    env["COLUMNS"] = "200"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    env.update(extra)
    assert "RECBENCH_HOME" in env, "tests/conftest.py sets RECBENCH_HOME for every test"
    return env


def large_env(**extra: str) -> dict[str, str]:
    """:func:`child_env` with the registry extended by ``LARGE`` (``datasets-large.toml``)."""
    return child_env(RECBENCH_DATASETS=str(LARGE_DATASETS), **extra)


def recbench(
    args: Sequence[str], *, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run ``recbench ARGS`` in a fresh process and wait for it."""
    return subprocess.run(
        [*RECBENCH, *map(str, args)],
        cwd=REPO,
        env=env or child_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def spawn(
    args: Sequence[str],
    log: Path,
    *,
    env: dict[str, str] | None = None,
    command: Sequence[str] = RECBENCH,
) -> subprocess.Popen[bytes]:
    """Start ``recbench ARGS`` (or ``command ARGS``) in the background, output to ``log``."""
    with log.open("wb") as fh:
        return subprocess.Popen(
            [*command, *map(str, args)],
            cwd=REPO,
            env=env or child_env(),
            stdout=fh,
            stderr=subprocess.STDOUT,
        )


def error_lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.startswith("error:")]


# ----------------------------------------------------------------------------- results folders


def json_records(out: Path) -> list[Path]:
    root = out / "records"
    return sorted(p for p in root.rglob("*.json") if p.is_file()) if root.exists() else []


def snapshot(out: Path) -> dict[str, str]:
    """sha256 of every record JSON and ranks file (relative path → digest)."""
    root = out / "records"
    if not root.exists():
        return {}
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and (p.suffix == ".json" or p.name.endswith(".ranks.npz")) and not p.name.startswith(".")
    }


def finished_records(out: Path) -> list[Record]:
    """Every record under ``out``, each of which must be a complete, valid record: a warning
    (a half-written or inconsistent record) fails the caller."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", RecordWarning)
        recs = list(iter_records(out))
    assert len(recs) == len(json_records(out))
    for r in recs:
        assert r.status == "ok", (r.path, r.data.get("error"))
        assert set(r.ranks) == {f"test/{p}" for p in r["protocols"]}, r.path
    return recs


def leftovers(out: Path) -> dict[str, list[str]]:
    """Files a reader must ignore: temp files of killed writers and ranks files no JSON uses."""
    root = out / "records"
    used = set()
    for p in json_records(out):
        rf = read_record(p, with_ranks=False).data.get("ranks_file")
        if rf:
            used.add(p.with_name(rf))
    files = [p for p in root.rglob("*") if p.is_file()] if root.exists() else []
    return {
        "tmp": sorted(p.name for p in files if p.name.endswith(".tmp")),
        "orphan_ranks": sorted(p.name for p in files if p.name.endswith(".ranks.npz") and p not in used),
    }


_runner = CliRunner()


@contextmanager
def home(path: Path) -> Iterator[None]:
    """RECBENCH_HOME set to ``path`` for an in-process command (module-scoped fixtures run
    outside the per-test home of ``tests/conftest.py``)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RECBENCH_HOME", str(path))
        yield


def cli(args: Sequence[str]) -> Result:
    """The real ``recbench`` command, in this process (no start-up cost), with one torch thread
    like the subprocesses of :func:`child_env`."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _runner.invoke(app, [str(a) for a in args])
    finally:
        torch.set_num_threads(threads)


def report_csv(out: Path) -> str:
    """``recbench report --format csv`` of a results folder (the real command, in-process)."""
    r = _runner.invoke(app, ["report", "--results", str(out), "--format", "csv"])
    assert r.exit_code == 0, r.output
    return r.stdout


def report_frame(csv_text: str) -> pd.DataFrame:
    return pd.read_csv(io.StringIO(csv_text))
