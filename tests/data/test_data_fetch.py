"""fetch from local sources (archive, folder, bare file), the cache, and load_dataset."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np
import pytest

from recbench.data import (
    ChecksumError,
    DatasetError,
    DatasetNotFetched,
    DatasetWarning,
    data_home,
    dataset_info,
    fetch,
    fetched_datasets,
    is_fetched,
    load_dataset,
    load_split,
)

from .builders import Tiny, zip_bytes


def _cache_dir() -> Path:
    return data_home() / "datasets" / "tiny"


def test_data_home_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert data_home(tmp_path / "x") == tmp_path / "x"
    monkeypatch.setenv("RECBENCH_HOME", str(tmp_path / "env"))
    assert data_home() == tmp_path / "env"
    monkeypatch.delenv("RECBENCH_HOME")
    assert "recbench" in str(data_home())


def test_fetch_local_archive_verifies_and_caches(tiny: Tiny) -> None:
    assert not is_fetched("tiny") and "tiny" not in fetched_datasets()
    data = fetch("tiny", source=tiny.archive, progress=False)
    assert (data.n_users, data.n_items, len(data)) == (20, 30, 120)
    assert data.user_ids.tolist() == list(range(1, 21))
    assert is_fetched("tiny") and "tiny" in fetched_datasets() and "synthetic" in fetched_datasets()
    info = dataset_info("tiny")
    assert info is not None and info["source"]["kind"] == "archive"
    assert info["source"]["verified"] == "checksum from datasets.toml"
    assert info["duplicates_dropped"] == 0 and info["rows_parsed"] == 120
    again = load_dataset("tiny")
    assert again.fingerprint == data.fingerprint
    assert np.array_equal(again.timestamps, data.timestamps)
    assert again.user_ids.tolist() == data.user_ids.tolist()
    assert not list(_cache_dir().glob(".*tmp"))  # no temporary file left behind


def test_rerun_is_a_noop_and_force_rebuilds(tiny: Tiny) -> None:
    fetch("tiny", source=tiny.archive, progress=False)
    npz = _cache_dir() / "interactions.npz"
    before = npz.stat().st_mtime_ns, npz.stat().st_ino
    with pytest.warns(DatasetWarning, match="already cached; --from .* was not read"):
        fetch("tiny", source=tiny.archive, progress=False)
    fetch("tiny", progress=False)  # valid cache: no network needed
    assert (npz.stat().st_mtime_ns, npz.stat().st_ino) == before
    fetch("tiny", source=tiny.archive, force=True, progress=False)
    assert npz.stat().st_ino != before[1] or npz.stat().st_mtime_ns != before[0]


@pytest.mark.parametrize("inner", [False, True])
def test_fetch_from_folder_says_only_stats_verified(
    tiny: Tiny, inner: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tiny.folder / "tiny" if inner else tiny.folder
    data = fetch("tiny", source=str(folder), progress=True)
    assert len(data) == 120
    assert "has no archive checksum: verifying the expected statistics only" in " ".join(
        capsys.readouterr().err.split()
    )
    info = dataset_info("tiny")
    assert info is not None and info["source"]["kind"] == "directory"


def test_fetch_bare_ratings_file(tiny: Tiny) -> None:
    data = fetch("tiny", source=tiny.folder / "tiny" / "ratings.tsv", progress=False)
    assert len(data) == 120
    assert dataset_info("tiny")["source"]["verified"].startswith("no archive checksum")


def test_local_archive_checksum_mismatch_leaves_no_cache(tiny: Tiny, monkeypatch: pytest.MonkeyPatch) -> None:
    tiny.register(monkeypatch, md5="0" * 32, sha256=None)
    with pytest.raises(
        ChecksumError,
        match=r"md5 of .*tiny\.zip is [0-9a-f]{32}, datasets\.toml "
        r"says 0{32}",
    ):
        fetch("tiny", source=tiny.archive, progress=False)
    assert not is_fetched("tiny") and not (_cache_dir() / "interactions.json").exists()
    tiny.register(monkeypatch, md5=tiny.md5)
    assert len(fetch("tiny", source=tiny.archive, progress=False)) == 120


def test_size_mismatch(tiny: Tiny, monkeypatch: pytest.MonkeyPatch) -> None:
    tiny.register(monkeypatch, md5=None, sha256=tiny.sha256, size=10)
    with pytest.raises(ChecksumError, match=r"bytes, datasets\.toml says 10"):
        fetch("tiny", source=tiny.archive, progress=False)


def test_no_published_checksum_records_then_verifies(
    tiny: Tiny, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    tiny.register(monkeypatch, md5=None, sha256=None)
    fetch("tiny", source=tiny.archive, progress=True)
    err = " ".join(capsys.readouterr().err.split())
    assert f"recorded sha256 {tiny.sha256}" in err
    manifest = json.loads((data_home() / "manifest.json").read_text())["payload"]
    assert manifest["tiny"]["sha256"] == tiny.sha256
    other = tmp_path / "other.zip"
    other.write_bytes(zip_bytes({"tiny/ratings.tsv": tiny.data + b"20\t1\t1\t9\n"}))
    with pytest.raises(ChecksumError, match="but the first good download of tiny had"):
        fetch("tiny", source=other, force=True, progress=False)
    assert len(load_dataset("tiny")) == 120  # the earlier good cache is still there


def test_expected_stats_mismatch_is_an_error_unless_accepted(tiny: Tiny, monkeypatch: pytest.MonkeyPatch) -> None:
    """A copy that is not the data set (half of ml-100k passed as ml-100k) is refused with both
    numbers, and a good cache stays; --allow-mismatch accepts it with a warning, recorded."""
    from recbench.data import DatasetMismatch, dataset_info, load_split

    tiny.register(monkeypatch)
    fetch("tiny", source=tiny.folder, progress=False)
    good = load_dataset("tiny").fingerprint
    tiny.register(monkeypatch, expected={"users": 21, "items": 30, "ratings": 100})
    with pytest.raises(DatasetMismatch) as e:
        fetch("tiny", source=tiny.folder, force=True, progress=False)
    assert "expected 21 users, parsed 20" in str(e.value) and "expected 100 ratings, parsed 120" in str(e.value)
    assert load_dataset("tiny").fingerprint == good and "accepted_mismatch" not in dataset_info("tiny")
    with pytest.warns(DatasetWarning) as record:
        fetch("tiny", source=tiny.folder, force=True, progress=False, allow_mismatch=True)
    msgs = [str(w.message) for w in record]
    assert any("expected 21 users, parsed 20" in m for m in msgs)
    assert any("expected 100 ratings, parsed 120" in m for m in msgs)
    assert "expected 21 users" in dataset_info("tiny")["accepted_mismatch"]
    assert "expected 21 users" in load_split("tiny", n_negatives=5).meta["accepted_mismatch"]


def test_tolerance_silences_small_differences(tiny: Tiny, monkeypatch: pytest.MonkeyPatch) -> None:
    tiny.register(monkeypatch, expected={"ratings": 119, "tolerance": 0.01})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fetch("tiny", source=tiny.folder, progress=False)


def test_duplicates_dropped_are_recorded(tiny: Tiny, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "d"
    (folder / "tiny").mkdir(parents=True)
    u, i, _, t = tiny.rows[0]
    (folder / "tiny" / "ratings.tsv").write_bytes(tiny.data + f"{u}\t{i}\t5\t{t + 1}\n".encode())
    tiny.register(monkeypatch, expected=None)
    data = fetch("tiny", source=folder, progress=False)
    assert len(data) == 120 and dataset_info("tiny")["duplicates_dropped"] == 1
    assert dataset_info("tiny")["rows_parsed"] == 121


def test_parse_error_leaves_no_cache(tiny: Tiny, tmp_path: Path) -> None:
    folder = tmp_path / "bad"
    (folder / "tiny").mkdir(parents=True)
    (folder / "tiny" / "ratings.tsv").write_bytes(tiny.data + b"1\t2\tgood\t3\n")
    with pytest.raises(DatasetError, match="line 121: rating 'good' is not a number"):
        fetch("tiny", source=folder, progress=False)
    assert not is_fetched("tiny")


def test_missing_member_in_folder_and_missing_path(tiny: Tiny, tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"has no tiny/ratings\.tsv"):
        fetch("tiny", source=tmp_path, progress=False)  # holds src/, not tiny/ratings.tsv
    with pytest.raises(DatasetError, match="no such file or folder"):
        fetch("tiny", source=tmp_path / "nope", progress=False)


def test_not_fetched_message_names_the_command(tiny: Tiny) -> None:
    with pytest.raises(DatasetNotFetched, match=r"recbench fetch tiny --from PATH"):
        load_dataset("tiny")
    with pytest.raises(DatasetNotFetched):
        load_split("tiny")


def test_too_many_negatives_is_a_dataset_error(tiny: Tiny) -> None:
    fetch("tiny", source=tiny.archive, progress=False)
    with pytest.raises(DatasetError, match=r"tiny: 20 user.* fewer than 99 items"):
        load_split("tiny")


def test_synthetic_always_works() -> None:
    data = fetch("synthetic", progress=False)
    again = load_dataset("synthetic")
    assert data.fingerprint == again.fingerprint and data.n_users == 100
    assert is_fetched("synthetic")


def test_data_dir_argument_overrides_env(tiny: Tiny, tmp_path: Path) -> None:
    other = tmp_path / "elsewhere"
    fetch("tiny", source=tiny.archive, data_dir=other, progress=False)
    assert is_fetched("tiny", data_dir=other) and not is_fetched("tiny")
    assert len(load_split("tiny", n_negatives=10, data_dir=other).test) == 20
    assert (other / "splits" / "tiny").is_dir() and os.listdir(other / "splits" / "tiny")
