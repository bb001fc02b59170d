"""Result records: one JSON file per (dataset, model, config, seed), with the per-user ranks in a
side ``.npz`` file, written atomically so a crash never leaves a half record that is trusted.

Layout: ``OUT/records/<dataset>/<model>/seed<seed>-<key>.json`` and
``...-<key>.<sha256 prefix>.ranks.npz``. The ranks file is written first, under a name derived
from its content, and its sha256 is stored in the JSON, which is written last (temp name, fsync,
``os.replace``): a JSON that parses and whose ranks file matches its hash is a finished record;
anything else is reported and skipped. Because a ranks file is never overwritten with other
content, two writers of one cell (or a crash during a ``--force`` rewrite) can never leave a JSON
pointing at another write's ranks. The runner also holds a per-cell file lock (:func:`cell_lock`)
so that concurrent ``recbench run`` processes do each cell once.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from filelock import FileLock, Timeout

from recbench.atomic import write_bytes_atomic

SCHEMA = 1


class RecordWarning(UserWarning):
    """A record on disk is truncated, invalid or inconsistent and was skipped."""


def canonical_json(obj: Any) -> str:
    """``obj`` as compact JSON with sorted keys (what record keys hash)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def record_key(identity: dict[str, Any]) -> str:
    """Stable key of a cell: a hash of everything that determines its result."""
    return hashlib.sha256(canonical_json(identity).encode()).hexdigest()[:16]


@dataclass
class Record:
    """One finished cell. ``ranks`` maps ``"<role>/<protocol>"`` (e.g. ``"test/sampled"``) to
    per-user 0-based ranks aligned with ``users``."""

    data: dict[str, Any]
    users: np.ndarray | None = None
    ranks: dict[str, np.ndarray] = field(default_factory=dict)
    path: Path | None = None

    @property
    def key(self) -> str:
        """The cell's key (hash of its identity)."""
        return self.data["key"]

    @property
    def status(self) -> str:
        """``"ok"`` or ``"failed"``."""
        return self.data["status"]

    def __getitem__(self, k: str) -> Any:
        """A field of the record's JSON."""
        return self.data[k]


def record_paths(out: Path, dataset: str, model: str, seed: int, key: str) -> tuple[Path, Path]:
    """(JSON path, ranks-file stem path) of a cell under ``out``."""
    stem = out / "records" / dataset / model / f"seed{seed}-{key}"
    return stem.with_suffix(".json"), stem.with_name(stem.name + ".ranks.npz")


def write_record(out: Path, rec: Record) -> Path:
    """Write ranks then JSON, each atomically; returns the JSON path."""
    d = rec.data
    jpath, _ = record_paths(out, d["dataset"], d["model"], d["seed"], d["key"])
    if rec.ranks:
        buf = io.BytesIO()
        np.savez_compressed(
            buf,
            users=np.asarray(rec.users, dtype=np.int32),
            **{k.replace("/", "__"): v.astype(np.int32) for k, v in rec.ranks.items()},
        )
        blob = buf.getvalue()
        digest = hashlib.sha256(blob).hexdigest()
        # named by content: never overwritten with other bytes, so a JSON always finds its own
        rpath = jpath.with_name(f"{jpath.stem}.{digest[:16]}.ranks.npz")
        write_bytes_atomic(rpath, blob)
        d["ranks_file"] = rpath.name
        d["ranks_sha256"] = digest
    else:
        d["ranks_file"] = None
        d["ranks_sha256"] = None
    d["schema"] = SCHEMA
    write_bytes_atomic(jpath, (json.dumps(d, indent=1, sort_keys=True, default=str) + "\n").encode())
    rec.path = jpath
    return jpath


_REQUIRED = ("schema", "key", "status", "dataset", "model", "seed", "config", "metrics")
_TYPES: dict[str, type | tuple[type, ...]] = {
    "schema": int,
    "key": str,
    "status": str,
    "dataset": str,
    "model": str,
    "seed": int,
    "config": dict,
    "metrics": dict,
}


def _type_problems(data: dict[str, Any]) -> list[str]:
    """Fields of the wrong type (a record that parses but would crash a reader)."""
    bad = [k for k, t in _TYPES.items() if not isinstance(data[k], t) or (t is int and isinstance(data[k], bool))]
    if data["status"] not in ("ok", "failed"):
        bad.append("status")
    protos = data.get("protocols", [])
    if not isinstance(protos, list) or not all(isinstance(p, str) for p in protos):
        bad.append("protocols")
    if isinstance(data["metrics"], dict) and not all(
        isinstance(m, dict) and all(isinstance(v, int | float) and not isinstance(v, bool) for v in m.values())
        for m in data["metrics"].values()
    ):
        bad.append("metrics")
    rf = data.get("ranks_file")
    if rf is not None and (not isinstance(rf, str) or "/" in rf or "\\" in rf or rf.startswith(".")):
        bad.append("ranks_file")
    return bad


def read_record(path: Path, with_ranks: bool = True) -> Record:
    """Read and validate one record; raises ``ValueError`` naming what is wrong."""
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: not a valid JSON record ({e})") from None
    if not isinstance(data, dict) or any(k not in data for k in _REQUIRED):
        raise ValueError(
            f"{path}: missing fields {[k for k in _REQUIRED if k not in data] if isinstance(data, dict) else 'all'}"
        )
    bad = _type_problems(data)
    if bad:
        raise ValueError(f"{path}: invalid fields {bad}")
    if data["schema"] != SCHEMA:
        raise ValueError(f"{path}: schema {data['schema']} (this recbench reads {SCHEMA})")
    rec = Record(data=data, path=path)
    if with_ranks and data.get("ranks_file"):
        rpath = path.with_name(data["ranks_file"])
        try:
            blob = rpath.read_bytes()
        except OSError:
            raise ValueError(f"{path}: ranks file {rpath.name} is missing") from None
        if hashlib.sha256(blob).hexdigest() != data.get("ranks_sha256"):
            raise ValueError(f"{path}: ranks file {rpath.name} does not match its hash")
        try:
            with np.load(io.BytesIO(blob), allow_pickle=False) as z:
                rec.users = z["users"]
                rec.ranks = {k.replace("__", "/"): z[k] for k in z.files if k != "users"}
        except Exception as e:  # not an npz, object arrays (pickles are never loaded), ...
            raise ValueError(f"{path}: ranks file {rpath.name} is unreadable ({type(e).__name__}: {e})") from None
        arrays = [rec.users, *rec.ranks.values()]
        if any(a.ndim != 1 or a.dtype.kind not in "iu" or len(a) != len(rec.users) for a in arrays):
            raise ValueError(f"{path}: ranks file {rpath.name} holds arrays of the wrong shape or type")
    return rec


def iter_records(out: Path, with_ranks: bool = True, warn: bool = True) -> Iterator[Record]:
    """Every valid record under ``out``; invalid ones are skipped with a :class:`RecordWarning`."""
    root = out / "records"
    if not root.exists():
        return
    for path in sorted(root.rglob("*.json")):
        try:
            yield read_record(path, with_ranks=with_ranks)
        except ValueError as e:
            if warn:
                warnings.warn(f"skipped: {e}", RecordWarning, stacklevel=2)


def find_record(out: Path, dataset: str, model: str, seed: int, key: str) -> Record | None:
    """The finished record for this key, or None (a corrupt one counts as missing)."""
    jpath, _ = record_paths(out, dataset, model, seed, key)
    if not jpath.exists():
        return None
    try:
        rec = read_record(jpath, with_ranks=True)
    except ValueError as e:
        warnings.warn(f"will redo: {e}", RecordWarning, stacklevel=2)
        return None
    ident = (rec["key"], rec["dataset"], rec["model"], rec["seed"])
    if ident != (key, dataset, model, seed):
        warnings.warn(f"will redo: {jpath} holds another cell {ident}", RecordWarning, stacklevel=2)
        return None
    return rec


@contextlib.contextmanager
def cell_lock(
    out: Path, dataset: str, model: str, seed: int, key: str, on_wait: Callable[[], object] | None = None
) -> Iterator[None]:
    """Hold the cell's file lock (an OS lock: a killed holder releases it). ``on_wait()`` is called
    once if another process holds it, before blocking until it is free. Lock files live under
    ``OUT/.locks/`` (which git ignores by itself), never beside the records."""
    locks = out / ".locks"
    path = locks / dataset / model / f"seed{seed}-{key}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    if not (locks / ".gitignore").exists():
        write_bytes_atomic(locks / ".gitignore", b"*\n")
    lock = FileLock(str(path))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        if on_wait is not None:
            on_wait()
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


def remove_stale_files(jpath: Path) -> list[Path]:
    """Under the cell lock: delete this cell's ranks files the JSON does not reference (left by a
    ``--force`` rewrite) and temp files of killed writers. Returns what was removed."""
    current = None
    with contextlib.suppress(OSError, ValueError, TypeError, AttributeError):
        current = json.loads(jpath.read_text()).get("ranks_file")
    stem = jpath.stem
    stale = [p for p in jpath.parent.glob(f"{stem}.*ranks.npz") if p.name != current]
    stale += list(jpath.parent.glob(f".{stem}.*.tmp"))
    for p in stale:
        p.unlink(missing_ok=True)
    return stale
