"""Metrics against hand-computed cases, and properties with hypothesis."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from recbench.eval import metrics


def test_hand_computed_ranks() -> None:
    ranks = np.array([0, 1, 9, 10, 50])
    np.testing.assert_allclose(metrics.hit_rate(ranks, 10), [1, 1, 1, 0, 0])
    np.testing.assert_allclose(metrics.ndcg(ranks, 10), [1.0, 1 / math.log2(3), 1 / math.log2(11), 0.0, 0.0])
    s = metrics.summarize(ranks, ks=(1, 10))
    assert s["hr@1"] == pytest.approx(0.2)
    assert s["ndcg@1"] == pytest.approx(0.2)
    assert s["hr@10"] == pytest.approx(0.6)
    assert s["ndcg@10"] == pytest.approx((1 + 1 / math.log2(3) + 1 / math.log2(11)) / 5)


def test_k_edges() -> None:
    # rank K-1 is the last hit, rank K the first miss
    assert metrics.hit_rate(np.array([4]), 5)[0] == 1
    assert metrics.hit_rate(np.array([5]), 5)[0] == 0
    assert metrics.ndcg(np.array([5]), 5)[0] == 0


def test_unknown_metric() -> None:
    with pytest.raises(ValueError, match="hr@K"):
        metrics.per_user(np.array([0]), "auc@10")  # (mrr@10 was unknown before the metric table)


@given(st.lists(st.integers(0, 200), min_size=1, max_size=50), st.integers(1, 100))
def test_properties(ranks: list[int], k: int) -> None:
    r = np.array(ranks)
    hr, nd = metrics.hit_rate(r, k), metrics.ndcg(r, k)
    assert ((nd > 0) == (hr > 0)).all()
    assert (nd <= hr).all() and (nd >= 0).all()
    # NDCG is 1 exactly at rank 0 and decreasing in rank
    order = np.argsort(r, kind="stable")
    assert (np.diff(nd[order]) <= 1e-12).all()
