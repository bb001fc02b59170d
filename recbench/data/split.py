"""Leave-one-out split with fixed sampled candidates (He et al., "Neural Collaborative
Filtering", WWW 2017; the protocol the OPECI paper uses).

- Each user's latest interaction (timestamp, ties broken by file order) is the test item; with
  no timestamps, one interaction per user is drawn at random with the split seed.
- With ``validation=True`` the latest remaining interaction becomes the validation item.
- Users with fewer than 2 interactions (3 with validation) stay in training and are not
  evaluated.
- Every evaluated user gets ``n_negatives`` candidates drawn uniformly without replacement from
  the items they never interacted with in the whole data set (seeded), stored with the split.
"""

from __future__ import annotations

import numpy as np

from recbench.data.types import HeldOut, Interactions, Split, TrainData

_CANDIDATE_CHUNK_CELLS = 32_000_000  # random keys drawn per chunk of users (~128 MB of float32)


def _last_per_user(users: np.ndarray, sort_keys: tuple[np.ndarray, ...]) -> np.ndarray:
    """Row index of each user's last row under ``sort_keys`` (least significant first)."""
    order = np.lexsort((*sort_keys, users))
    u_sorted = users[order]
    is_last = np.ones(len(order), dtype=bool)
    is_last[:-1] = u_sorted[1:] != u_sorted[:-1]
    return order[is_last]


def sample_negatives(
    data_users: np.ndarray,
    data_items: np.ndarray,
    n_items: int,
    users: np.ndarray,
    n_negatives: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """For each user in ``users``, ``n_negatives`` distinct items the user never interacted with.

    Uniform without replacement: random keys per (user, item), interacted items pushed to +inf,
    the ``n_negatives`` smallest kept (argpartition), in chunks of users so memory stays bounded.
    """
    users = np.asarray(users, dtype=np.int64)
    out = np.empty((len(users), n_negatives), dtype=np.int32)
    if len(users) == 0 or n_negatives == 0:
        return out
    # CSR-like lookup of each user's interacted items.
    order = np.argsort(data_users, kind="stable")
    su, si = data_users[order].astype(np.int64), data_items[order].astype(np.int64)
    n_users_total = int(max(su.max(initial=-1), users.max(initial=-1))) + 1
    indptr = np.zeros(n_users_total + 1, dtype=np.int64)
    np.cumsum(np.bincount(su, minlength=n_users_total), out=indptr[1:])
    counts = indptr[users + 1] - indptr[users]
    too_many = np.flatnonzero(n_items - counts < n_negatives)
    if len(too_many):
        raise ValueError(
            f"{len(too_many)} user(s) have fewer than {n_negatives} items they never interacted "
            f"with (e.g. user {int(users[too_many[0]])}); lower the number of negatives"
        )
    chunk = max(1, _CANDIDATE_CHUNK_CELLS // max(n_items, 1))
    for start in range(0, len(users), chunk):
        u = users[start : start + chunk]
        keys = rng.random((len(u), n_items), dtype=np.float32)
        lo, hi = indptr[u], indptr[u + 1]
        lens = hi - lo
        rows = np.repeat(np.arange(len(u)), lens)
        cols = si[np.repeat(lo, lens) + (np.arange(lens.sum()) - np.repeat(np.cumsum(lens) - lens, lens))]
        keys[rows, cols] = np.inf
        # Ties between float32 keys are common (24-bit mantissa: ~8 % of ml-100k's users have one),
        # and how argpartition/argsort order equal keys depends on the machine (numpy's SIMD sorts
        # on AVX-512 differ from AVX2's). A total order, the key then the item id, makes the
        # candidate lists the same on every machine: non-negative float32 bit patterns sort like
        # the floats, so ``bits << 32 | item`` is unique and ordered as (key, item).
        total = (keys.view(np.uint32).astype(np.uint64) << np.uint64(32)) | np.arange(n_items, dtype=np.uint64)
        part = np.argpartition(total, n_negatives - 1, axis=1)[:, :n_negatives]
        k = np.take_along_axis(total, part, axis=1)
        out[start : start + len(u)] = np.take_along_axis(part, np.argsort(k, axis=1), axis=1)
    return out


def leave_one_out(
    data: Interactions,
    *,
    seed: int = 0,
    n_negatives: int = 99,
    validation: bool = False,
) -> Split:
    """Build the leave-one-out split of ``data`` (see the module docstring)."""
    rng = np.random.default_rng(seed)
    n = len(data)
    users = data.users.astype(np.int64)
    file_order = np.arange(n, dtype=np.int64)
    if data.timestamps is not None:
        time_keys: tuple[np.ndarray, ...] = (file_order, data.timestamps.astype(np.int64))
    else:
        time_keys = (rng.permutation(n),)  # a random "latest" interaction per user

    counts = np.bincount(users, minlength=data.n_users)
    min_count = 3 if validation else 2
    eligible = counts >= min_count

    in_train = np.ones(n, dtype=bool)
    test_rows = _last_per_user(users, time_keys)
    test_rows = test_rows[eligible[users[test_rows]]]
    in_train[test_rows] = False
    valid_rows = np.empty(0, dtype=np.int64)
    if validation:
        rem = np.flatnonzero(in_train)
        valid_rows = rem[_last_per_user(users[rem], tuple(k[rem] for k in time_keys))]
        valid_rows = valid_rows[eligible[users[valid_rows]]]
        in_train[valid_rows] = False

    train = TrainData(
        users=data.users[in_train].astype(np.int32),
        items=data.items[in_train].astype(np.int32),
        ratings=data.ratings[in_train].astype(np.float32),
        n_users=data.n_users,
        n_items=data.n_items,
        rating_values=tuple(data.rating_values),
    )

    def held_out(rows: np.ndarray) -> HeldOut:
        rows = rows[np.argsort(users[rows], kind="stable")]
        u = data.users[rows].astype(np.int32)
        negs = sample_negatives(data.users, data.items, data.n_items, u, n_negatives, rng)
        cands = np.concatenate([data.items[rows].astype(np.int32)[:, None], negs], axis=1)
        return HeldOut(users=u, items=data.items[rows].astype(np.int32), candidates=cands)

    test = held_out(test_rows)
    valid = held_out(valid_rows) if validation else None
    return Split(
        dataset=data.name,
        train=train,
        test=test,
        validation=valid,
        seed=seed,
        n_negatives=n_negatives,
        n_not_evaluated=int((~eligible & (counts > 0)).sum()),
        meta={"data_fingerprint": data.fingerprint, "validation": validation},
    )
