"""Statistics for reports: seed-level summaries, paired tests over users, Holm's correction and
the rank agreement between two evaluation protocols.

- :func:`mean_ci` — mean, sample std (ddof 1) and the two-sided t confidence interval
  ``mean ± t_{1-α/2, n-1} · s / √n`` over seeds.
- :func:`wilcoxon` — Wilcoxon signed-rank test on paired per-user values (scipy;
  ``zero_method="wilcox"``: users with equal values on both sides are dropped, as is usual).
- :func:`paired_bootstrap` — paired bootstrap over users: resample users with replacement and
  compare the centred bootstrap means with the observed mean difference (two-sided).
- :func:`one_sample_t` — one-sample t test of per-user values against a published number (the
  paper's), which is taken as a constant: it ignores the paper's own sampling error, so it
  overstates significance; a small p says our mean is not the paper's, not that either is wrong.
- :func:`holm` — Holm's step-down adjustment of a family of p-values.
- :func:`kendall_tau` — Kendall's τ-b between two orderings of the same models (scipy).
- :func:`user_values` — per-user metric values of one model, averaged over its seeds, aligned by
  the ``users`` array of each record's ranks file, with one split fingerprint required.

Everything here is pure (arrays in, numbers out) except :func:`user_values`, which reads
:class:`~recbench.results.Record` objects.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats as sps

from recbench.eval.metrics import per_user
from recbench.results import Record

TESTS = ("wilcoxon", "bootstrap")


# ----------------------------------------------------------------------------- over seeds


def mean_ci(values: Sequence[float] | np.ndarray, confidence: float = 0.95) -> tuple[float, float, float, float]:
    """``(mean, std, low, high)`` of ``values`` (seeds): std with ddof 1, the t interval.
    With one value the std and the interval are NaN (no spread can be estimated)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[~np.isnan(v)]
    n = len(v)
    if n == 0:
        return (np.nan, np.nan, np.nan, np.nan)
    mean = float(v.mean())
    if n == 1:
        return (mean, np.nan, np.nan, np.nan)
    std = float(v.std(ddof=1))
    half = float(sps.t.ppf(0.5 + confidence / 2, n - 1) * std / np.sqrt(n))
    return (mean, std, mean - half, mean + half)


# ----------------------------------------------------------------------------- paired tests


@dataclass(frozen=True)
class PairedResult:
    """One paired comparison ``a`` (the reference) against ``b`` over the same users."""

    n_users: int
    mean_diff: float  # mean over users of a - b
    statistic: float
    p_value: float


def wilcoxon(a: np.ndarray, b: np.ndarray) -> PairedResult:
    """Two-sided Wilcoxon signed-rank test of ``a`` against ``b`` (paired by position).
    Identical inputs (every difference zero) give p = 1 rather than an error."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired samples differ in length: {a.shape} vs {b.shape}")
    d = a - b
    if len(d) == 0:
        return PairedResult(0, np.nan, np.nan, np.nan)
    if not np.any(d != 0):
        return PairedResult(len(d), 0.0, 0.0, 1.0)
    res = sps.wilcoxon(a, b, zero_method="wilcox", alternative="two-sided")
    return PairedResult(len(d), float(d.mean()), float(res.statistic), float(res.pvalue))


def paired_bootstrap(
    a: np.ndarray, b: np.ndarray, n_boot: int = 10_000, seed: int = 0, chunk: int = 500
) -> PairedResult:
    """Two-sided paired bootstrap test of the mean difference ``a - b`` over users.

    Users are resampled with replacement ``n_boot`` times; under the null the bootstrap means
    are centred on zero by subtracting the observed mean, and the p-value is
    ``(1 + #{|mean* - mean| >= |mean|}) / (1 + n_boot)`` (never exactly zero). ``statistic``
    is the observed mean difference. Seeded: the same inputs give the same p-value."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired samples differ in length: {a.shape} vs {b.shape}")
    d = a - b
    n = len(d)
    if n == 0:
        return PairedResult(0, np.nan, np.nan, np.nan)
    obs = float(d.mean())
    if not np.any(d != d[0]):  # no spread: the bootstrap distribution is a point
        return PairedResult(n, obs, obs, 1.0 if obs == 0 else 1.0 / (1 + n_boot))
    rng = np.random.default_rng(seed)
    extreme = 0
    done = 0
    while done < n_boot:
        m = min(chunk, n_boot - done)
        idx = rng.integers(0, n, size=(m, n))
        boot = d[idx].mean(axis=1)
        extreme += int(np.sum(np.abs(boot - obs) >= abs(obs) - 1e-15))
        done += m
    return PairedResult(n, obs, obs, (1 + extreme) / (1 + n_boot))


def paired_test(a: np.ndarray, b: np.ndarray, method: str = "wilcoxon", seed: int = 0) -> PairedResult:
    """The paired test ``method`` (``wilcoxon`` or ``bootstrap``) of ``a`` against ``b``."""
    if method == "wilcoxon":
        return wilcoxon(a, b)
    if method == "bootstrap":
        return paired_bootstrap(a, b, seed=seed)
    raise ValueError(f"unknown test {method!r}; valid: {', '.join(TESTS)}")


def one_sample_t(values: np.ndarray, mu: float) -> PairedResult:
    """Two-sided one-sample t test over users of ``values`` against the constant ``mu``;
    ``mean_diff`` is mean(values) − mu. Fewer than two users: p is NaN; no spread: p = 1 when the
    mean is ``mu``, else 0."""
    v = np.asarray(values, dtype=np.float64)
    n = len(v)
    if n < 2 or np.isnan(mu):
        return PairedResult(n, float(v.mean() - mu) if n else np.nan, np.nan, np.nan)
    diff = float(v.mean() - mu)
    if not np.any(v != v[0]):
        return PairedResult(n, diff, np.nan, 1.0 if diff == 0 else 0.0)
    res = sps.ttest_1samp(v, mu)
    return PairedResult(n, diff, float(res.statistic), float(res.pvalue))


def holm(pvalues: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm's step-down adjusted p-values (same order as the input; NaN stays NaN and does not
    count in the family size). ``p_(i)`` sorted ascending, m tests:
    ``adj_(i) = max_{j<=i} min(1, (m - j + 1) p_(j))`` (1-based j)."""
    p = np.asarray(pvalues, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    m = len(ok)
    if m == 0:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    scaled = np.minimum(1.0, (m - np.arange(m)) * p[order])
    out[order] = np.maximum.accumulate(scaled)
    return out


# ----------------------------------------------------------------------------- protocol agreement


@dataclass(frozen=True)
class Agreement:
    """Kendall's τ between two orderings of the same models, and the pairs they swap."""

    tau: float
    p_value: float
    n_models: int
    discordant: list[tuple[str, str]]  # model pairs ordered one way by x and the other by y

    @property
    def agree(self) -> bool:
        """Whether the two orderings are the same (no discordant pair)."""
        return not self.discordant


def kendall_tau(names: Sequence[str], x: Sequence[float], y: Sequence[float]) -> Agreement:
    """Kendall's τ-b between the orderings of ``names`` by ``x`` and by ``y`` (higher is
    better in both), with the pairs the two orderings disagree on."""
    xs = np.asarray(x, dtype=np.float64)
    ys = np.asarray(y, dtype=np.float64)
    n = len(names)
    disc = [(names[i], names[j]) for i in range(n) for j in range(i + 1, n) if (xs[i] - xs[j]) * (ys[i] - ys[j]) < 0]
    if n < 2:
        return Agreement(np.nan, np.nan, n, [])
    res = sps.kendalltau(xs, ys)
    return Agreement(float(res.statistic), float(res.pvalue), n, disc)


# ----------------------------------------------------------------------------- per-user values


class PairingError(ValueError):
    """Records that cannot be paired over users (different splits, no ranks)."""


def user_values(records: Sequence[Record], metric: str, role: str) -> tuple[str, np.ndarray, np.ndarray]:
    """``(split fingerprint, users, values)``: the per-user ``metric`` of ``records`` (the seeds
    of one model on one dataset) from their ``role`` ranks (e.g. ``"test/sampled"``), averaged
    over the seeds per user. Users are aligned through each ranks file's ``users`` array; only
    users present in every seed are kept. All records must share one split fingerprint."""
    if not records:
        raise PairingError("no records")
    splits = {r.data.get("split") for r in records}
    if len(splits) != 1:
        raise PairingError(f"records on {len(splits)} different splits")
    per_seed = []
    for r in records:
        if r.users is None or role not in r.ranks:
            raise PairingError(f"{r['model']} seed {r['seed']}: no per-user ranks for {role}")
        per_seed.append((np.asarray(r.users, dtype=np.int64), per_user(r.ranks[role], metric)))
    common = per_seed[0][0]
    for u, _ in per_seed[1:]:
        common = np.intersect1d(common, u)
    common = np.unique(common)
    total = np.zeros(len(common))
    for u, v in per_seed:
        order = np.argsort(u, kind="stable")
        pos = order[np.searchsorted(u, common, sorter=order)]
        total += v[pos]
    return next(iter(splits)), common, total / len(per_seed)


def split_variance(splits: np.ndarray, values: np.ndarray) -> tuple[float, float]:
    """``(std between splits, std within a split)`` of runs on several splits: the std of the
    per-split means, and the root of the mean per-split variance over model seeds (ddof 1).
    NaN where it cannot be estimated (one split; no split with two seeds)."""
    groups: dict[Any, list[float]] = {}
    for sp, v in zip(splits, values, strict=True):
        if not np.isnan(v):
            groups.setdefault(sp, []).append(float(v))
    if len(groups) < 2:
        return float("nan"), float("nan")
    means = [np.mean(g) for g in groups.values()]
    within = [np.var(g, ddof=1) for g in groups.values() if len(g) > 1]
    return float(np.std(means, ddof=1)), float(np.sqrt(np.mean(within))) if within else float("nan")


def paired_values(a: Sequence[Record], b: Sequence[Record], metric: str, role: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-user values of two models paired *within* each split they share: users of split 1
    with themselves on split 1, and so on, concatenated (records of several split seeds pooled
    on purpose). :class:`PairingError` when they share no split."""
    by_split: dict[str, tuple[list[Record], list[Record]]] = {}
    for side, recs in ((0, a), (1, b)):
        for r in recs:
            by_split.setdefault(str(r.data.get("split")), ([], []))[side].append(r)
    shared = [fp for fp, (x, y) in by_split.items() if x and y]
    if not shared:
        fa = sorted({str(r.data.get("split"))[:8] for r in a})
        fb = sorted({str(r.data.get("split"))[:8] for r in b})
        raise PairingError(f"split {', '.join(fb)} differs from the reference's {', '.join(fa)}")
    va, vb = [], []
    for fp in sorted(shared):
        _, ua, xa = user_values(by_split[fp][0], metric, role)
        _, ub, xb = user_values(by_split[fp][1], metric, role)
        _, pa, pb = align(ua, xa, ub, xb)
        va.append(pa)
        vb.append(pb)
    return np.concatenate(va), np.concatenate(vb)


def align(u1: np.ndarray, v1: np.ndarray, u2: np.ndarray, v2: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The users both sides have (sorted) and the two value arrays on them."""
    common, i1, i2 = np.intersect1d(u1, u2, assume_unique=True, return_indices=True)
    return common, v1[i1], v2[i2]
