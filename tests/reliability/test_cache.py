"""A cached data set or split modified on disk (one byte flipped) is detected by its
fingerprint and rebuilt or refused, never used."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
from data.builders import Tiny, build_tiny, tsv

from recbench.data import (
    DatasetError,
    DatasetWarning,
    data_home,
    fetch,
    is_fetched,
    load_dataset,
    load_split,
)
from recbench.data.cache import _save_npz

N_NEG = 10


def _flip(path: Path, offset: int) -> None:
    blob = bytearray(path.read_bytes())
    blob[offset % len(blob)] ^= 0x01
    path.write_bytes(bytes(blob))


def _offsets(path: Path, n: int = 12) -> list[int]:
    size = path.stat().st_size
    return sorted({0, size - 1, *np.linspace(1, size - 2, n - 2).astype(int).tolist()})


@pytest.fixture
def tiny(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Tiny:
    return build_tiny(tmp_path, monkeypatch)


@pytest.fixture
def fetched(tiny: Tiny) -> Tiny:
    fetch("tiny", source=tiny.folder, progress=False)
    return tiny


def _dataset_files() -> list[Path]:
    d = data_home() / "datasets" / "tiny"
    return [d / "interactions.npz", d / "interactions.json"]


def test_flipped_byte_in_dataset_is_detected_and_rebuilt(fetched: Tiny) -> None:
    good = load_dataset("tiny")
    for path in _dataset_files():
        for off in _offsets(path):
            _flip(path, off)
            assert not is_fetched("tiny")
            with pytest.warns(DatasetWarning, match="cached tiny is corrupted"):
                again = load_dataset("tiny")  # rebuilt from the folder it was fetched from
            assert again.fingerprint == good.fingerprint
            assert is_fetched("tiny")
            with warnings.catch_warnings():
                warnings.simplefilter("error")  # rebuilt: clean again
                assert load_dataset("tiny").fingerprint == good.fingerprint


def test_flipped_byte_without_source_is_refused(fetched: Tiny) -> None:
    shutil.rmtree(fetched.folder)
    npz = _dataset_files()[0]
    _flip(npz, npz.stat().st_size // 2)
    with pytest.raises(
        DatasetError,
        match=r"cached tiny is corrupted .* was not used; run "
        r"`recbench fetch tiny --force",
    ):
        load_dataset("tiny")
    with pytest.raises(DatasetError):
        load_split("tiny", n_negatives=N_NEG)


def test_fetch_rebuilds_a_corrupted_cache(fetched: Tiny) -> None:
    good = load_dataset("tiny")
    meta = _dataset_files()[1]
    doc = json.loads(meta.read_text())
    doc["payload"]["n_users"] = 21  # a plausible edit, not just noise
    meta.write_text(json.dumps(doc))
    with pytest.warns(DatasetWarning, match="modified"):
        data = fetch("tiny", source=fetched.archive, progress=False)
    assert data.fingerprint == good.fingerprint and data.n_users == 20


def _split_files() -> list[Path]:
    return sorted((data_home() / "splits" / "tiny").iterdir())


def test_flipped_byte_in_split_is_detected_and_rebuilt(fetched: Tiny) -> None:
    good = load_split("tiny", seed=3, n_negatives=N_NEG, validation=True)
    files = _split_files()
    assert [p.suffix for p in files] == [".json", ".npz"]
    for path in files:
        for off in _offsets(path):
            _flip(path, off)
            with pytest.warns(DatasetWarning, match="cached split .* corrupted"):
                again = load_split("tiny", seed=3, n_negatives=N_NEG, validation=True)
            assert again.fingerprint == good.fingerprint
            assert np.array_equal(again.test.candidates, good.test.candidates)
            with warnings.catch_warnings():
                warnings.simplefilter("error")  # rebuilt: clean again
                load_split("tiny", seed=3, n_negatives=N_NEG, validation=True)


def test_truncated_or_missing_split_file_is_rebuilt(fetched: Tiny) -> None:
    good = load_split("tiny", n_negatives=N_NEG)
    npz = next(p for p in _split_files() if p.suffix == ".npz")
    npz.write_bytes(npz.read_bytes()[:100])
    with pytest.warns(DatasetWarning):
        assert load_split("tiny", n_negatives=N_NEG).fingerprint == good.fingerprint
    npz.unlink()
    with pytest.warns(DatasetWarning):
        assert load_split("tiny", n_negatives=N_NEG).fingerprint == good.fingerprint


def test_split_of_changed_data_is_not_reused(fetched: Tiny, tmp_path: Path) -> None:
    a = load_split("tiny", n_negatives=N_NEG)
    folder = tmp_path / "v2"
    (folder / "tiny").mkdir(parents=True)
    (folder / "tiny" / "ratings.tsv").write_bytes(tsv([(u, i, 6 - r, t) for u, i, r, t in fetched.rows]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # same counts, other ratings
        fetch("tiny", source=folder, force=True, progress=False)
    b = load_split("tiny", n_negatives=N_NEG)
    assert a.meta["data_fingerprint"] != b.meta["data_fingerprint"]
    assert a.fingerprint != b.fingerprint
    assert len(list((data_home() / "splits" / "tiny").glob("*.npz"))) == 2


def test_tampered_manifest_is_refused(tiny: Tiny, monkeypatch: pytest.MonkeyPatch) -> None:
    tiny.register(monkeypatch, md5=None, sha256=None)
    fetch("tiny", source=tiny.archive, progress=False)
    manifest = data_home() / "manifest.json"
    doc = json.loads(manifest.read_text())
    doc["payload"]["tiny"]["sha256"] = "0" * 64
    manifest.write_text(json.dumps(doc))
    with pytest.raises(DatasetError, match=r"manifest\.json was modified"):
        fetch("tiny", source=tiny.archive, force=True, progress=False)


def test_cache_never_pickles(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="dtype object"):
        _save_npz(tmp_path / "x.npz", {"a": np.array([{"x": 1}], dtype=object)})
    assert not (tmp_path / "x.npz").exists() and not list(tmp_path.iterdir())
