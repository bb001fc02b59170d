"""recbench.stats against scipy and hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

from recbench import stats
from recbench.eval.metrics import per_user
from recbench.results import Record

# ----------------------------------------------------------------------------- over seeds


def test_mean_ci_formula_and_scipy() -> None:
    v = np.array([0.41, 0.44, 0.43])
    mean, std, lo, hi = stats.mean_ci(v)
    assert mean == pytest.approx(0.42666666666)
    assert std == pytest.approx(np.sqrt(((v - v.mean()) ** 2).sum() / 2))
    half = sps.t.ppf(0.975, 2) * std / np.sqrt(3)  # t_{0.975, n-1} s / sqrt(n)
    assert (lo, hi) == pytest.approx((mean - half, mean + half))
    assert (lo, hi) == pytest.approx(sps.t.interval(0.95, 2, loc=mean, scale=sps.sem(v)))
    assert half == pytest.approx(4.302652729911275 * std / np.sqrt(3))


def test_mean_ci_one_seed_has_no_spread() -> None:
    mean, std, lo, hi = stats.mean_ci([0.5])
    assert mean == 0.5 and np.isnan(std) and np.isnan(lo) and np.isnan(hi)
    assert np.isnan(stats.mean_ci([])[0])


# ----------------------------------------------------------------------------- paired tests

A = np.array([0.63, 0.0, 1.0, 0.5, 0.43, 0.39, 0.0, 0.33, 1.0, 0.63, 0.5, 0.0, 0.29, 0.39, 1.0, 0.43])
B = np.array([0.5, 0.0, 0.63, 0.5, 0.39, 0.0, 0.0, 0.31, 0.63, 0.43, 0.39, 0.0, 0.33, 0.0, 1.0, 0.29])


def test_wilcoxon_matches_scipy() -> None:
    res = stats.wilcoxon(A, B)
    ref = sps.wilcoxon(A, B, zero_method="wilcox", alternative="two-sided")
    assert res.p_value == pytest.approx(ref.pvalue)
    assert res.statistic == pytest.approx(ref.statistic)
    assert res.mean_diff == pytest.approx((A - B).mean())
    assert res.n_users == len(A)
    # larger sample (normal approximation path)
    rng = np.random.default_rng(3)
    a, b = rng.random(500), rng.random(500) * 0.95
    assert stats.wilcoxon(a, b).p_value == pytest.approx(sps.wilcoxon(a, b).pvalue)


def test_wilcoxon_identical_inputs() -> None:
    assert stats.wilcoxon(A, A).p_value == 1.0
    with pytest.raises(ValueError):
        stats.wilcoxon(A, B[:-1])


def test_paired_bootstrap_reference_and_determinism() -> None:
    d = A - B
    n_boot = 2000
    res = stats.paired_bootstrap(A, B, n_boot=n_boot, seed=7, chunk=n_boot)
    # slow reference: the same draws, one resample at a time
    rng = np.random.default_rng(7)
    idx = rng.integers(0, len(d), size=(n_boot, len(d)))
    extreme = sum(abs(d[i].mean() - d.mean()) >= abs(d.mean()) - 1e-15 for i in idx)
    assert res.p_value == pytest.approx((1 + extreme) / (1 + n_boot))
    # chunking does not change the draws
    assert stats.paired_bootstrap(A, B, n_boot=n_boot, seed=7, chunk=300).p_value == res.p_value
    assert res.statistic == pytest.approx(d.mean())


def test_paired_bootstrap_detects_an_effect_and_its_absence() -> None:
    rng = np.random.default_rng(0)
    a = rng.random(300)
    assert stats.paired_bootstrap(a + 0.1, a, n_boot=1000).p_value < 0.01  # constant shift
    b = a + rng.normal(0, 0.1, 300)
    b = b - (b - a).mean()  # no mean difference at all
    assert stats.paired_bootstrap(a, b, n_boot=1000).p_value > 0.5
    assert stats.paired_bootstrap(a, a).p_value == 1.0


def test_holm_hand_computed() -> None:
    # sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 = 0.04 -> max-accumulated 0.06
    p = [0.01, 0.04, 0.03, 0.005]
    assert stats.holm(p) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    # capped at 1, NaN kept out of the family
    out = stats.holm([0.5, np.nan, 0.4])
    assert out[0] == pytest.approx(0.8) and np.isnan(out[1]) and out[2] == pytest.approx(0.8)
    assert stats.holm([0.6, 0.7]) == pytest.approx([1.0, 1.0])
    assert stats.holm([0.02]) == pytest.approx([0.02])
    assert len(stats.holm([])) == 0


# ----------------------------------------------------------------------------- Kendall


def test_kendall_tau_matches_scipy_and_names_swaps() -> None:
    names = ["a", "b", "c", "d"]
    x = [0.9, 0.8, 0.7, 0.6]
    y = [0.30, 0.35, 0.20, 0.10]
    ag = stats.kendall_tau(names, x, y)
    ref = sps.kendalltau(x, y)
    assert ag.tau == pytest.approx(ref.statistic) and ag.p_value == pytest.approx(ref.pvalue)
    assert ag.tau == pytest.approx(4 / 6)  # 5 concordant, 1 discordant pair
    assert ag.discordant == [("a", "b")] and not ag.agree
    same = stats.kendall_tau(names, x, [4, 3, 2, 1])
    assert same.tau == pytest.approx(1.0) and same.agree


# ----------------------------------------------------------------------------- per-user values


def _rec(users: np.ndarray, ranks: np.ndarray, seed: int, split: str = "fp") -> Record:
    return Record(data={"model": "m", "seed": seed, "split": split}, users=users, ranks={"test/sampled": ranks})


def test_user_values_align_by_users_and_average_seeds() -> None:
    users = np.array([3, 1, 2, 0])
    r0 = np.array([0, 5, 20, 1])
    order = np.array([2, 0, 3, 1])  # the same users, another order, in the second seed
    r1 = np.array([1, 0, 3, 9])[order]
    fp, u, v = stats.user_values([_rec(users, r0, 0), _rec(users[order], r1, 1)], "ndcg@10", "test/sampled")
    assert fp == "fp" and list(u) == [0, 1, 2, 3]
    nd = lambda r: per_user(np.array([r]), "ndcg@10")[0]  # noqa: E731
    # user 0: rank 1 (seed 0), rank 9 (seed 1); user 3: rank 0 and 1
    assert v[0] == pytest.approx((nd(1) + nd(9)) / 2)
    assert v[3] == pytest.approx((nd(0) + nd(1)) / 2)
    assert v[2] == pytest.approx((nd(20) + nd(3)) / 2)


def test_user_values_needs_one_split_and_ranks() -> None:
    u = np.arange(3)
    with pytest.raises(stats.PairingError, match="different splits"):
        stats.user_values([_rec(u, u, 0, "x"), _rec(u, u, 1, "y")], "hr@10", "test/sampled")
    with pytest.raises(stats.PairingError, match="no per-user ranks"):
        stats.user_values([_rec(u, u, 0)], "hr@10", "test/full")


def test_align() -> None:
    common, a, b = stats.align(
        np.array([5, 1, 3]), np.array([0.5, 0.1, 0.3]), np.array([3, 5, 7]), np.array([3.0, 5.0, 7.0])
    )
    assert list(common) == [3, 5] and list(a) == [0.3, 0.5] and list(b) == [3.0, 5.0]
