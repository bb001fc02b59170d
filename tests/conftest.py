"""Shared fixtures: a seeded rng, an isolated cache, a small synthetic split; one thread per
xdist worker."""

from __future__ import annotations

import os

import numpy as np
import pytest

from recbench.data.split import leave_one_out
from recbench.data.synthetic import make_synthetic
from recbench.data.types import Split


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist (CI: ``-n 2``) each worker keeps to one thread (torch and BLAS), so two
    workers use the two cores instead of oversubscribing them; the processes tests start are
    pinned to one thread by ``tests/reliability/_procs.child_env``."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        import torch
        from threadpoolctl import threadpool_limits

        torch.set_num_threads(1)
        threadpool_limits(limits=1)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(12345)


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test gets its own RECBENCH_HOME so no test touches the user's cache."""
    monkeypatch.setenv("RECBENCH_HOME", str(tmp_path_factory.mktemp("recbench-home")))


@pytest.fixture(scope="session")
def small_split() -> Split:
    """300 users × 500 items synthetic data with latent structure, with a validation item."""
    return leave_one_out(make_synthetic(seed=0), seed=0, validation=True)


@pytest.fixture(scope="session")
def tiny_split() -> Split:
    """A very small split for fast interface tests (60 users × 150 items)."""
    data = make_synthetic(n_users=60, n_items=150, mean_interactions=20, seed=1, name="tiny")
    return leave_one_out(data, seed=0, validation=True)
