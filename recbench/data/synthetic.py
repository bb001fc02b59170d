"""The embedded ``synthetic`` data set: deterministic from a seed, no download.

A latent-factor model with popularity skew: user u picks items with probability proportional to
``exp(p_u·q_i / T + log pop_i)`` (Gumbel top-k, so without replacement); the rating is the
affinity's quintile within the user's own picks (1..5); timestamps are random.
"""

from __future__ import annotations

import numpy as np

from recbench.data.types import Interactions


def make_synthetic(
    n_users: int = 300,
    n_items: int = 500,
    mean_interactions: float = 50.0,
    n_factors: int = 8,
    seed: int = 0,
    name: str = "synthetic",
    affinity_scale: float = 2.0,
    popularity_weight: float = 0.5,
) -> Interactions:
    """Generate the synthetic data set (about ``n_users * mean_interactions`` interactions).

    ``affinity_scale`` multiplies the (unit-variance) latent affinity and ``popularity_weight``
    the log popularity in the choice logits: their ratio sets how much a user's picks follow
    their own taste rather than the crowd's."""
    rng = np.random.default_rng(seed)
    p = rng.normal(size=(n_users, n_factors)).astype(np.float32)
    q = rng.normal(size=(n_items, n_factors)).astype(np.float32)
    pop = rng.zipf(1.6, size=n_items).clip(max=1000).astype(np.float64)
    affinity = (p @ q.T) / np.sqrt(n_factors) * affinity_scale
    logits = affinity + popularity_weight * np.log(pop)[None, :]
    gumbel = -np.log(-np.log(rng.random((n_users, n_items)) + 1e-12) + 1e-12)
    keys = logits + gumbel
    k_user = np.clip(rng.poisson(mean_interactions, size=n_users), 5, n_items - 101)
    order = np.argsort(-keys, axis=1)
    rank_in_row = np.empty_like(order)
    np.put_along_axis(rank_in_row, order, np.arange(n_items)[None, :].repeat(n_users, 0), axis=1)
    chosen = rank_in_row < k_user[:, None]
    users, items = np.nonzero(chosen)
    aff = affinity[users, items]
    # Rating: quintile of the affinity among the user's own picks.
    aff_rank = np.empty(len(users), dtype=np.int64)
    o = np.lexsort((aff, users))
    starts = np.searchsorted(users[o], users[o], side="left")
    aff_rank[o] = np.arange(len(o)) - starts
    ratings = 1 + np.floor(5 * aff_rank / k_user[users]).astype(np.int64)
    ratings = ratings.clip(1, 5).astype(np.float32)
    perm = rng.permutation(len(users))  # file order
    ts = rng.integers(1_000_000_000, 1_100_000_000, size=len(users)).astype(np.int64)
    return Interactions(
        name=name,
        users=users[perm].astype(np.int32),
        items=items[perm].astype(np.int32),
        ratings=ratings[perm],
        timestamps=ts,
        n_users=n_users,
        n_items=n_items,
        rating_values=(1.0, 2.0, 3.0, 4.0, 5.0),
    )
