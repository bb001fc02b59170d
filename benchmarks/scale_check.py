#!/usr/bin/env python3
"""Memory stays bounded at Yelp size: full-ranking evaluation of every user of a generated data
set the size of Yelp (25,815 users × 25,677 items, 730,791 interactions: 663M user–item cells,
5.3 GB as one float64 matrix) and its sampled evaluation, with peak resident memory.

Usage: python benchmarks/scale_check.py [--models bpr,itempop] [--out results/bench]

Writes a ``recbench bench`` record (``yelp-size-cpu-<time>.json`` + ``.md``) under ``--out``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from recbench.bench import BenchOptions, render_markdown, run_bench, write_bench
from recbench.data import Interactions, leave_one_out


def yelp_sized(seed: int = 0, n_users: int = 25_815, n_items: int = 25_677, n: int = 730_791) -> Interactions:
    rng = np.random.default_rng(seed)
    pop = rng.zipf(1.5, size=n_items).clip(max=5000).astype(np.float64)
    users = rng.integers(0, n_users, size=int(n * 1.05))
    items = rng.choice(n_items, size=len(users), p=pop / pop.sum())
    keys = np.unique(users.astype(np.int64) * n_items + items)
    keys = rng.permutation(keys)[:n]
    u, i = (keys // n_items).astype(np.int32), (keys % n_items).astype(np.int32)
    return Interactions(
        name="yelp-size",
        users=u,
        items=i,
        ratings=rng.integers(1, 6, size=len(u)).astype(np.float32),
        timestamps=rng.integers(1_000_000_000, 1_400_000_000, size=len(u)),
        n_users=n_users,
        n_items=n_items,
        rating_values=(1.0, 2.0, 3.0, 4.0, 5.0),
    )


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--models", default="itempop,bpr")
    p.add_argument("--out", type=Path, default=Path("results/bench"))
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    split = leave_one_out(yelp_sized(), seed=0, n_negatives=99)
    opts = BenchOptions(
        epochs=1,
        repeats=1,
        threads=a.threads,
        eval_runs=1,
        flops=False,
        overrides={"bpr": {"threads": a.threads}} if "bpr" in a.models else {},
    )
    rec = run_bench("yelp-size", a.models.split(","), opts, split_loader=lambda _: split)
    path, _ = write_bench(rec, a.out)
    print(render_markdown(rec))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
