"""``recbench experiment NAME``, end to end: plan the cells, fit every cell not run yet (or, with
``--no-fit``, list what is missing) through the runner, then write the page
(:func:`~recbench.experiments.pages.write_outputs`)."""

from __future__ import annotations

from collections.abc import Callable

from recbench.data.types import Split
from recbench.experiments.cells import ExperimentOptions, plan
from recbench.experiments.pages import ExperimentResult, write_outputs
from recbench.experiments.presets import load_presets
from recbench.plan import execute
from recbench.results import Record
from recbench.runner import Cell as RunCell
from recbench.runner import (
    Reporter,
    RunOptions,
    SplitSpec,
    existing_record,
    load_splits,
    mark_used,
)


def run_experiment(
    name: str,
    datasets: list[str],
    opts: ExperimentOptions,
    reporter: Reporter | None = None,
    split_loader: Callable[[str], Split] | None = None,
) -> ExperimentResult:
    """Run (or resume) every cell, then write the table, figure, HTML page and README."""
    p, cells, notes = plan(name, datasets, opts)
    run_opts = RunOptions(
        seeds=opts.seeds,
        protocols=opts.protocols,
        out=opts.out,
        force=opts.force,
        device=opts.device,
        split_seed=opts.split_seed,
        data_dir=opts.data_dir,
        jobs=opts.jobs,
        threads=opts.threads,
        checkpoint=opts.checkpoint,
    )
    curves = load_presets().get("curves", {})
    spec = {ds: SplitSpec(ds, opts.split_seed) for ds in datasets}
    run_cells = []
    for c in cells:
        every = max(p.eval_every, curves.get("eval_every", 0) if c.model in curves.get("models", []) else 0)
        for seed in opts.seeds:
            run_cells.append(
                RunCell(spec[c.dataset], c.model, c.config, seed, opts.protocols, every, tags={"experiment": name})
            )
    records: list[Record] = []
    missing: list[str] = []
    if opts.no_fit:
        splits = load_splits(run_cells, run_opts, Reporter(), split_loader)
        for c, rc in zip([c for c in cells for _ in opts.seeds], run_cells, strict=True):
            rec = existing_record(splits[rc.split], rc, run_opts)
            if rec is None:
                what = c.model + (f" {p.param}={c.x}" if p.param is not None else "")
                missing.append(f"{c.dataset} {what} seed {rc.seed}")
            else:
                records.append(mark_used(run_opts, rec, name))
    else:
        records = execute(run_cells, run_opts, reporter, split_loader)
    if missing:
        n = len(cells) * len(opts.seeds)
        notes = [*notes, f"Not run yet ({len(missing)} of {n} fits; built with --no-fit): {'; '.join(missing)}."]
    return write_outputs(p, datasets, records, notes, opts)
