"""Properties of the leave-one-out split and its cache (``load_split``)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recbench.data import DatasetError, Interactions, Split, leave_one_out, load_split
from recbench.data.cache import data_home


def _random_data(
    seed: int, n_users: int = 40, n_items: int = 200, timestamps: bool = True, max_per_user: int = 12
) -> Interactions:
    rng = np.random.default_rng(seed)
    users, items = [], []
    for u in range(n_users):
        k = int(rng.integers(0, max_per_user + 1))
        users += [u] * k
        items += rng.choice(n_items, size=k, replace=False).tolist()
    n = len(users)
    order = rng.permutation(n)
    return Interactions(
        name="rand",
        users=np.asarray(users, np.int32)[order],
        items=np.asarray(items, np.int32)[order],
        ratings=rng.integers(1, 6, n).astype(np.float32),
        timestamps=rng.integers(0, 30, n).astype(np.int64) if timestamps else None,  # ties
        n_users=n_users,
        n_items=n_items,
        rating_values=(1.0, 2.0, 3.0, 4.0, 5.0),
    )


def _check_split(data: Interactions, split: Split, validation: bool) -> None:
    counts = np.bincount(data.users, minlength=data.n_users)
    eligible = np.flatnonzero(counts >= (3 if validation else 2))
    assert split.test.users.tolist() == eligible.tolist()  # one test item per eligible user
    assert split.n_not_evaluated == int(((counts > 0) & (counts < (3 if validation else 2))).sum())
    pairs = set(zip(data.users.tolist(), data.items.tolist(), strict=True))
    held = [split.test] + ([split.validation] if validation else [])
    n_held = 0
    for h in held:
        assert h is not None
        n_held += len(h)
        assert (h.candidates[:, 0] == h.items).all()
        for u, cands in zip(h.users.tolist(), h.candidates.tolist(), strict=True):
            assert len(set(cands)) == len(cands)  # no duplicate candidates
            assert all((u, c) not in pairs for c in cands[1:])  # never interacted with
    assert len(split.train) + n_held == len(data)
    train_pairs = set(zip(split.train.users.tolist(), split.train.items.tolist(), strict=True))
    for h in held:
        assert all((u, i) not in train_pairs for u, i in zip(h.users.tolist(), h.items.tolist(), strict=True))
    if data.timestamps is not None:  # the test item is the user's latest (ties: file order)
        rows = {}
        for k, (u, i) in enumerate(zip(data.users.tolist(), data.items.tolist(), strict=True)):
            key = (int(data.timestamps[k]), k)
            if u not in rows or key > rows[u][0]:
                rows[u] = (key, i)
        for u, i in zip(split.test.users.tolist(), split.test.items.tolist(), strict=True):
            assert rows[u][1] == i


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), validation=st.booleans(), timestamps=st.booleans())
def test_split_properties(seed: int, validation: bool, timestamps: bool) -> None:
    data = _random_data(seed, timestamps=timestamps)
    _check_split(data, leave_one_out(data, seed=seed, n_negatives=20, validation=validation), validation)


def test_same_seed_identical_other_seed_other_negatives() -> None:
    data = _random_data(3)
    a = leave_one_out(data, seed=1)
    b = leave_one_out(data, seed=1)
    c = leave_one_out(data, seed=2)
    assert a.fingerprint == b.fingerprint
    assert np.array_equal(a.test.candidates, b.test.candidates)
    assert np.array_equal(a.test.items, c.test.items)  # the latest item does not depend on seed
    assert not np.array_equal(a.test.candidates[:, 1:], c.test.candidates[:, 1:])
    assert a.fingerprint != c.fingerprint


def test_without_timestamps_the_choice_is_random_but_seeded() -> None:
    data = _random_data(4, timestamps=False)
    a, b = leave_one_out(data, seed=5), leave_one_out(data, seed=5)
    assert np.array_equal(a.test.items, b.test.items)
    others = [leave_one_out(data, seed=s).test.items for s in range(6, 9)]
    assert any(not np.array_equal(a.test.items, o) for o in others)


def test_users_below_the_minimum_are_not_evaluated() -> None:
    data = Interactions(
        name="m",
        users=np.array([0, 1, 1, 2, 2, 2], np.int32),
        items=np.array([0, 0, 1, 0, 1, 2], np.int32),
        ratings=np.ones(6, np.float32),
        timestamps=np.arange(6, dtype=np.int64),
        n_users=3,
        n_items=10,
        rating_values=(1.0,),
    )
    s = leave_one_out(data, seed=0, n_negatives=3)
    assert s.test.users.tolist() == [1, 2] and s.n_not_evaluated == 1
    assert s.test.items.tolist() == [1, 2]
    v = leave_one_out(data, seed=0, n_negatives=3, validation=True)
    assert v.test.users.tolist() == [2] and v.n_not_evaluated == 2
    assert v.validation is not None and v.validation.items.tolist() == [1]


def test_load_split_is_cached_and_keyed() -> None:
    a = load_split("synthetic", seed=0)
    files = sorted(p.name for p in (data_home() / "splits" / "synthetic").iterdir())
    assert len(files) == 2 and files[0].endswith(".json") and files[1].endswith(".npz")
    b = load_split("synthetic", seed=0)
    assert a.fingerprint == b.fingerprint
    assert np.array_equal(a.test.candidates, b.test.candidates)
    assert b.train.csr.nnz == len(a.train)
    c = load_split("synthetic", seed=1, validation=True, n_negatives=50)
    assert c.validation is not None and c.test.candidates.shape[1] == 51
    assert len(list((data_home() / "splits" / "synthetic").glob("*.npz"))) == 2
    assert a.meta["data_fingerprint"] == c.meta["data_fingerprint"]


def test_split_with_no_evaluable_user_is_an_error(tiny, monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    """A file of only duplicates (plus a one-interaction user): nothing to evaluate, said so."""
    from recbench.data import fetch

    folder = tmp_path / "dups"
    (folder / "tiny").mkdir(parents=True)
    (folder / "tiny" / "ratings.tsv").write_bytes(b"1\t1\t3\t5\n1\t1\t4\t6\n2\t2\t1\t7\n")
    tiny.register(monkeypatch, expected=None)
    data = fetch("tiny", source=folder, progress=False)
    assert len(data) == 2
    with pytest.raises(DatasetError, match="no user of tiny has at least 2 interactions"):
        load_split("tiny")


class _CoarseKeys:
    """An rng whose keys take only 8 values, so that most candidates tie."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def random(self, shape: tuple[int, ...], dtype: type = np.float64) -> np.ndarray:
        return (np.floor(self.rng.random(shape) * 8) / 8).astype(dtype)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_candidates_break_ties_by_item_id_like_a_slow_reference(seed: int) -> None:
    """Equal keys are ordered by item id: the same lists on every machine, whatever order the
    platform's sort gives equal keys (the fingerprint of a split must not depend on it)."""
    from recbench.data.split import sample_negatives

    rng = np.random.default_rng(seed)
    n_users, n_items, n_neg = 30, 40, 12
    users = rng.integers(0, n_users, 200)
    items = rng.integers(0, n_items, 200)
    ask = np.arange(n_users)
    got = sample_negatives(users, items, n_items, ask, n_neg, _CoarseKeys(seed))
    keys = _CoarseKeys(seed).random((n_users, n_items), dtype=np.float32)
    seen = {(int(u), int(i)) for u, i in zip(users, items, strict=True)}
    for u in range(n_users):
        free = [i for i in range(n_items) if (u, i) not in seen]
        want = sorted(free, key=lambda i, u=u: (keys[u, i], i))[:n_neg]
        assert list(got[u]) == want
