"""Preprocessing: duplicates keep the latest row, contiguous ids, ratings as given."""

from __future__ import annotations

import numpy as np

from recbench.data.parse import parse_bytes
from recbench.data.preprocess import preprocess
from recbench.data.registry import FormatSpec

TAB = FormatSpec(separator="\t", columns=("user", "item", "rating", "timestamp"))
SPACE = FormatSpec(separator=" ", columns=("user", "item", "rating"))
FIVE = (1.0, 2.0, 3.0, 4.0, 5.0)


def _prep(data: bytes, fmt: FormatSpec = TAB):
    return preprocess(parse_bytes(data, fmt, FIVE), "t", FIVE)


def test_duplicates_keep_the_latest_by_timestamp() -> None:
    data, rep = _prep(b"10\t7\t1\t300\n10\t7\t5\t100\n20\t7\t2\t50\n10\t8\t4\t10\n")
    assert rep.rows == 4 and rep.duplicates_dropped == 1 and len(data) == 3
    # the pair (10, 7) keeps the row with timestamp 300 (rating 1); file order is preserved
    assert data.ratings.tolist() == [1, 2, 4]
    assert data.timestamps.tolist() == [300, 50, 10]


def test_timestamp_ties_are_broken_by_file_order() -> None:
    data, rep = _prep(b"1\t1\t1\t5\n1\t1\t2\t5\n1\t1\t3\t4\n")
    assert rep.duplicates_dropped == 2 and data.ratings.tolist() == [2]


def test_without_timestamps_the_last_in_file_order_wins() -> None:
    data, rep = _prep(b"1 1 2\n1 2 4\n1 1 3\n2 1 1\n1 1 5\n", SPACE)
    assert rep.duplicates_dropped == 2 and data.timestamps is None
    assert list(zip(data.users.tolist(), data.items.tolist(), data.ratings.tolist(), strict=True)) == [
        (0, 1, 4.0),
        (1, 0, 1.0),
        (0, 0, 5.0),
    ]


def test_only_duplicates() -> None:
    data, rep = _prep(b"3\t4\t1\t1\n3\t4\t2\t2\n3\t4\t3\t3\n")
    assert rep.duplicates_dropped == 2 and len(data) == 1
    assert data.n_users == 1 and data.n_items == 1 and data.ratings.tolist() == [3]


def test_ids_are_contiguous_with_original_id_maps() -> None:
    data, rep = _prep(b"100\t5\t3\t1\n7\t50\t4\t2\n100\t50\t5\t3\n")
    assert rep.duplicates_dropped == 0
    assert data.n_users == 2 and data.n_items == 2
    assert data.users.dtype == np.int32 and data.items.dtype == np.int32
    assert data.user_ids.tolist() == [7, 100] and data.item_ids.tolist() == [5, 50]
    assert data.user_ids[data.users].tolist() == [100, 7, 100]
    assert data.item_ids[data.items].tolist() == [5, 50, 50]
    assert data.ratings.tolist() == [3, 4, 5] and data.rating_values == FIVE


def test_sparse_large_ids_take_the_sorting_path() -> None:
    data, _ = _prep(b"9000000000000\t1\t3\t1\n-5\t2\t4\t2\n")
    assert data.user_ids.tolist() == [-5, 9_000_000_000_000] and data.users.tolist() == [1, 0]
