"""The registry: the built-in datasets.toml and validation of bad entries."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from recbench.data import RegistryError, UnknownDataset, get_spec, load_registry
from recbench.data.registry import registry_path

from .builders import tiny_entry, toml_dumps

ROOT = Path(__file__).resolve().parents[2]


def test_builtin_registry_matches_the_issue() -> None:
    reg = load_registry()
    assert set(reg) >= {"ml-100k", "ml-1m", "yelp", "filmtrust", "synthetic"}
    ml = reg["ml-100k"]
    assert ml.md5 == "0e33842e24a9c977be4e0107933c0723"
    assert ml.sha256 == "50d2a982c66986937beb9ffb3aa76efe955bf3d5c6b761f4e3a7cd717c6a3229"
    assert ml.size == 4_924_029 and ml.member == "ml-100k/u.data" and ml.archive == "zip"
    assert ml.format is not None and ml.format.separator == "\t" and ml.timestamps
    assert ml.expected is not None and (ml.expected.users, ml.expected.items, ml.expected.ratings) == (
        943,
        1682,
        100_000,
    )
    assert reg["ml-1m"].format.separator == "::"
    assert reg["ml-1m"].md5 == "c4d9eecfca2ab87c1945afe126590906"
    ft = reg["filmtrust"]
    assert ft.rating_values == (0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0)
    assert not ft.timestamps and ft.md5 is None and ft.sha256 is None
    assert reg["yelp"].archive == "file" and reg["yelp"].sha256 is None
    assert reg["synthetic"].is_generated and reg["synthetic"].params_dict["n_users"] == 100
    for spec in reg.values():
        assert spec.license, spec.name


def test_package_copy_is_the_repository_file() -> None:
    shipped = ROOT / "recbench" / "data" / "datasets.toml"
    assert shipped.read_bytes() == (ROOT / "datasets.toml").read_bytes()
    assert registry_path().read_bytes() == shipped.read_bytes()


def test_extra_registry_file_adds_a_dataset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    extra = tmp_path / "extra.toml"
    extra.write_text(toml_dumps({"tiny": tiny_entry()}))
    monkeypatch.setenv("RECBENCH_DATASETS", str(extra))
    reg = load_registry()
    assert "tiny" in reg and "ml-100k" in reg
    assert reg["tiny"].format.columns == ("user", "item", "rating", "timestamp")
    assert load_registry(extra).keys() == {"tiny"}


def test_unknown_dataset_lists_valid_names() -> None:
    with pytest.raises(UnknownDataset, match="valid names: ml-100k, ml-1m"):
        get_spec("ml-10m")


def test_rating_scale_table(tmp_path: Path) -> None:
    f = tmp_path / "r.toml"
    f.write_text(toml_dumps({"x": tiny_entry(rating_values=None, rating_scale={"min": 1, "max": 3, "step": 0.5})}))
    assert load_registry(f)["x"].rating_values == (1.0, 1.5, 2.0, 2.5, 3.0)


BAD: list[tuple[dict[str, Any], str]] = [
    ({"archive": "rar"}, r"archive: 'rar' is not one of: zip, file"),
    (
        {"format": {"separator": "\t", "columns": ["usr", "item"]}},
        r"format.columns: 'usr' is not one of: user, item, rating, timestamp, skip",
    ),
    (
        {"format": {"separator": "\t", "columns": ["user", "item", "rating", "timestamp"], "parser": "xml"}},
        r"format.parser: 'xml' is not one of: delimited",
    ),
    ({"colour": "red"}, r"colour: unknown field; valid fields: archive, citation"),
    ({"member": None}, r"member: missing \(required\)"),
    ({"md5": "abc"}, r"md5: expected 32 hexadecimal digits"),
    ({"timestamps": False}, r"timestamps: is false but format.columns has 'timestamp'"),
    ({"timestamps": "yes"}, r"timestamps: expected true or false"),
    ({"rating_values": []}, r"rating_values: expected a non-empty list of numbers"),
    ({"rating_values": None}, r"rating_values: missing"),
    ({"member": "../etc/passwd"}, r"member: must be a relative path"),
    ({"expected": {"users": -1}}, r"expected.users: must be >= 0"),
    (
        {"format": {"separator": "\t", "columns": ["user", "item"], "encoding": "klingon"}},
        r"format.encoding: unknown codec",
    ),
    ({"generator": "gan"}, r"generator: 'gan' is not one of: synthetic"),
]


@pytest.mark.parametrize(("override", "message"), BAD)
def test_bad_entry_names_field_and_choices(tmp_path: Path, override: dict[str, Any], message: str) -> None:
    f = tmp_path / "bad.toml"
    f.write_text(toml_dumps({"bad": tiny_entry(**override)}))
    with pytest.raises(RegistryError, match=message) as info:
        load_registry(f)
    assert "[bad]" in str(info.value) and "\n" not in str(info.value)


def test_invalid_toml_is_one_line(tmp_path: Path) -> None:
    f = tmp_path / "broken.toml"
    f.write_text("[x\nurl = ")
    with pytest.raises(RegistryError, match="invalid TOML") as info:
        load_registry(f)
    assert "\n" not in str(info.value)


def test_bad_entry_via_environment_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = tmp_path / "bad.toml"
    f.write_text(toml_dumps({"bad": tiny_entry(archive="tar")}))
    monkeypatch.setenv("RECBENCH_DATASETS", str(f))
    with pytest.raises(RegistryError, match="zip, file"):
        load_registry()
