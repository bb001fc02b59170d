"""Fixtures of the data-layer tests (see builders.py)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from .builders import Tiny, tiny_rows, tsv, zip_bytes


@pytest.fixture
def tiny(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Tiny:
    """The tiny data set as folder + zip, registered with the zip's checksums."""
    rows = tiny_rows()
    data = tsv(rows)
    folder = tmp_path / "src"
    (folder / "tiny").mkdir(parents=True)
    (folder / "tiny" / "ratings.tsv").write_bytes(data)
    archive = tmp_path / "tiny.zip"
    archive.write_bytes(zip_bytes({"tiny/ratings.tsv": data, "tiny/README": b"tiny\n"}))
    blob = archive.read_bytes()
    t = Tiny(rows, data, folder, archive, tmp_path / "extra.toml",
             hashlib.md5(blob).hexdigest(), hashlib.sha256(blob).hexdigest())
    t.register(monkeypatch, md5=t.md5, sha256=t.sha256)
    return t
