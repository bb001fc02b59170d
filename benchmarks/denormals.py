"""Side by side: subnormal floats kept (torch's default) against flushed to zero (recbench's,
:mod:`recbench.numerics`), on a trained model, where weight decay has pushed weights into the
subnormal range. Loads a checkpoint of an OPECI fit on ml-100k (the converged run of issue 13:
tuned config, 30-epoch cap; pass the ``.ckpt`` file) and times, alternating the two modes round
by round (order swapped every round), in this one process with one thread:

- scoring: ``score_matrix`` of the first 8 test users (13,456 pairs), the full-ranking path;
- training: 40 optimiser steps from the checkpoint's weights and Adam state (batch 256, restored
  before every measurement).

Prints the subnormal share of the weights, medians per mode and the ratio (keep over flush), and
writes ``results/bench/denormals-<UTC time>.json``.

    python benchmarks/denormals.py checkpoints/ml-100k/opeci/seed0-<key>.ckpt --rounds 3
"""

from __future__ import annotations

import argparse
import copy
import itertools
import json
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

from recbench import checkpoint
from recbench.models.trainer import Trainer
from recbench.numerics import set_denormals
from recbench.registry import MODELS
from recbench.runner import RunOptions, default_split_loader

REPO = Path(__file__).resolve().parents[1]


def subnormal_share(state: dict[str, torch.Tensor]) -> dict[str, float]:
    tiny = torch.finfo(torch.float32).tiny
    out = {}
    for k, v in state.items():
        if v.is_floating_point() and v.numel() >= 1000:
            out[k] = float(((v != 0) & (v.abs() < tiny)).float().mean())
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("ckpt", type=Path)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--users", type=int, default=8)
    args = ap.parse_args()
    torch.set_num_threads(1)
    split = default_split_loader(RunOptions(out=Path("."), validation=True))("ml-100k")
    cls = MODELS["opeci"]
    model = cls(cls.Config(epochs=30, learning_rate=0.001))  # the tuned config of the converged run
    trainer = Trainer(model)
    model.prepare(split.train, "cpu")
    trainer.setup(split.train, np.random.default_rng(0))
    meta, groups = checkpoint.read(args.ckpt)
    set_denormals("keep")  # flushed, a subnormal compares as zero
    share = subnormal_share(groups["module"])
    assert trainer.opt is not None
    weights = {k: v.clone() for k, v in groups["module"].items()}
    model.module.load_state_dict(weights)
    checkpoint.load_optimizer_state(trainer.opt, meta["optimizer"], groups["optimizer"])
    opt_state = copy.deepcopy(trainer.opt.state_dict())
    users = split.test.users[: args.users].astype(np.int64)

    def score() -> float:
        model.module.load_state_dict(weights)
        model.invalidate_cache()
        model.module.eval()
        t0 = time.perf_counter()
        model.score_matrix(users)
        return time.perf_counter() - t0

    def train() -> float:
        model.module.load_state_dict(weights)
        trainer.opt.load_state_dict(opt_state)
        model.invalidate_cache()
        model.module.train()
        batches = model.batches(split.train, np.random.default_rng(1))
        t0 = time.perf_counter()
        for batch in itertools.islice(batches, args.steps):
            trainer.step(model.batch_loss(*batch))
        return time.perf_counter() - t0

    times: dict[str, dict[str, list[float]]] = {m: {"score_s": [], "train_s": []} for m in ("keep", "flush")}
    for r in range(args.rounds):
        for mode in ("keep", "flush") if r % 2 == 0 else ("flush", "keep"):
            assert set_denormals(mode) == mode
            times[mode]["score_s"].append(score())
            times[mode]["train_s"].append(train())
            t = times[mode]
            print(f"round {r + 1} {mode:5s} score {t['score_s'][-1]:7.2f} s  train {t['train_s'][-1]:7.2f} s")
    set_denormals("flush")
    med = {m: {k: statistics.median(v) for k, v in t.items()} for m, t in times.items()}
    ratio = {k: med["keep"][k] / med["flush"][k] for k in ("score_s", "train_s")}
    top = dict(sorted(share.items(), key=lambda kv: -kv[1])[:4])
    result = {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "checkpoint": str(args.ckpt),
        "epoch": meta["epoch"],
        "pairs_scored": int(len(users) * split.n_items),
        "train_steps": args.steps,
        "rounds": args.rounds,
        "subnormal_share": top,
        "times": times,
        "median": med,
        "ratio_keep_over_flush": ratio,
        "torch": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
    }
    print(json.dumps({"subnormal_share": top, "median": med, "ratio_keep_over_flush": ratio}, indent=1))
    out = REPO / "results" / "bench" / f"denormals-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out.relative_to(REPO)}")


if __name__ == "__main__":
    main()
