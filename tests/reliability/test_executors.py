"""Executors: ``--jobs N`` worker processes and ``--executor ray`` write the same records with the
same numbers as one process; a Ray worker killed mid-cell is retried, resumes from its
checkpoint, and the grid completes."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from recbench.results import Record, iter_records

from ._procs import LARGE, child_env, large_env, recbench, spawn

pytestmark = pytest.mark.timeout(300)

GRID = [
    "--dataset",
    "synthetic",
    "--models",
    "itempop,ncf",
    "--set",
    "ncf.epochs=2",
    "--seeds",
    "0,1",
    "--protocol",
    "both",
]


def _records(out: Path) -> dict[tuple[str, int], Record]:
    recs = {(r["model"], r["seed"]): r for r in iter_records(out)}
    assert all(r.status == "ok" for r in recs.values()), [r.data.get("error") for r in recs.values()]
    return recs


def _same(a: dict[tuple[str, int], Record], b: dict[tuple[str, int], Record]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert a[k]["key"] == b[k]["key"] and a[k]["metrics"] == b[k]["metrics"], k
        assert a[k].path is not None and b[k].path is not None and a[k].path.name == b[k].path.name
        for p in a[k].ranks:
            assert np.array_equal(a[k].ranks[p], b[k].ranks[p]), (k, p)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    base = tmp_path_factory.mktemp("executors")
    env = child_env(RECBENCH_HOME=str(base / "home"))
    r = recbench(["run", *GRID, "--out", str(base / "one")], env=env, timeout=240)
    assert r.returncode == 0, r.stderr
    return base, _records(base / "one")


@pytest.mark.slow
def test_jobs_2_writes_the_same_records(reference: tuple[Path, dict], tmp_path: Path) -> None:
    base, ref = reference
    env = child_env(RECBENCH_HOME=str(base / "home"))
    r = recbench(["run", *GRID, "--jobs", "2", "--out", str(tmp_path / "two")], env=env, timeout=240)
    assert r.returncode == 0, r.stderr
    _same(_records(tmp_path / "two"), ref)
    # plain progress (stderr is not a terminal): a line per epoch, relayed from the workers
    assert len(re.findall(r"synthetic · ncf · seed \d: epoch \d/2 · loss", r.stderr)) == 4, r.stderr


# Ray starts its own processes (GCS, raylet, workers importing torch); on a loaded 2-core machine
# a task waited 2.5 min for its worker, so the Ray tests get generous limits (no cost when quiet:
# 21 s and 42 s there).
RAY_TIMEOUT_S = 600


@pytest.mark.slow
@pytest.mark.timeout(RAY_TIMEOUT_S + 60)
def test_ray_local_instance_writes_the_same_records(reference: tuple[Path, dict], tmp_path: Path) -> None:
    pytest.importorskip("ray")
    base, ref = reference
    env = child_env(RECBENCH_HOME=str(base / "home"))
    r = recbench(["run", *GRID, "--executor", "ray", "--out", str(tmp_path / "ray")], env=env, timeout=RAY_TIMEOUT_S)
    assert r.returncode == 0, r.stderr
    _same(_records(tmp_path / "ray"), ref)
    assert "4 cell(s) submitted" in r.stderr


@pytest.mark.slow
@pytest.mark.timeout(240 + 2 * RAY_TIMEOUT_S + 60)
def test_ray_retries_a_killed_worker_which_resumes(reference: tuple[Path, dict], tmp_path: Path) -> None:
    pytest.importorskip("ray")
    base, _ = reference
    env = large_env(RECBENCH_HOME=str(base / "home"))
    args = ["run", "--dataset", LARGE, "--models", "ncf", "--set", "ncf.epochs=6", "--executor", "ray"]
    one = recbench([*args[:-2], "--out", str(tmp_path / "one")], env=env, timeout=240)
    assert one.returncode == 0, one.stderr
    out = tmp_path / "ray"
    log = tmp_path / "ray.log"
    proc = spawn([*args, "--out", str(out)], log, env=env)
    deadline = time.monotonic() + RAY_TIMEOUT_S
    while not re.search(r"seed 0: epoch 2/6", log.read_text(errors="replace")):
        assert proc.poll() is None, log.read_text()
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.05)
    # the worker running the task (Ray titles its process after the task): SIGKILL it
    killed = subprocess.run(["pkill", "-9", "-f", "ray::_run_remote"], check=False)
    assert killed.returncode == 0, "no Ray worker to kill"
    assert proc.wait(timeout=RAY_TIMEOUT_S) == 0, log.read_text()
    text = log.read_text()
    assert re.search(rf"resuming {LARGE} · ncf · seed 0 at epoch [3-6]/6", text), text
    _same(_records(out), _records(tmp_path / "one"))
    assert not list(out.rglob("*.ckpt"))
