"""The data layer's API: a data set or a split by name, integrity-checked, and rebuilt from its
source when a cache file is damaged. The one module that may call :func:`fetch` (the cache
below it is a plain store: atomic files and checksums), so there is no import circle.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from recbench.data.cache import (
    CacheCorrupt,
    _load_interactions,
    _load_split_file,
    _not_fetched,
    _rebuild_source,
    _synthetic,
    data_home,
    dataset_info,
    save_split,
    split_key,
)
from recbench.data.fetch import fetch
from recbench.data.registry import DatasetError, DatasetWarning, get_spec
from recbench.data.split import leave_one_out
from recbench.data.types import Interactions, Split


def load_dataset(name: str, data_dir: Path | str | None = None) -> Interactions:
    """A fetched data set from the cache, integrity-checked; generated ones are built.

    A modified cache is never used: it is rebuilt (with a warning) from the local archive or
    folder it was made from, or refused with a :class:`DatasetError` saying how to refetch.
    """
    spec = get_spec(name)
    if spec.is_generated:
        return _synthetic(name)
    home = data_home(data_dir)
    if not (home / "datasets" / name / "interactions.json").exists():
        raise _not_fetched(name)
    try:
        return _load_interactions(name, home)
    except FileNotFoundError:
        raise _not_fetched(name) from None
    except CacheCorrupt as exc:
        source = _rebuild_source(name, home)
        if source is None:
            raise DatasetError(
                f"the cached {name} is corrupted ({exc}) and was not used; run "
                f"`recbench fetch {name} --force [--from PATH]`"
            ) from None
        warnings.warn(
            DatasetWarning(f"the cached {name} is corrupted ({exc}); rebuilding it from {source}"), stacklevel=2
        )

        return fetch(name, source=source, force=True, data_dir=home, progress=False)


# --------------------------------------------------------------------------- splits


def load_split(
    name: str, seed: int = 0, validation: bool = False, n_negatives: int = 99, data_dir: Path | str | None = None
) -> Split:
    """The leave-one-out split of ``name`` (see :func:`recbench.data.split.leave_one_out`).

    Cached per (data set, data fingerprint, seed, validation, n_negatives); a cached split whose
    content hash no longer matches is rebuilt with a warning, never used.
    """
    data = load_dataset(name, data_dir)
    home = data_home(data_dir)
    path = home / "splits" / name / split_key(data.fingerprint, seed, validation, n_negatives)
    expect = {
        "dataset": name,
        "seed": seed,
        "n_negatives": n_negatives,
        "validation": validation,
        "data_fingerprint": data.fingerprint,
    }
    accepted = (dataset_info(name, data_dir) or {}).get("accepted_mismatch")
    if path.with_suffix(".json").exists():
        try:
            split = _load_split_file(path, expect)
            if accepted:
                split.meta["accepted_mismatch"] = accepted
            return split
        except (CacheCorrupt, FileNotFoundError) as exc:
            warnings.warn(
                DatasetWarning(f"the cached split {path.name} of {name} is corrupted ({exc}); rebuilding it"),
                stacklevel=2,
            )
    try:
        split = leave_one_out(data, seed=seed, n_negatives=n_negatives, validation=validation)
    except DatasetError:
        raise
    except ValueError as exc:
        raise DatasetError(f"{name}: {exc}") from None
    if len(split.test) == 0:
        raise DatasetError(f"no user of {name} has at least {3 if validation else 2} interactions: nothing to evaluate")
    if accepted:  # a deliberately filtered copy: every record made from it says so
        split.meta["accepted_mismatch"] = accepted
    save_split(split, path, data.fingerprint)
    return split
