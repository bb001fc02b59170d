"""``fetch``: from a public archive (or a local copy) to the preprocessed cache.

Steps: obtain the file (download with a progress bar to a temporary name, or a local archive,
file or folder given by ``--from``), verify it (size, md5/sha256 from the registry; for data
sets with no published checksum, the sha256 recorded on the first good download), read the
ratings member out of the archive safely (no absolute or ``..`` members, no zip bombs, no
missing member; nothing is extracted to disk), parse, check the expected statistics, drop
duplicates, write the cache atomically. Nothing a failed run leaves behind is trusted later.
"""

from __future__ import annotations

import contextlib
import os
import re
import uuid
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

from recbench.data.cache import (
    CacheCorrupt,
    _load_interactions,
    data_home,
    lock,
    record_in_manifest,
    save_interactions,
)
from recbench.data.download import (
    Digests,
    Notes,
    download,
    find_in_dir,
    hash_file,
    package_version,
    read_zip_member,
    verify,
)
from recbench.data.parse import parse_bytes
from recbench.data.preprocess import preprocess
from recbench.data.registry import (
    ChecksumError,
    DatasetError,
    DatasetMismatch,
    DatasetSpec,
    DatasetWarning,
    get_spec,
)
from recbench.data.synthetic import make_synthetic
from recbench.data.types import Interactions

__all__ = ["fetch"]

_URL_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


# --------------------------------------------------------------------------- fetch


def _synthetic(spec: DatasetSpec) -> Interactions:
    return make_synthetic(**spec.params_dict, name=spec.name)


def _cached(name: str, home: Path) -> Interactions | None:
    if not (home / "datasets" / name / "interactions.json").exists():
        return None
    try:
        return _load_interactions(name, home)
    except (CacheCorrupt, FileNotFoundError) as exc:
        warnings.warn(DatasetWarning(f"the cached {name} is corrupted ({exc}); rebuilding it"), stacklevel=3)
        return None


@dataclass
class _Artifact:
    """Where the ratings bytes came from."""

    kind: str  # "download" | "archive" | "file" | "directory"
    location: str
    local: str | None  # a local path a rebuild can reuse
    member_bytes: bytes
    verified: str
    digests: Digests | None = None
    record: bool = False
    part: Path | None = None  # a verified download under its temporary name


def _from_file(spec: DatasetSpec, path: Path, home: Path, kind: str, location: str) -> _Artifact:
    """A local or downloaded file: the archive itself, or (``archive="file"``) the data file."""
    assert spec.member is not None
    what = f"{location}" if kind != "download" else f"the download of {spec.name} ({location})"
    if (
        spec.archive == "zip"
        and kind != "download"
        and not zipfile.is_zipfile(path)
        and (path.name == PurePosixPath(spec.member).name)
    ):
        # the ratings file itself, given directly: nothing to verify but the statistics
        return _Artifact(
            "file",
            location,
            str(path),
            path.read_bytes(),
            "no archive checksum for a bare ratings file: expected statistics only",
        )
    digests = hash_file(path)
    verified, record = verify(spec, digests, what, home)
    data = read_zip_member(spec, path, what) if spec.archive == "zip" else path.read_bytes()
    return _Artifact(kind, location, str(path), data, verified, digests, record)


def _obtain(
    spec: DatasetSpec, source: str | Path | None, home: Path, force: bool, out: Notes, cleanup: list[Callable[[], None]]
) -> _Artifact:
    name = spec.name
    if source is not None and not (isinstance(source, str) and _URL_RE.match(source)):
        path = Path(source).expanduser()
        if path.is_dir():
            f = find_in_dir(spec, path)
            out.note(
                f"{name}: {path} is a folder, which has no archive checksum: verifying the expected statistics only"
            )
            return _Artifact(
                "directory",
                str(path.resolve()),
                str(path.resolve()),
                f.read_bytes(),
                "folder: expected statistics only",
            )
        if path.is_file():
            kind = "archive" if spec.archive == "zip" else "file"
            return _from_file(spec, path, home, kind, str(path.resolve()))
        raise DatasetError(f"--from {source}: no such file or folder")

    downloads = home / "downloads"
    kept = downloads / spec.filename
    if source is None and not force and kept.is_file():
        try:
            art = _from_file(spec, kept, home, "download", str(kept))
            if not art.record:  # only a verified earlier download is reused
                return art
        except DatasetError:
            pass
        with contextlib.suppress(FileNotFoundError):
            kept.unlink()  # unverifiable or bad: download again

    urls = [str(source)] if source is not None else list(spec.urls)
    if not urls:
        raise DatasetError(f"{name} has no download URL; use `recbench fetch {name} --from PATH`")
    downloads.mkdir(parents=True, exist_ok=True)
    errors: list[DatasetError] = []
    for url in urls:
        part = downloads / f".{spec.filename}.{os.getpid()}.{uuid.uuid4().hex[:8]}.part"
        cleanup.append(lambda p=part: p.unlink(missing_ok=True))
        try:
            download(url, part, spec, out)
            art = _from_file(spec, part, home, "download", url)
        except DatasetError as exc:
            part.unlink(missing_ok=True)
            errors.append(exc)
            continue
        art.local, art.location, art.part = None, url, part
        return art
    checksum = [e for e in errors if isinstance(e, ChecksumError)]
    raise (checksum or errors)[-1]


def fetch(
    name: str,
    source: str | Path | None = None,
    force: bool = False,
    data_dir: Path | str | None = None,
    progress: bool = True,
    allow_mismatch: bool = False,
) -> Interactions:
    """Fetch ``name`` into the cache and return it (a no-op returning the cache when valid).

    ``source``: None (the registry URLs, mirrors in order), another URL, a local archive or
    data file, or a local folder laid out like the archive's contents. ``force`` rebuilds (and
    re-downloads). ``progress`` shows a rich progress bar and notes on stderr. Parsed statistics
    that differ from the registry's expected ones are an error (:class:`DatasetMismatch`, the
    cache left as it was) unless ``allow_mismatch`` (a deliberately filtered copy: accepted with a
    warning and recorded in the cache's metadata and in every split and record made from it).
    """
    spec = get_spec(name)
    if spec.is_generated:
        return _synthetic(spec)
    home = data_home(data_dir)
    out = Notes(progress)
    home.mkdir(parents=True, exist_ok=True)
    with lock(home, name):
        if not force:
            cached = _cached(name, home)
            if cached is not None:
                if source is not None:
                    warnings.warn(
                        DatasetWarning(
                            f"{name} is already cached; --from {source} was not read (--force replaces the cache)"
                        ),
                        stacklevel=2,
                    )
                return cached
        cleanup: list[Callable[[], None]] = []
        try:
            return _build(spec, source, home, force, out, cleanup, allow_mismatch)
        finally:
            for fn in cleanup:
                with contextlib.suppress(OSError):
                    fn()


def _build(
    spec: DatasetSpec,
    source: str | Path | None,
    home: Path,
    force: bool,
    out: Notes,
    cleanup: list[Callable[[], None]],
    allow_mismatch: bool = False,
) -> Interactions:
    assert spec.format is not None and spec.member is not None
    name = spec.name
    art = _obtain(spec, source, home, force, out, cleanup)
    label = (
        f"{art.location}:{spec.member}"
        if art.kind in ("download", "archive")
        else (art.location if art.kind == "file" else str(Path(art.location) / spec.member))
    )
    parsed = parse_bytes(art.member_bytes, spec.format, spec.rating_values, file=label)
    art.member_bytes = b""
    found = spec.expected.mismatches(parsed.n_users, parsed.n_items, len(parsed)) if spec.expected else []
    mismatch = "; ".join(f"expected {exp:,} {what}, parsed {got:,}" for what, exp, got in found)
    if mismatch and not allow_mismatch:
        raise DatasetMismatch(
            f"{name}: {mismatch} from {label}; nothing was cached (a good cache is kept); "
            f"--allow-mismatch accepts a deliberately filtered copy"
        )
    if mismatch:
        warnings.warn(DatasetWarning(f"{name}: {mismatch} from {label} (accepted: --allow-mismatch)"), stacklevel=3)
    data, report = preprocess(parsed, name, spec.rating_values)
    if report.duplicates_dropped:
        out.note(
            f"{name}: dropped {report.duplicates_dropped:,} duplicate user-item rows (kept the latest of each pair)"
        )

    if art.part is not None:  # a verified download: keep it under its final name
        final = home / "downloads" / spec.filename
        os.replace(art.part, final)
        art.local = str(final)
    if art.record and art.digests is not None:
        record_in_manifest(
            home,
            name,
            {
                "sha256": art.digests.sha256,
                "md5": art.digests.md5,
                "size": art.digests.size,
                "source": art.location,
                "recorded": datetime.now(UTC).isoformat(timespec="seconds"),
            },
        )
        out.note(
            f"{name}: no published checksum; recorded sha256 {art.digests.sha256} of the "
            f'first good download (pin it in datasets.toml as sha256 = "...")'
        )
    meta = {
        "source": {
            "kind": art.kind,
            "location": art.location,
            "local": art.local,
            "member": spec.member,
            "verified": art.verified,
            "sha256": art.digests.sha256 if art.digests else None,
        },
        "rows_parsed": report.rows,
        "duplicates_dropped": report.duplicates_dropped,
        **({"accepted_mismatch": mismatch} if mismatch else {}),
        "fetched": datetime.now(UTC).isoformat(timespec="seconds"),
        "recbench_version": package_version(),
        "notes": out.notes,
    }
    save_interactions(data, home, meta)
    return data
