"""``recbench run --from-record FILE``: rerun exactly the cell a record describes, after checking,
before any fit, that it can be (the runner's checks, the record's cell through :mod:`recbench.plan`,
the split rebuilt with the record's fingerprint). Apart from the runner, which never imports the
plan."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from recbench.data.types import Split
from recbench.models.base import ConfigError
from recbench.plan import cell_from_record
from recbench.provenance import versions
from recbench.results import Record, read_record
from recbench.runner import (
    Cell,
    RunOptions,
    check_datasets,
    check_run_options,
    default_split_loader,
)

__all__ = ["Rerun", "prepare_rerun"]


@dataclass(frozen=True)
class Rerun:
    """``recbench run --from-record``: the record, its cell, the options to rerun it with (the
    record's device, ``force``), its split (checked to be the record's) and the library versions
    that differ from the record's (``name -> (record's, now)``)."""

    record: Record
    cell: Cell
    opts: RunOptions
    split: Split
    changed_versions: dict[str, tuple[str, str | None]]


def prepare_rerun(path: Path, **exec_opts: Any) -> Rerun:
    """Check that the cell a record describes can be rerun exactly, before any fit: the record
    reads, its model and config resolve, its device and data set are usable here, and the split
    built now has the record's fingerprint (else a ConfigError: the data or split code changed).
    ``exec_opts``: how to execute (out, data_dir, jobs, threads, checkpoint...; not the device)."""
    old = read_record(path)
    cell = cell_from_record(old.data)
    opts = RunOptions(
        **{
            **exec_opts,
            "device": old.data.get("device", "cpu"),
            "floats": old.data.get("floats", "native"),
            "denormals": old.data.get("denormals", "keep"),  # records made before flushing kept them
        },
        force=True,
    )
    check_run_options(opts.out, opts.device)
    check_datasets([cell.dataset], opts.data_dir)
    spec = replace(
        opts, split_seed=cell.split.seed, validation=cell.split.validation, n_negatives=cell.split.n_negatives
    )
    split = default_split_loader(spec)(cell.dataset)
    if split.fingerprint != old.data.get("split"):
        raise ConfigError(
            f"{path}: the split of {cell.dataset!r} is now {split.fingerprint[:16]}, the record's is "
            f"{str(old.data.get('split'))[:16]} (the data or the split code changed): cannot rerun it exactly"
        )
    now = versions()
    changed = {k: (v, now.get(k)) for k, v in (old.data.get("versions") or {}).items() if now.get(k) != v}
    return Rerun(old, cell, opts, split, changed)
