"""Fixtures of the data-layer tests (see builders.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from .builders import Tiny, build_tiny


@pytest.fixture
def tiny(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Tiny:
    """The tiny data set as folder + zip, registered with the zip's checksums."""
    return build_tiny(tmp_path, monkeypatch)
