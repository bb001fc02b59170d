"""The cost of ``recbench run --portable-floats``: native and portable fits of the same cells,
alternated round by round (order swapped every round), each a fresh ``recbench run`` process
with one thread; the ratio is per round (portable s/epoch over native s/epoch), summarised by
its median. Writes ``results/bench/portable-floats-<UTC time>.json``.

    python benchmarks/portable_floats.py --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CELLS = {  # label -> recbench run arguments (one cell each)
    "ncf ml-100k (3 epochs)": ["-d", "ml-100k", "-m", "ncf", "--set", "ncf.epochs=3"],
    "cadncf filmtrust (1 epoch)": ["-d", "filmtrust", "-m", "cadncf", "--set", "cadncf.epochs=1"],
}


def fit(args: list[str], portable: bool, out: Path) -> float:
    """One fresh process (native: without the portable settings in its environment); its record's s/epoch."""
    from recbench.numerics import PORTABLE_ENV

    cmd = [sys.executable, "-m", "recbench.cli", "run", *args, "--threads", "1", "--force", "--out", str(out)]
    env = {k: v for k, v in os.environ.items() if k not in PORTABLE_ENV}
    subprocess.run([*cmd, *(["--portable-floats"] if portable else [])], env=env, check=True, capture_output=True)
    (path,) = (out / "records").rglob("*.json")
    rec = json.loads(path.read_text())
    path.unlink()
    return rec["timing"]["s_per_epoch"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", type=Path, default=REPO / "results" / "bench")
    a = ap.parse_args()
    rounds: dict[str, list[dict[str, float]]] = {c: [] for c in CELLS}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(a.rounds):
            for label, args in CELLS.items():
                order = (False, True) if r % 2 == 0 else (True, False)
                got = {p: fit(args, p, Path(tmp) / f"{r}-{p}") for p in order}
                load = os.getloadavg()[0]
                rounds[label].append(
                    {
                        "native_s_per_epoch": got[False],
                        "portable_s_per_epoch": got[True],
                        "ratio": got[True] / got[False],
                        "load_1min": load,
                    }
                )
                print(label, rounds[label][-1], flush=True)
    summary = {
        label: {
            "median_ratio": statistics.median(x["ratio"] for x in rs),
            "range": [min(x["ratio"] for x in rs), max(x["ratio"] for x in rs)],
            "rounds": len(rs),
        }
        for label, rs in rounds.items()
    }
    from recbench.provenance import code_version, hardware

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    a.out.mkdir(parents=True, exist_ok=True)
    path = a.out / f"portable-floats-{stamp}.json"
    path.write_text(
        json.dumps({"summary": summary, "rounds": rounds, "hardware": hardware(), "code": code_version()}, indent=1)
    )
    print(json.dumps(summary, indent=1))
    print(path)


if __name__ == "__main__":
    main()
