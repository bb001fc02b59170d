"""The on-disk cache: preprocessed data sets, cached splits, the download manifest.

Layout under :func:`data_home`::

    datasets/NAME/interactions.npz   arrays (np.load with allow_pickle=False; never pickle)
    datasets/NAME/interactions.json  signed metadata: stats, source, sha256 of the .npz, ...
    splits/NAME/KEY.npz, KEY.json    a leave-one-out split and its signed metadata
    downloads/FILE                   verified downloads (kept so a rebuild needs no network)
    manifest.json                    sha256 recorded on the first good download of data sets
                                     without a published checksum
    locks/                           file locks (concurrent fetches)

Every file is written to a temporary name and renamed into place (``os.replace``). Every load
re-checks the sha256 of the .npz and the content fingerprint; a modified file is never used:
a split is rebuilt with a warning, a data set is rebuilt from its local source or refused.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import platformdirs
from filelock import FileLock

from recbench.atomic import atomic_path, file_sha256, write_bytes_atomic
from recbench.data.registry import (
    DatasetError,
    DatasetNotFetched,
    get_spec,
    load_registry,
)
from recbench.data.synthetic import make_synthetic
from recbench.data.types import HeldOut, Interactions, Split, TrainData

__all__ = [
    "CacheCorrupt",
    "data_home",
    "dataset_info",
    "fetched_datasets",
    "is_fetched",
]

CACHE_FORMAT = 1


class CacheCorrupt(DatasetError):
    """A cached file failed its integrity check."""


# --------------------------------------------------------------------------- locations


def data_home(data_dir: Path | str | None = None) -> Path:
    """The cache root: ``data_dir``, else ``$RECBENCH_HOME``, else the platform user cache."""
    if data_dir is not None:
        return Path(data_dir).expanduser()
    env = os.environ.get("RECBENCH_HOME")
    if env:
        return Path(env).expanduser()
    return Path(platformdirs.user_cache_dir("recbench"))


def dataset_dir(name: str, data_dir: Path | str | None = None) -> Path:
    return data_home(data_dir) / "datasets" / name


def lock(home: Path, name: str, timeout: float = 600) -> FileLock:
    """A process lock for ``name`` under ``home/locks``."""
    d = home / "locks"
    d.mkdir(parents=True, exist_ok=True)
    return FileLock(str(d / f"{name}.lock"), timeout=timeout)


# --------------------------------------------------------------------------- atomic files


def _canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def write_signed_json(path: Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` with a sha256 of its canonical form (detects any later edit)."""
    doc = {"sha256": hashlib.sha256(_canonical(payload)).hexdigest(), "payload": payload}
    write_bytes_atomic(path, json.dumps(doc, indent=1, sort_keys=True).encode() + b"\n")


def read_signed_json(path: Path) -> dict[str, Any]:
    """The payload of a signed JSON file; :class:`CacheCorrupt` when it was modified."""
    try:
        doc = json.loads(path.read_bytes())
        payload = doc["payload"]
        ok = hashlib.sha256(_canonical(payload)).hexdigest() == doc["sha256"]
    except FileNotFoundError:
        raise
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise CacheCorrupt(f"{path.name} is unreadable ({type(exc).__name__})") from None
    if not ok or not isinstance(payload, dict):
        raise CacheCorrupt(f"{path.name} was modified (its signature does not match)")
    return payload


def _save_npz(path: Path, arrays: dict[str, np.ndarray]) -> str:
    """Write arrays atomically; return the sha256 of the written file."""
    for key, a in arrays.items():
        if a.dtype == object:  # never pickle
            raise TypeError(f"array {key!r} has dtype object")
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
        digest = file_sha256(tmp)
    return digest


def _load_npz(path: Path, sha256: str) -> dict[str, np.ndarray]:
    try:
        if file_sha256(path) != sha256:
            raise CacheCorrupt(f"{path.name} was modified (sha256 differs from the recorded one)")
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise CacheCorrupt(f"{path.name} is missing") from None
    except CacheCorrupt:
        raise
    except Exception as exc:  # zipfile/numpy errors on a damaged file
        raise CacheCorrupt(f"{path.name} is unreadable ({type(exc).__name__})") from None


# --------------------------------------------------------------------------- manifest


def manifest_path(home: Path) -> Path:
    return home / "manifest.json"


def read_manifest(home: Path) -> dict[str, Any]:
    """Recorded sha256 of first good downloads, by data set (empty when none)."""
    path = manifest_path(home)
    try:
        return read_signed_json(path)
    except FileNotFoundError:
        return {}


def record_in_manifest(home: Path, name: str, entry: dict[str, Any]) -> None:
    with lock(home, "manifest"):
        manifest = read_manifest(home)
        manifest[name] = entry
        write_signed_json(manifest_path(home), manifest)


# --------------------------------------------------------------------------- data sets


def save_interactions(data: Interactions, home: Path, meta: dict[str, Any]) -> dict[str, Any]:
    """Write ``data`` and its metadata into the cache (atomically); return the metadata."""
    d = home / "datasets" / data.name
    arrays = {"users": data.users, "items": data.items, "ratings": data.ratings}
    if data.timestamps is not None:
        arrays["timestamps"] = data.timestamps
    if data.user_ids is not None:
        arrays["user_ids"] = np.asarray(data.user_ids)
    if data.item_ids is not None:
        arrays["item_ids"] = np.asarray(data.item_ids)
    digest = _save_npz(d / "interactions.npz", arrays)
    meta = {
        **meta,
        "cache_format": CACHE_FORMAT,
        "name": data.name,
        "npz_sha256": digest,
        "fingerprint": data.fingerprint,
        "n_users": data.n_users,
        "n_items": data.n_items,
        "n_ratings": len(data),
        "density": data.density,
        "rating_values": list(data.rating_values),
        "has_timestamps": data.timestamps is not None,
    }
    write_signed_json(d / "interactions.json", meta)
    write_signed_json(d / "source.json", {"local": (meta.get("source") or {}).get("local")})
    return meta


def _load_interactions(name: str, home: Path) -> Interactions:
    d = home / "datasets" / name
    meta = read_signed_json(d / "interactions.json")
    if meta.get("cache_format") != CACHE_FORMAT or meta.get("name") != name:
        raise CacheCorrupt("cache metadata is of another format or data set")
    z = _load_npz(d / "interactions.npz", meta["npz_sha256"])
    data = Interactions(
        name=name,
        users=z["users"],
        items=z["items"],
        ratings=z["ratings"],
        timestamps=z.get("timestamps"),
        n_users=int(meta["n_users"]),
        n_items=int(meta["n_items"]),
        rating_values=tuple(float(v) for v in meta["rating_values"]),
        user_ids=z.get("user_ids"),
        item_ids=z.get("item_ids"),
    )
    if data.fingerprint != meta["fingerprint"]:
        raise CacheCorrupt("content fingerprint differs from the recorded one")
    if len(data) and (data.users.max() >= data.n_users or data.items.max() >= data.n_items):
        raise CacheCorrupt("ids out of range")
    return data


def dataset_info(name: str, data_dir: Path | str | None = None) -> dict[str, Any] | None:
    """The verified cache metadata of a fetched data set (stats, source, duplicates dropped),
    or None when it is not fetched or its cache fails the integrity check."""
    d = dataset_dir(name, data_dir)
    try:
        meta = read_signed_json(d / "interactions.json")
        if file_sha256(d / "interactions.npz") != meta.get("npz_sha256"):
            return None
    except (FileNotFoundError, CacheCorrupt):
        return None
    return meta


def _synthetic(name: str) -> Interactions:
    params = get_spec(name).params_dict
    return make_synthetic(**params, name=name)


def is_fetched(name: str, data_dir: Path | str | None = None) -> bool:
    """Whether :func:`load_dataset` can serve ``name`` without a download (generated data sets
    always can)."""
    spec = get_spec(name)
    return spec.is_generated or dataset_info(name, data_dir) is not None


def fetched_datasets(data_dir: Path | str | None = None) -> list[str]:
    """Registry names that :func:`load_dataset` can serve now (incl. ``synthetic``)."""
    return [n for n, s in load_registry().items() if s.is_generated or is_fetched(n, data_dir)]


def _not_fetched(name: str) -> DatasetNotFetched:
    return DatasetNotFetched(
        f"dataset {name!r} is not fetched; run `recbench fetch {name}` "
        f"(or `recbench fetch {name} --from PATH` with a local copy)"
    )


def _rebuild_source(name: str, home: Path) -> str | None:
    """A local source a corrupted cache can be rebuilt from, if any (verified again by fetch):
    the local path recorded in ``source.json`` (a file of its own, so that damage to the
    metadata does not lose it), else the kept download."""
    with contextlib.suppress(CacheCorrupt, OSError, KeyError, TypeError):
        loc = read_signed_json(home / "datasets" / name / "source.json")["local"]
        if loc and Path(loc).exists():
            return str(loc)
    spec = get_spec(name)
    dl = home / "downloads" / spec.filename
    return str(dl) if dl.is_file() else None


def split_key(data_fingerprint: str, seed: int, validation: bool, n_negatives: int) -> str:
    return f"{data_fingerprint[:16]}-seed{seed}-neg{n_negatives}-{'val' if validation else 'noval'}"


def _split_arrays(split: Split) -> dict[str, np.ndarray]:
    arrays = {
        "train_users": split.train.users,
        "train_items": split.train.items,
        "train_ratings": split.train.ratings,
        "test_users": split.test.users,
        "test_items": split.test.items,
        "test_candidates": split.test.candidates,
    }
    if split.validation is not None:
        arrays |= {
            "valid_users": split.validation.users,
            "valid_items": split.validation.items,
            "valid_candidates": split.validation.candidates,
        }
    return arrays


def save_split(split: Split, path: Path, data_fingerprint: str) -> None:
    digest = _save_npz(path.with_suffix(".npz"), _split_arrays(split))
    write_signed_json(
        path.with_suffix(".json"),
        {
            "cache_format": CACHE_FORMAT,
            "dataset": split.dataset,
            "seed": split.seed,
            "n_negatives": split.n_negatives,
            "validation": split.validation is not None,
            "n_not_evaluated": split.n_not_evaluated,
            "n_users": split.n_users,
            "n_items": split.n_items,
            "rating_values": list(split.train.rating_values),
            "meta": split.meta,
            "fingerprint": split.fingerprint,
            "npz_sha256": digest,
            "data_fingerprint": data_fingerprint,
        },
    )


def _load_split_file(path: Path, expect: dict[str, Any]) -> Split:
    meta = read_signed_json(path.with_suffix(".json"))
    for key, value in expect.items():
        if meta.get(key) != value:
            raise CacheCorrupt(f"{key} is {meta.get(key)!r}, expected {value!r}")
    z = _load_npz(path.with_suffix(".npz"), meta["npz_sha256"])
    rv = tuple(float(v) for v in meta["rating_values"])
    train = TrainData(
        users=z["train_users"],
        items=z["train_items"],
        ratings=z["train_ratings"],
        n_users=int(meta["n_users"]),
        n_items=int(meta["n_items"]),
        rating_values=rv,
    )
    test = HeldOut(users=z["test_users"], items=z["test_items"], candidates=z["test_candidates"])
    valid = (
        HeldOut(users=z["valid_users"], items=z["valid_items"], candidates=z["valid_candidates"])
        if meta["validation"]
        else None
    )
    split = Split(
        dataset=meta["dataset"],
        train=train,
        test=test,
        validation=valid,
        seed=int(meta["seed"]),
        n_negatives=int(meta["n_negatives"]),
        n_not_evaluated=int(meta["n_not_evaluated"]),
        meta=dict(meta["meta"]),
    )
    if split.fingerprint != meta["fingerprint"]:
        raise CacheCorrupt("split fingerprint differs from the recorded one")
    return split
