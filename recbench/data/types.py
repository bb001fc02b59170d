"""The data objects that flow through recbench: a preprocessed data set, the training
interactions a model sees, and a leave-one-out split with fixed evaluation candidates."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import scipy.sparse as sp


def _hash_arrays(*arrays: np.ndarray | None) -> str:
    h = hashlib.sha256()
    for a in arrays:
        if a is None:
            h.update(b"<none>")
            continue
        a = np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<"))  # the same bytes on any machine
        h.update(str(a.dtype).encode())
        h.update(str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()


@dataclass(frozen=True, eq=False)
class Interactions:
    """A preprocessed data set: one row per (user, item) pair, ids contiguous in 0..n-1.

    Rows keep the source file's order, which breaks timestamp ties in the split.
    ``rating_values`` is the declared rating scale (e.g. 1..5, or FilmTrust's 0.5..4.0).
    """

    name: str
    users: np.ndarray  # int32
    items: np.ndarray  # int32
    ratings: np.ndarray  # float32
    timestamps: np.ndarray | None  # int64, or None when the source has none
    n_users: int
    n_items: int
    rating_values: tuple[float, ...]
    user_ids: np.ndarray | None = None  # original ids, index = contiguous id
    item_ids: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.users)
        if len(self.items) != n or len(self.ratings) != n:
            raise ValueError("users, items and ratings must have the same length")
        if self.timestamps is not None and len(self.timestamps) != n:
            raise ValueError("timestamps must have the same length as users")

    def __len__(self) -> int:
        return len(self.users)

    @property
    def density(self) -> float:
        return len(self) / float(self.n_users * self.n_items) if self.n_users and self.n_items else 0.0

    @cached_property
    def fingerprint(self) -> str:
        return _hash_arrays(self.users, self.items, self.ratings, self.timestamps)


@dataclass(frozen=True, eq=False)
class TrainData:
    """What ``Model.fit`` sees: the training interactions only (never a test or validation item)."""

    users: np.ndarray  # int32
    items: np.ndarray  # int32
    ratings: np.ndarray  # float32
    n_users: int
    n_items: int
    rating_values: tuple[float, ...]

    def __len__(self) -> int:
        return len(self.users)

    @property
    def max_rating(self) -> float:
        return float(max(self.rating_values))

    @cached_property
    def csr(self) -> sp.csr_matrix:
        """Users × items matrix of ratings (sorted indices, no duplicates)."""
        m = sp.csr_matrix(
            (self.ratings.astype(np.float32), (self.users, self.items)),
            shape=(self.n_users, self.n_items),
            dtype=np.float32,
        )
        m.sort_indices()
        return m

    @cached_property
    def csc(self) -> sp.csc_matrix:
        m = self.csr.tocsc()
        m.sort_indices()
        return m

    @cached_property
    def item_counts(self) -> np.ndarray:
        return np.bincount(self.items, minlength=self.n_items).astype(np.int64)

    @cached_property
    def user_counts(self) -> np.ndarray:
        return np.bincount(self.users, minlength=self.n_users).astype(np.int64)

    @cached_property
    def pair_keys(self) -> np.ndarray:
        """Sorted int64 keys ``user * n_items + item`` for fast membership tests."""
        return np.sort(self.users.astype(np.int64) * self.n_items + self.items)

    def contains(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Vectorised: is each (user, item) pair a training interaction?"""
        keys = np.asarray(users, dtype=np.int64) * self.n_items + np.asarray(items, dtype=np.int64)
        pos = np.searchsorted(self.pair_keys, keys)
        pos = np.minimum(pos, len(self.pair_keys) - 1)
        return self.pair_keys[pos] == keys if len(self.pair_keys) else np.zeros(keys.shape, bool)


@dataclass(frozen=True, eq=False)
class HeldOut:
    """Held-out items of one role (test or validation) with their sampled candidates.

    ``candidates[k, 0]`` is the held-out item of ``users[k]``; ``candidates[k, 1:]`` are its
    sampled negatives (items the user never interacted with in the whole data set).
    """

    users: np.ndarray  # int32, sorted, unique
    items: np.ndarray  # int32
    candidates: np.ndarray  # int32 [n_users_evaluated, 1 + n_negatives]

    def __len__(self) -> int:
        return len(self.users)


@dataclass(frozen=True, eq=False)
class Split:
    """A leave-one-out split: training interactions, a test item per eligible user and, when
    requested, a validation item; candidates are fixed at split time so every model is ranked
    against exactly the same lists."""

    dataset: str
    train: TrainData
    test: HeldOut
    validation: HeldOut | None
    seed: int
    n_negatives: int
    n_not_evaluated: int  # users with too few interactions: training only
    meta: dict = field(default_factory=dict)

    @property
    def n_users(self) -> int:
        return self.train.n_users

    @property
    def n_items(self) -> int:
        return self.train.n_items

    @cached_property
    def fingerprint(self) -> str:
        """Stable hash of the split's content (every result records it)."""
        parts = [
            self.train.users,
            self.train.items,
            self.train.ratings,
            self.test.users,
            self.test.items,
            self.test.candidates,
        ]
        if self.validation is not None:
            parts += [self.validation.users, self.validation.items, self.validation.candidates]
        else:
            parts += [None, None, None]
        head = f"{self.train.n_users}:{self.train.n_items}:{self.train.rating_values}".encode()
        return hashlib.sha256(head + _hash_arrays(*parts).encode()).hexdigest()[:16]
