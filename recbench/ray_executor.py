"""Cells as Ray tasks: ``recbench run --executor ray`` on a local Ray instance or a cluster.

Each cell not finished yet becomes one task with the resources of the cell (``num_cpus`` =
``--threads``, ``num_gpus`` = 1 with ``--device cuda``). The split goes to the workers through
Ray's object store (``ray.put`` once per split), so workers need no shared data cache. A worker
fits and evaluates (:func:`recbench.runner.compute_cell`) and returns the finished record, JSON
fields and ranks; the driver writes it atomically under the cell's lock, exactly as a local run
does, and removes the fit's checkpoint. Checkpoints go to ``--checkpoint-dir`` (default
``OUT/.checkpoints``; on a cluster, a path every node can reach): a task that Ray retries after
its worker or node was lost resumes from its last epoch. A cell whose retries are exhausted is
recorded as failed and the grid goes on.

The executor on this machine (in process, ``--jobs`` worker processes) is :mod:`recbench.executors`;
:func:`recbench.plan.execute` chooses between them.

Ray is an optional extra: ``pip install 'recbench[ray]'``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from recbench.data.types import Split
from recbench.executors import set_threads
from recbench.models.base import ConfigError
from recbench.results import Record, cell_lock, remove_stale_files
from recbench.runner import (
    Cell,
    Reporter,
    RunOptions,
    SplitSpec,
    _reusable,
    cell_key,
    compute_cell,
    failed_record,
    finish_record,
)

MAX_RETRIES = 3  # per task, after a lost worker or node


def _import_ray() -> Any:
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")  # every worker's epoch line, not "repeated 2x"
    try:
        import ray
    except ImportError:
        raise ConfigError(
            "--executor ray needs Ray, an optional extra: pip install 'recbench[ray]' (or pip install ray)"
        ) from None
    return ray


def _run_remote(
    split: Split, cell: Cell, opts: RunOptions
) -> tuple[dict[str, Any], np.ndarray | None, dict[str, np.ndarray]]:
    """The task: fit and evaluate one cell on a worker, progress as plain lines (Ray forwards a
    worker's stderr to the driver)."""
    from recbench.progress import PlainReporter

    set_threads(opts.threads)
    rec = compute_cell(split, cell, opts, PlainReporter(sys.stderr))
    return rec.data, rec.users, rec.ranks


def execute_ray(
    cells: Sequence[Cell], splits: dict[SplitSpec, Split], opts: RunOptions, reporter: Reporter
) -> list[Record]:
    """Run ``cells`` as Ray tasks; records are written by this process as each task returns."""
    ray = _import_ray()
    # workers may start in another folder (or on another machine): every path made absolute
    opts = replace(
        opts,
        out=opts.out.resolve(),
        checkpoint_dir=opts.checkpoint_root.resolve(),
        data_dir=opts.data_dir.resolve() if opts.data_dir is not None else None,
    )
    started = not ray.is_initialized()
    if started:
        kwargs: dict[str, Any] = {"include_dashboard": False, "logging_level": "ERROR", "log_to_driver": True}
        if opts.ray_address:
            kwargs["address"] = opts.ray_address
        ray.init(**kwargs)
    try:
        return _execute(ray, cells, splits, opts, reporter)
    finally:
        if started:
            ray.shutdown()


def _execute(
    ray: Any, cells: Sequence[Cell], splits: dict[SplitSpec, Split], opts: RunOptions, reporter: Reporter
) -> list[Record]:
    out: list[Record | None] = [None] * len(cells)
    todo = []
    for i, c in enumerate(cells):
        old = None if opts.force else _reusable(opts.out, c, cell_key(splits[c.split], c, opts.device, opts.floats))
        if old is not None:
            reporter.cell_skip(old)
            out[i] = old
        else:
            todo.append(i)
    if todo:
        remote = ray.remote(_run_remote).options(
            num_cpus=max(opts.threads, 1),
            num_gpus=1 if opts.device.startswith("cuda") else 0,
            max_retries=MAX_RETRIES,
            retry_exceptions=False,  # a failing fit is recorded by compute_cell, not retried
        )
        refs = {spec: ray.put(split) for spec, split in splits.items()}
        pending = {remote.remote(refs[cells[i].split], cells[i], opts): i for i in todo}
        reporter.message(f"ray: {len(pending)} cell(s) submitted to {ray.get_runtime_context().gcs_address}")
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            i = pending.pop(done[0])
            cell, split = cells[i], splits[cells[i].split]
            try:
                data, users, ranks = ray.get(done[0])
                rec = Record(data=data, users=users, ranks=ranks)
            except ray.exceptions.RayError as e:  # retries exhausted: record it, go on
                rec = failed_record(
                    split, cell, opts, f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
                )
            d = rec.data
            with cell_lock(opts.out, d["dataset"], d["model"], d["seed"], d["key"]):
                path = finish_record(opts, rec)
                remove_stale_files(path)
            reporter.cell_end(rec)
            out[i] = rec
    return [r for r in out if r is not None]
