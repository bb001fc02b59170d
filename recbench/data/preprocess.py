"""Preprocessing of parsed ratings: drop duplicate user–item pairs, contiguous ids.

- A user–item pair that appears more than once keeps its latest row (largest timestamp, ties
  broken by file order); with no timestamps, the last row in file order. The number of rows
  dropped is reported (and stored in the cache metadata).
- Ids are remapped to 0..n-1 in the order of the sorted original ids; the original ids are kept
  as ``Interactions.user_ids`` / ``item_ids``.
- Ratings are kept as given (binarising is a model's concern), rows stay in file order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recbench.data.parse import ParsedRatings
from recbench.data.types import Interactions

__all__ = ["PreprocessReport", "preprocess"]


@dataclass(frozen=True)
class PreprocessReport:
    """What preprocessing did."""

    rows: int  # rows parsed from the file
    duplicates_dropped: int
    users: int
    items: int
    ratings: int  # rows kept


def _keep_latest(keys: np.ndarray, timestamps: np.ndarray | None) -> np.ndarray:
    """Sorted row indices to keep: the latest row of each distinct key."""
    n = len(keys)
    if timestamps is None:
        # last occurrence in file order = first occurrence in the reversed array
        _, first_rev = np.unique(keys[::-1], return_index=True)
        return np.sort(n - 1 - first_rev)
    order = np.lexsort((np.arange(n), timestamps, keys))
    k = keys[order]
    is_last = np.ones(n, dtype=bool)
    is_last[:-1] = k[1:] != k[:-1]
    return np.sort(order[is_last])


def preprocess(
    parsed: ParsedRatings, name: str, rating_values: tuple[float, ...]
) -> tuple[Interactions, PreprocessReport]:
    """Turn parsed rows into :class:`Interactions` (see the module docstring)."""
    n_users, n_items = parsed.n_users, parsed.n_items
    users = parsed.user_codes.astype(np.int64)
    items = parsed.item_codes.astype(np.int64)
    keys = users * n_items + items
    sorted_keys = np.sort(keys)
    has_dups = bool((sorted_keys[1:] == sorted_keys[:-1]).any())
    keep = _keep_latest(keys, parsed.timestamps) if has_dups else None

    def take(a: np.ndarray | None) -> np.ndarray | None:
        if a is None or keep is None:
            return a
        return a[keep]

    u = take(parsed.user_codes)
    i = take(parsed.item_codes)
    assert u is not None and i is not None
    data = Interactions(
        name=name,
        users=np.ascontiguousarray(u, dtype=np.int32),
        items=np.ascontiguousarray(i, dtype=np.int32),
        ratings=np.ascontiguousarray(take(parsed.ratings), dtype=np.float32),
        timestamps=(
            None if parsed.timestamps is None else np.ascontiguousarray(take(parsed.timestamps), dtype=np.int64)
        ),
        n_users=n_users,
        n_items=n_items,
        rating_values=tuple(float(v) for v in rating_values),
        user_ids=parsed.user_ids,
        item_ids=parsed.item_ids,
    )
    report = PreprocessReport(
        rows=len(parsed), duplicates_dropped=len(parsed) - len(data), users=n_users, items=n_items, ratings=len(data)
    )
    return data, report
