"""Executing cells on this machine: one after another in this process, or ``--jobs`` cells at a
time in spawned worker processes (:func:`execute_local`). Each cell is run by
:func:`recbench.runner.run_cell`, which writes its record under the cell's lock, so both write the
same files with the same numbers; a worker's progress events come back to the parent's
:class:`~recbench.runner.Reporter` through a queue (:class:`QueueReporter`).

The other executor, a Ray cluster, is :mod:`recbench.ray_executor`; :func:`recbench.plan.execute`
chooses between them by ``RunOptions.executor`` (its valid values,
:data:`recbench.runner.EXECUTORS`, are checked with the other options). :func:`set_threads` sets
a process's thread pools for every executor (and for ``recbench bench``).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from recbench.data.types import Split
from recbench.results import Record
from recbench.runner import Cell, Reporter, RunOptions, SplitSpec, run_cell


def execute_local(
    cells: Sequence[Cell],
    splits: dict[SplitSpec, Split],
    opts: RunOptions,
    reporter: Reporter | None = None,
) -> list[Record]:
    """Run every cell on this machine (records written as each finishes); returns the records in
    cell order: in this process, or ``opts.jobs`` cells at a time in worker processes. (Ray:
    :func:`recbench.plan.execute`.)"""
    reporter = reporter or Reporter()
    if opts.jobs <= 1 or len(cells) <= 1:
        return [run_cell(splits[c.split], c, opts, reporter) for c in cells]
    return _execute_processes(cells, splits, opts, reporter)


# ----------------------------------------------------------------------------- worker processes


class QueueReporter(Reporter):
    """A worker's reporter: every event goes to the parent through a queue."""

    def __init__(self, q: Any) -> None:
        self.q = q

    def __getattribute__(self, name: str) -> Any:
        """Each :class:`~recbench.runner.Reporter` callback as a put of ``(name, args)``."""
        if name in ("cell_start", "cell_skip", "epoch", "batch", "phase", "message", "cell_end"):
            q = object.__getattribute__(self, "q")
            return lambda *args: q.put((name, args))
        return object.__getattribute__(self, name)


_WORKER: dict[str, Any] = {}


def _init_worker(threads: int, q: Any) -> None:
    """A worker process's start: its thread pools and its reporter to the parent's queue."""
    set_threads(threads)
    _WORKER["reporter"] = QueueReporter(q)


def _worker_run(split: Split, cell: Cell, opts: RunOptions) -> Record:
    """One cell in a worker process (its record written there, under the cell's lock)."""
    return run_cell(split, cell, opts, _WORKER["reporter"])


def set_threads(threads: int) -> None:
    """torch's intra-op threads and the BLAS/OpenMP pools of numpy and scipy (0: leave the
    defaults), so that ``--threads 1`` means one thread in every library a cell uses."""
    if threads:
        import torch
        from threadpoolctl import threadpool_limits

        torch.set_num_threads(threads)
        threadpool_limits(limits=threads)  # applies now, for the rest of the process


def _execute_processes(
    cells: Sequence[Cell], splits: dict[SplitSpec, Split], opts: RunOptions, reporter: Reporter
) -> list[Record]:
    """``opts.jobs`` worker processes (spawned: no fork of a process holding torch's threads),
    each with ``opts.threads`` torch threads; progress events are relayed to ``reporter``."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    ctx = mp.get_context("spawn")
    events: Any = ctx.SimpleQueue()

    def relay() -> None:
        """Hand the workers' events to ``reporter`` until the ``None`` sentinel."""
        while True:
            item = events.get()
            if item is None:
                return
            name, args = item
            getattr(reporter, name)(*args)

    pump = threading.Thread(target=relay, daemon=True)
    pump.start()
    out: list[Record | None] = [None] * len(cells)
    try:
        with ProcessPoolExecutor(
            opts.jobs, mp_context=ctx, initializer=_init_worker, initargs=(opts.threads, events)
        ) as pool:
            futures = {pool.submit(_worker_run, splits[c.split], c, opts): i for i, c in enumerate(cells)}
            try:
                for fut, i in futures.items():
                    out[i] = fut.result()
            except BaseException:
                pool.shutdown(wait=False, cancel_futures=True)
                raise
    finally:
        events.put(None)
        pump.join(timeout=10)
    return [r for r in out if r is not None]
