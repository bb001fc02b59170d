"""Builders of the data-layer tests: a tiny data set made by the tests, as a folder, a zip and a
registry entry (added through ``RECBENCH_DATASETS``). Never the real data sets."""

from __future__ import annotations

import hashlib
import io
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest


def tiny_rows(
    n_users: int = 20, n_items: int = 30, per_user: int = 6, seed: int = 0
) -> list[tuple[int, int, int, int]]:
    """(user, item, rating, timestamp) rows with 1-based ids, distinct pairs, distinct times."""
    rng = np.random.default_rng(seed)
    rows = []
    t = 1_000_000
    for u in range(1, n_users + 1):
        for i in ((u * per_user + j) % n_items + 1 for j in range(per_user)):  # covers all
            t += int(rng.integers(1, 50))
            rows.append((u, int(i), int(rng.integers(1, 6)), t))
    order = rng.permutation(len(rows))
    return [rows[k] for k in order]


def tsv(rows: list[tuple[Any, ...]], sep: str = "\t") -> bytes:
    return "".join(sep.join(str(x) for x in r) + "\n" for r in rows).encode()


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"').replace("\t", "\\t") + '"'
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(v)


def toml_dumps(tables: dict[str, dict[str, Any]]) -> str:
    """A minimal TOML writer for registry tables (one level of sub-tables)."""
    out = []
    for name, table in tables.items():
        out.append(f'["{name}"]')
        subs = {k: v for k, v in table.items() if isinstance(v, dict)}
        out += [f"{k} = {_toml_value(v)}" for k, v in table.items() if not isinstance(v, dict)]
        for sub, body in subs.items():
            out.append(f'["{name}".{sub}]')
            out += [f"{k} = {_toml_value(v)}" for k, v in body.items()]
    return "\n".join(out) + "\n"


def tiny_entry(**overrides: Any) -> dict[str, Any]:
    """A registry table for the tiny data set (zip member ``tiny/ratings.tsv``)."""
    entry: dict[str, Any] = {
        "title": "tiny test data",
        "urls": ["http://127.0.0.1:9/tiny.zip"],
        "archive": "zip",
        "member": "tiny/ratings.tsv",
        "rating_values": [1, 2, 3, 4, 5],
        "timestamps": True,
        "license": "test",
        "format": {
            "parser": "delimited",
            "separator": "\t",
            "columns": ["user", "item", "rating", "timestamp"],
            "header": False,
        },
        "expected": {"users": 20, "items": 30, "ratings": 120},
    }
    for k, v in overrides.items():
        if v is None:
            entry.pop(k, None)
        else:
            entry[k] = v
    return entry


@dataclass
class Tiny:
    rows: list[tuple[int, int, int, int]]
    data: bytes  # the ratings file
    folder: Path  # laid out like the archive: folder/tiny/ratings.tsv
    archive: Path
    registry: Path
    md5: str
    sha256: str

    def register(self, monkeypatch: pytest.MonkeyPatch, **overrides: Any) -> None:
        entry = tiny_entry(**overrides)
        self.registry.write_text(toml_dumps({"tiny": entry}))
        monkeypatch.setenv("RECBENCH_DATASETS", str(self.registry))


def build_tiny(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **overrides: Any) -> Tiny:
    """The tiny data set as a folder and a zip under ``tmp_path``, registered (through
    ``RECBENCH_DATASETS``) with the zip's checksums and ``overrides``."""
    rows = tiny_rows()
    data = tsv(rows)
    folder = tmp_path / "src"
    (folder / "tiny").mkdir(parents=True)
    (folder / "tiny" / "ratings.tsv").write_bytes(data)
    archive = tmp_path / "tiny.zip"
    archive.write_bytes(zip_bytes({"tiny/ratings.tsv": data, "tiny/README": b"tiny\n"}))
    blob = archive.read_bytes()
    t = Tiny(
        rows,
        data,
        folder,
        archive,
        tmp_path / "extra.toml",
        hashlib.md5(blob).hexdigest(),
        hashlib.sha256(blob).hexdigest(),
    )
    t.register(monkeypatch, **{"md5": t.md5, "sha256": t.sha256, **overrides})
    return t
