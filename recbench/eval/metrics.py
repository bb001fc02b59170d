"""Ranking metrics from the 0-based rank of the held-out item (binary relevance), one table.

HR@K = 1 if rank < K; NDCG@K = 1 / log2(rank + 2) if rank < K, else 0 (with a single relevant
item the ideal DCG is 1); MRR@K = 1 / (rank + 1) if rank < K; Recall@K = HR@K (one relevant item:
found or not); Precision@K = 1 / K if rank < K. :data:`METRICS` is the one place a metric is
named: the CLI's checks and help, summaries, tuning and early stopping read it. A rank is the number of other
candidates scored **greater than or equal to** the held-out item: ties count against the held-out item, so a
model that scores everything equal gets rank ``n_candidates - 1`` and HR 0, never a lucky draw.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

DEFAULT_KS: tuple[int, ...] = (10,)


def hit_rate(ranks: np.ndarray, k: int) -> np.ndarray:
    """Per-user HR@k (0/1 floats)."""
    return (np.asarray(ranks) < k).astype(np.float64)


def ndcg(ranks: np.ndarray, k: int) -> np.ndarray:
    """Per-user NDCG@k."""
    r = np.asarray(ranks, dtype=np.float64)
    return np.where(r < k, 1.0 / np.log2(r + 2.0), 0.0)


def mrr(ranks: np.ndarray, k: int) -> np.ndarray:
    """Per-user reciprocal rank, cut at k."""
    r = np.asarray(ranks, dtype=np.float64)
    return np.where(r < k, 1.0 / (r + 1.0), 0.0)


def precision(ranks: np.ndarray, k: int) -> np.ndarray:
    """Per-user precision@k with one relevant item."""
    return hit_rate(ranks, k) / k


@dataclass(frozen=True)
class Metric:
    per_user: Callable[[np.ndarray, int], np.ndarray]  # 0-based ranks, K → per-user values
    description: str


METRICS: dict[str, Metric] = {
    "hr": Metric(hit_rate, "hit ratio: the held-out item in the top K"),
    "ndcg": Metric(ndcg, "normalised discounted cumulative gain, 1/log2(rank+2) in the top K"),
    "mrr": Metric(mrr, "reciprocal rank 1/(rank+1) in the top K"),
    "recall": Metric(hit_rate, "recall: equals HR@K with one held-out item"),
    "precision": Metric(precision, "precision: 1/K when the held-out item is in the top K"),
}


def parse_metric(metric: str) -> tuple[str, int]:
    """``"ndcg@10"`` → ``("ndcg", 10)``; a ``ValueError`` naming the valid metrics otherwise."""
    name, _, k = metric.strip().lower().partition("@")
    if name not in METRICS or not k.isdigit() or int(k) < 1:
        raise ValueError(f"unknown metric {metric!r}; valid: {', '.join(f'{n}@K' for n in METRICS)} with K ≥ 1")
    return name, int(k)


def per_user(ranks: np.ndarray, metric: str) -> np.ndarray:
    """Per-user values of ``"hr@10"``-style metric names."""
    name, k = parse_metric(metric)
    return METRICS[name].per_user(ranks, k)


def summarize(ranks: np.ndarray, ks: Iterable[int] = DEFAULT_KS) -> dict[str, float]:
    """Mean HR@K and NDCG@K over users for each K."""
    out: dict[str, float] = {}
    for k in ks:
        out[f"hr@{k}"] = float(hit_rate(ranks, k).mean()) if len(ranks) else float("nan")
        out[f"ndcg@{k}"] = float(ndcg(ranks, k).mean()) if len(ranks) else float("nan")
    return out
