"""Wall time of one grid of equal cells under ``--jobs 1``, ``--jobs 2`` and ``--executor ray``,
side by side in one run (rounds interleaved; medians and per-round ratios).

    python benchmarks/executors.py --rounds 3 --out results/bench

Each run is the real command in a fresh process, into a fresh results folder, on the embedded
synthetic data set (already cached: the first run of each round builds nothing), so the times
include what a user waits for: interpreter and torch start-up, worker start-up, the fits and
the evaluations. The JSON record goes to ``OUT/executors-<timestamp>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

GRID = ["--dataset", "synthetic", "--models", "ncf", "--seeds", "0,1,2,3,4,5,6,7", "--threads", "1"]
VARIANTS = {"jobs 1": ["--jobs", "1"], "jobs 2": ["--jobs", "2"], "ray": ["--executor", "ray"]}


def run(args: list[str], out: Path, env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    r = subprocess.run(
        [sys.executable, "-m", "recbench.cli", "run", *GRID, *args, "--out", str(out)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"{args} failed:\n{r.stderr[-2000:]}")
    return seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path("results/bench"))
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="recbench-executors-"))
    env = {**os.environ, "RECBENCH_HOME": str(work / "home"), "NO_COLOR": "1"}
    run(["--models", "itempop"], work / "warm", env)  # build the synthetic split once
    times: dict[str, list[float]] = {k: [] for k in VARIANTS}
    for r in range(a.rounds):
        for name, extra in VARIANTS.items():
            out = work / f"{name.replace(' ', '')}-{r}"
            times[name].append(run(extra, out, env))
            shutil.rmtree(out)
            print(f"round {r + 1}: {name}: {times[name][-1]:.1f} s", flush=True)
    n_cells = 8
    med = {k: statistics.median(v) for k, v in times.items()}
    ratios = [one / two for one, two in zip(times["jobs 1"], times["jobs 2"], strict=True)]
    ray_over = [(ray - two) / n_cells for ray, two in zip(times["ray"], times["jobs 2"], strict=True)]
    rec = {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "python benchmarks/executors.py " + " ".join(sys.argv[1:]),
        "grid": GRID,
        "n_cells": n_cells,
        "cores": os.cpu_count(),
        "times_s": times,
        "median_s": med,
        "speedup_jobs2_per_round": ratios,
        "speedup_jobs2_median": statistics.median(ratios),
        "ray_overhead_s_per_cell_vs_jobs2_per_round": ray_over,
        "ray_overhead_s_per_cell_vs_jobs2_median": statistics.median(ray_over),
    }
    a.out.mkdir(parents=True, exist_ok=True)
    path = a.out / f"executors-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    path.write_text(json.dumps(rec, indent=1) + "\n")
    print(
        json.dumps(
            {k: rec[k] for k in ("median_s", "speedup_jobs2_median", "ray_overhead_s_per_cell_vs_jobs2_median")},
            indent=1,
        )
    )
    print(f"wrote {path}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
