"""OPECI's training and scoring speed against an earlier commit, side by side in one run.

Builds git worktrees of ``--baseline`` and of HEAD (commit what you measure) and times, in alternating rounds (so
machine load hits both alike), one worker process per tree: the same OPECI training steps on the same batches of a
real split (same seed, same weights at start), and the full-ranking scores of the first users.
Reports the median of the per-round ratios, the seconds per epoch at each rate, and whether the
losses and scores agree (the fast paths compute the same function up to float rounding).

    python benchmarks/opeci_speedup.py --baseline 7cafac3 --dataset ml-100k --steps 20 --rounds 5

Each worker runs with one thread (``--threads``; ``--current-threads`` gives HEAD's worker another count, to
measure one fit on both cores against the baseline on one); quote the ratio, not the absolute rates.
``--current-set KEY=VALUE`` gives HEAD's model a config override, e.g. ``--baseline HEAD --current-set
batch_order=grouped`` times the grouped batch order against the shuffled one (other batches: the loss
and score comparisons then say nothing about exactness).

``--layouts`` compares, on HEAD only, the two ways of using both cores for OPECI's training: one
process with 2 threads doing 2×``--steps`` steps against two single-threaded processes doing
``--steps`` steps each at the same time (the same total work); it reports the median ratio of
their wall times (above 1: two processes finish the work sooner).

    python benchmarks/opeci_speedup.py --layouts --dataset ml-100k --steps 40 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def worker(dataset: str, steps: int, users: int, threads: int, sets: list[str] | None = None) -> dict[str, object]:
    """Time ``steps`` training steps and the full ranking of ``users`` users (run in a tree)."""
    import numpy as np
    import torch

    from recbench.data import load_split
    from recbench.models.base import FitContext
    from recbench.registry import MODELS

    torch.set_num_threads(threads)
    split = load_split(dataset)
    cls = MODELS["opeci"]
    config = cls.Config(epochs=0)
    if sets:  # KEY=VALUE config overrides (for example batch_order=grouped)
        from recbench.models.base import apply_overrides

        config = apply_overrides(config, dict(kv.split("=", 1) for kv in sets))
    model = cls(config)
    model.fit(split.train, np.random.default_rng(0), FitContext())  # builds the module only
    model.module.train()
    rng = np.random.default_rng(1)
    if hasattr(model, "batches"):
        batches = model.batches(split.train, rng)
        total = batches.total
        chosen = [next(batches) for _ in range(steps)]
    else:  # before the Trainer refactor
        inst = model.epoch_instances(split.train, rng)
        bs, total = model.config.batch_size, len(inst.users)
        chosen = [
            (
                torch.from_numpy(inst.users[s : s + bs]),
                torch.from_numpy(inst.items[s : s + bs]),
                torch.from_numpy(inst.targets[s : s + bs]),
            )
            for s in range(0, steps * bs, bs)
        ]
    model.module.eval()  # the same weights on both sides: scores must agree to float rounding
    start = model.score_matrix(np.arange(min(users, 5)))[:, :200]
    model.module.train()
    model.invalidate_cache()
    opt = model.optimizer()
    torch.manual_seed(0)
    losses = []
    t0 = time.perf_counter()
    for batch in chosen:
        loss = model.batch_loss(*batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    train_s = time.perf_counter() - t0
    samples = sum(len(b[0]) for b in chosen)
    model.module.eval()
    model.invalidate_cache()
    t0 = time.perf_counter()
    scores = model.score_matrix(np.arange(users))
    score_s = time.perf_counter() - t0
    return {
        "train_s": train_s,
        "samples": samples,
        "samples_per_epoch": int(total),
        "losses": losses,
        "score_s": score_s,
        "scores_head": scores[:, :50].round(5).tolist(),
        "scores_at_start": start.tolist(),
    }


def _worker_cmd(dataset: str, steps: int, threads: int, users: int = 1, sets: list[str] | None = None) -> list[str]:
    """The command of one worker process (``--worker``)."""
    return [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        "--dataset",
        dataset,
        "--steps",
        str(steps),
        "--users",
        str(users),
        "--threads",
        str(threads),
        *(f"--set={kv}" for kv in sets or []),
    ]


def _write_record(out: Path, kind: str, dataset: str, argv: list[str] | None, fields: dict[str, object]) -> None:
    """``OUT/opeci-KIND-DATASET-STAMP.json``: the command, ``fields`` and the machine's load."""
    out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = out / f"opeci-{kind}-{dataset}-{stamp}.json"
    command = ["python", "benchmarks/opeci_speedup.py", *(argv if argv is not None else sys.argv[1:])]
    path.write_text(json.dumps({"command": command, **fields, "load": list(os.getloadavg())}, indent=1) + "\n")
    print(f"wrote {path}")


def layouts(args: argparse.Namespace, argv: list[str] | None) -> int:
    """One process × 2 threads against two processes × 1 thread, the same total steps, HEAD."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    rows: list[dict[str, float]] = []
    for r in range(args.rounds):
        order = ("threads", "processes") if r % 2 == 0 else ("processes", "threads")
        row: dict[str, float] = {}
        for layout in order:
            t0 = time.perf_counter()
            if layout == "threads":
                cmd = _worker_cmd(args.dataset, 2 * args.steps, 2)
                procs = [subprocess.Popen(cmd, env={**env, "OMP_NUM_THREADS": "2"}, stdout=subprocess.PIPE)]
            else:
                cmd = _worker_cmd(args.dataset, args.steps, 1)
                procs = [
                    subprocess.Popen(cmd, env={**env, "OMP_NUM_THREADS": "1"}, stdout=subprocess.PIPE) for _ in range(2)
                ]
            outs = [json.loads(p.communicate()[0].decode().strip().splitlines()[-1]) for p in procs]
            if any(p.returncode for p in procs):
                raise SystemExit(f"{layout} worker failed")
            row[f"{layout}_wall_s"] = time.perf_counter() - t0  # includes start-up, alike on both sides
            row[f"{layout}_train_s"] = max(float(o["train_s"]) for o in outs)  # the steps only
        rows.append(row)
        print(
            f"round {r + 1}: 1×2 threads {row['threads_train_s']:.1f} s, 2×1 processes "
            f"{row['processes_train_s']:.1f} s (training steps; wall {row['threads_wall_s']:.1f} / "
            f"{row['processes_wall_s']:.1f} s)",
            file=sys.stderr,
        )
    ratios = [x["threads_train_s"] / x["processes_train_s"] for x in rows]
    walls = [x["threads_wall_s"] / x["processes_wall_s"] for x in rows]
    ratio, lo, hi = statistics.median(ratios), min(ratios), max(ratios)
    wall = statistics.median(walls)
    print(
        f"{2 * args.steps} training steps on {args.dataset}: one process with 2 threads takes {ratio:.2f}× "
        f"({lo:.2f}–{hi:.2f}, {args.rounds} rounds) the time of two single-threaded processes (training steps; "
        f"the slower process of the two); whole commands, start-up included: {wall:.2f}× "
        f"({min(walls):.2f}–{max(walls):.2f})"
    )
    if args.out is not None:
        commit = subprocess.check_output(["git", "-C", str(ROOT), "rev-parse", "HEAD"], text=True).strip()
        fields = {
            "commit": commit,
            "threads_over_processes": ratio,
            "range": [lo, hi],
            "threads_over_processes_wall": wall,
            "rounds": rows,
        }
        _write_record(args.out, "layouts", args.dataset, argv, fields)
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline", default="HEAD~1", help="commit to compare against")
    ap.add_argument("--dataset", default="ml-100k")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--users", type=int, default=20, help="users ranked against every item")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--current-threads", type=int, default=None, help="HEAD's threads (default: --threads)")
    ap.add_argument(
        "--current-set", action="append", default=[], metavar="KEY=VALUE", help="an OPECI config override for HEAD"
    )
    ap.add_argument("--set", action="append", default=[], help=argparse.SUPPRESS)  # a worker's overrides
    ap.add_argument("--layouts", action="store_true", help="2 threads in 1 process vs 2 processes (HEAD only)")
    ap.add_argument("--out", type=Path, default=None, help="folder for a JSON record")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.dataset, args.steps, args.users, args.threads, args.set)))
        return 0
    if args.layouts:
        return layouts(args, argv)
    base_sha = subprocess.check_output(["git", "-C", str(ROOT), "rev-parse", args.baseline], text=True).strip()
    head_sha = subprocess.check_output(["git", "-C", str(ROOT), "rev-parse", "HEAD"], text=True).strip()
    with tempfile.TemporaryDirectory() as tmp:
        # both sides from commits (edits to the working tree during a long run cannot leak in)
        trees = {"baseline": Path(tmp) / "baseline", "current": Path(tmp) / "current"}
        for tree, sha in ((trees["baseline"], base_sha), (trees["current"], head_sha)):
            subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(tree), sha], check=True)
        try:
            runs: dict[str, list[dict]] = {k: [] for k in trees}
            for r in range(args.rounds):
                for name in trees if r % 2 == 0 else reversed(list(trees)):
                    threads = args.threads if name == "baseline" else (args.current_threads or args.threads)
                    env = {**os.environ, "PYTHONPATH": str(trees[name]), "OMP_NUM_THREADS": str(threads)}
                    sets = args.current_set if name == "current" else []
                    cmd = _worker_cmd(args.dataset, args.steps, threads, args.users, sets)
                    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
                    if done.returncode != 0:
                        raise SystemExit(f"{name} worker failed:\n{done.stderr[-3000:]}")
                    out = done.stdout
                    runs[name].append(json.loads(out.strip().splitlines()[-1]))
                    print(
                        f"round {r + 1} {name}: {runs[name][-1]['train_s']:.1f} s train, "
                        f"{runs[name][-1]['score_s']:.1f} s scoring",
                        file=sys.stderr,
                    )
        finally:
            for tree in trees.values():
                subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], check=False)
    b, c = runs["baseline"], runs["current"]
    train_ratio = statistics.median(x["train_s"] / y["train_s"] for x, y in zip(b, c, strict=True))
    score_ratio = statistics.median(x["score_s"] / y["score_s"] for x, y in zip(b, c, strict=True))
    per_epoch = {
        k: statistics.median(x["train_s"] / x["samples"] * x["samples_per_epoch"] for x in v) for k, v in runs.items()
    }
    loss_diff = max(abs(x - y) for x, y in zip(b[0]["losses"], c[0]["losses"], strict=True))
    score_diff = max(
        abs(x - y)
        for rb, rc in zip(b[0]["scores_head"], c[0]["scores_head"], strict=True)
        for x, y in zip(rb, rc, strict=True)
    )
    print(
        f"| | baseline {base_sha[:7]} | current {head_sha[:7]} | speed-up (median of {args.rounds} per-round ratios) |"
    )
    print("|---|---|---|---|")
    print(
        f"| training, s/epoch at the measured rate | {per_epoch['baseline']:,.0f} | {per_epoch['current']:,.0f} "
        f"| {train_ratio:.2f}× |"
    )
    print(
        f"| full ranking of {args.users} users, s | {statistics.median(x['score_s'] for x in b):.1f} "
        f"| {statistics.median(x['score_s'] for x in c):.1f} | {score_ratio:.2f}× |"
    )
    start_diff = max(
        (
            abs(x - y)
            for rb, rc in zip(b[0].get("scores_at_start", []), c[0].get("scores_at_start", []), strict=True)
            for x, y in zip(rb, rc, strict=True)
        ),
        default=float("nan"),
    )
    print(
        f"largest score difference with the same (initial) weights: {start_diff:.2e}; after {args.steps} steps: "
        f"largest loss difference {loss_diff:.2e}, largest score difference {score_diff:.2e} (float rounding "
        "that the optimiser amplifies)"
    )
    if args.out is not None:
        fields = {
            "baseline": base_sha,
            "current": head_sha,
            "train_ratio": train_ratio,
            "score_ratio": score_ratio,
            "s_per_epoch": per_epoch,
            "loss_diff": loss_diff,
            "score_diff": score_diff,
            "score_diff_at_start": start_diff,
            "runs": runs,
        }
        _write_record(args.out, "speedup", args.dataset, argv, fields)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
