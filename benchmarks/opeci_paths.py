"""OPECI training throughput with and without its fast paths, side by side in one process.

Times training steps (forward, backward, Adam) of OPECI variants on the same batches of a real
split, alternating the variants round by round so that machine load hits them alike, and
reports the median samples/s of each and its ratio to the default. A step's loss is checked to
agree across variants that compute the same function (``rank_one`` on/off), so a fast path
cannot silently compute something else.

    python benchmarks/opeci_paths.py --dataset ml-100k --steps 30 --rounds 5 --out results/bench

Variants: the default (rank-one path, bf16 autocast where the CPU has native bf16),
``rank_one=False`` (builds the d×d matrix M and projects it), and ``precision=fp32``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import resource
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

from recbench.data import load_split
from recbench.models.base import FitContext
from recbench.registry import MODELS

VARIANTS: dict[str, dict[str, object]] = {
    "default (rank-one, auto precision)": {},
    "rank_one=False": {"rank_one": False},
    "precision=fp32": {"precision": "fp32"},
    "rank_one=False, precision=fp32": {"rank_one": False, "precision": "fp32"},
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="ml-100k")
    ap.add_argument("--steps", type=int, default=30, help="timed steps per variant and round")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--data-dir", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=None, help="folder for a JSON record")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    split = load_split(args.dataset, data_dir=args.data_dir)
    train = split.train
    cls = MODELS["opeci"]
    models = {}
    for name, ov in VARIANTS.items():
        m = cls(cls.Config(epochs=0, **ov))  # type: ignore[arg-type]
        m.fit(train, np.random.default_rng(0), FitContext())  # builds the module, no epoch
        models[name] = m
    # identical weights in every variant (they differ only in how they compute)
    ref_state = next(iter(models.values())).module.state_dict()
    for m in models.values():
        m.module.load_state_dict(ref_state)
        m.module.train()
    first = next(iter(models.values()))
    bs = first.config.batch_size
    n_batches = args.steps
    epoch = first.batches(train, np.random.default_rng(1))
    samples_per_epoch = epoch.total
    batches = list(itertools.islice(epoch, n_batches))
    # same function: the loss of one batch, from the same random state (a negative's dropped
    # neighbours are drawn in batch_loss)
    losses = {}
    with torch.no_grad():
        for name, m in models.items():
            torch.manual_seed(0)
            losses[name] = float(m.batch_loss(*batches[0]))
    opts = {name: m.optimizer() for name, m in models.items()}
    per_round: dict[str, list[float]] = {name: [] for name in models}
    for r in range(args.rounds):
        order = list(models) if r % 2 == 0 else list(reversed(models))
        for name in order:
            m, opt = models[name], opts[name]
            t0 = time.perf_counter()
            for u, i, t in batches:
                loss = m.batch_loss(u, i, t)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            per_round[name].append(n_batches * bs / (time.perf_counter() - t0))
    base = "default (rank-one, auto precision)"
    ratios = {
        name: statistics.median(a / b for a, b in zip(v, per_round[base], strict=True)) for name, v in per_round.items()
    }
    rows = []
    print(
        f"| variant | samples/s (median of {args.rounds} rounds × {n_batches} steps) | "
        "vs default (median of per-round ratios) | s/epoch at this rate | loss of batch 0 |"
    )
    print("|---|---|---|---|---|")
    for name, v in per_round.items():
        med = statistics.median(v)
        sec = samples_per_epoch / med
        rows.append(
            {
                "variant": name,
                "samples_per_s": v,
                "median": med,
                "ratio_to_default": ratios[name],
                "s_per_epoch": sec,
                "loss_batch0": losses[name],
            }
        )
        print(f"| {name} | {med:,.0f} | {ratios[name]:.2f}× | {sec:,.0f} | {losses[name]:.5f} |")
    same = (
        abs(losses[base] - losses["rank_one=False"]) < 5e-3
        and abs(losses["precision=fp32"] - losses["rank_one=False, precision=fp32"]) < 1e-4
    )
    print(f"rank-one and matrix paths agree on batch 0: {same}")
    print(f"peak RSS of the process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        path = args.out / f"opeci-paths-{args.dataset}-{stamp}.json"
        rec = {
            "command": ["python", "benchmarks/opeci_paths.py", *(argv or sys.argv[1:])],
            "dataset": args.dataset,
            "threads": args.threads,
            "batch_size": bs,
            "samples_per_epoch": samples_per_epoch,
            "rows": rows,
            "paths_agree": same,
            "load": list(__import__("os").getloadavg()),
        }
        path.write_text(json.dumps(rec, indent=1) + "\n")
        print(f"wrote {path}")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
