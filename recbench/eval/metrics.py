"""Ranking metrics from the 0-based rank of the held-out item (binary relevance).

HR@K = 1 if rank < K; NDCG@K = 1 / log2(rank + 2) if rank < K, else 0 (with a single relevant
item the ideal DCG is 1). A rank is the number of other candidates scored **greater than or
equal to** the held-out item: ties count against the held-out item, so a model that scores
everything equal gets rank ``n_candidates - 1`` and HR 0, never a lucky draw.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

DEFAULT_KS: tuple[int, ...] = (10,)


def hit_rate(ranks: np.ndarray, k: int) -> np.ndarray:
    """Per-user HR@k (0/1 floats)."""
    return (np.asarray(ranks) < k).astype(np.float64)


def ndcg(ranks: np.ndarray, k: int) -> np.ndarray:
    """Per-user NDCG@k."""
    r = np.asarray(ranks, dtype=np.float64)
    return np.where(r < k, 1.0 / np.log2(r + 2.0), 0.0)


def per_user(ranks: np.ndarray, metric: str) -> np.ndarray:
    """Per-user values of ``"hr@10"``-style metric names."""
    name, _, k = metric.partition("@")
    fn = {"hr": hit_rate, "ndcg": ndcg}.get(name)
    if fn is None or not k.isdigit():
        raise ValueError(f"unknown metric {metric!r}; use hr@K or ndcg@K")
    return fn(ranks, int(k))


def summarize(ranks: np.ndarray, ks: Iterable[int] = DEFAULT_KS) -> dict[str, float]:
    """Mean HR@K and NDCG@K over users for each K."""
    out: dict[str, float] = {}
    for k in ks:
        out[f"hr@{k}"] = float(hit_rate(ranks, k).mean()) if len(ranks) else float("nan")
        out[f"ndcg@{k}"] = float(ndcg(ranks, k).mean()) if len(ranks) else float("nan")
    return out
