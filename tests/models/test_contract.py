"""The contract every registered model inherits (after ``implicit``'s recommender_base_test),
from :class:`recbench.testing.ModelContract`, the class plugin authors use too: fit on tiny
synthetic data, score pairs and whole rows consistently, reject bad ids, and be deterministic
for a seed."""

from __future__ import annotations

from recbench.registry import MODELS
from recbench.testing import ModelContract

for _name, _cls in MODELS.items():
    _test = type(f"TestContract_{_name.replace('-', '_')}", (ModelContract,), {"model_class": _cls})
    globals()[_test.__name__] = _test


def test_registered_under_their_own_name() -> None:
    assert all(cls.name == name for name, cls in MODELS.items())
