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
import hashlib
import http.client
import os
import re
import urllib.error
import urllib.parse
import urllib.request
import uuid
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

from recbench.data.cache import (
    CacheCorrupt,
    _load_interactions,
    data_home,
    lock,
    read_manifest,
    record_in_manifest,
    save_interactions,
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

CHUNK = 1 << 16
TIMEOUT_S = 30.0
ZIP_RATIO_LIMIT = 200  # a member this many times larger than its compressed size ...
ZIP_RATIO_MIN_BYTES = 8 << 20  # ... and at least this large is refused as a zip bomb
_URL_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("recbench")
    except Exception:  # pragma: no cover
        return "0"


# --------------------------------------------------------------------------- output


class _Out:
    """Notes to stderr (when ``progress``), kept for the cache metadata."""

    def __init__(self, progress: bool) -> None:
        self.progress = progress
        self.notes: list[str] = []
        self._console: Any = None

    @property
    def console(self) -> Any:
        if self._console is None:
            from rich.console import Console

            self._console = Console(stderr=True, highlight=False)
        return self._console

    def note(self, msg: str) -> None:
        self.notes.append(msg)
        if self.progress:
            self.console.print(msg, markup=False)


# --------------------------------------------------------------------------- download


def _offline_hint(name: str) -> str:
    return (
        f"if offline, fetch from a local copy: `recbench fetch {name} --from PATH` "
        f"(the archive, or a folder of its contents)"
    )


def _looks_like_html(head: bytes) -> bool:
    h = head.lstrip()[:64].lower()
    return h.startswith((b"<!doctype html", b"<html", b"<head", b"<body"))


@dataclass
class _Digests:
    size: int
    md5: str
    sha256: str


def _hash_file(path: Path) -> _Digests:
    md5, sha, n = hashlib.md5(usedforsecurity=False), hashlib.sha256(), 0
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            md5.update(block)
            sha.update(block)
            n += len(block)
    return _Digests(n, md5.hexdigest(), sha.hexdigest())


def _download(url: str, dest: Path, spec: DatasetSpec, out: _Out) -> _Digests:
    """Stream ``url`` into ``dest`` (a temporary name), hashing as it goes."""
    name = spec.name
    host = urllib.parse.urlsplit(url).netloc or url
    req = urllib.request.Request(url, headers={"User-Agent": f"recbench/{_version()}"})
    try:
        resp = urllib.request.urlopen(req, timeout=TIMEOUT_S)
    except urllib.error.HTTPError as exc:
        raise DatasetError(
            f"download of {name} from {url} failed: HTTP {exc.code} {exc.reason}; {_offline_hint(name)}"
        ) from None
    except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DatasetError(f"cannot download {name}: {host} unreachable ({reason}); {_offline_hint(name)}") from None
    md5, sha, n = hashlib.md5(usedforsecurity=False), hashlib.sha256(), 0
    with resp:
        length_header = resp.headers.get("Content-Length")
        total = int(length_header) if length_header and length_header.isdigit() else None
        ctype = resp.headers.get_content_type() if resp.headers else ""
        progress_cm: Any = contextlib.nullcontext(None)
        if out.progress:
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
                TransferSpeedColumn,
            )

            progress_cm = Progress(
                TextColumn(f"{name}"),
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
                console=out.console,
                transient=True,
            )
        try:
            with progress_cm as bar, open(dest, "wb") as fh:
                task = bar.add_task("download", total=total or spec.size) if bar else None
                first = True
                while True:
                    block = resp.read(CHUNK)
                    if not block:
                        break
                    if first:
                        first = False
                        if ctype == "text/html" or _looks_like_html(block):
                            raise DatasetError(
                                f"download of {name} from {url} returned an HTML page "
                                f"(status {resp.status}) instead of the data file; "
                                f"{_offline_hint(name)}"
                            )
                    fh.write(block)
                    md5.update(block)
                    sha.update(block)
                    n += len(block)
                    if bar is not None:
                        bar.update(task, completed=n)
        except (TimeoutError, OSError, http.client.HTTPException) as exc:
            raise DatasetError(
                f"connection lost while downloading {name} from {url} after "
                f"{n:,} bytes ({type(exc).__name__}); retry, or "
                f"{_offline_hint(name)}"
            ) from None
    if total is not None and n != total:
        raise DatasetError(
            f"download of {name} from {url} truncated: the connection closed "
            f"after {n:,} of {total:,} bytes; retry, or {_offline_hint(name)}"
        )
    if n == 0:
        raise DatasetError(f"download of {name} from {url} is empty; {_offline_hint(name)}")
    return _Digests(n, md5.hexdigest(), sha.hexdigest())


# --------------------------------------------------------------------------- verification


def _verify(spec: DatasetSpec, d: _Digests, what: str, home: Path) -> tuple[str, bool]:
    """Check size and checksums; return (how it was verified, whether to record the sha256)."""
    if spec.size is not None and d.size != spec.size:
        raise ChecksumError(f"{what} is {d.size:,} bytes, datasets.toml says {spec.size:,} (truncated or changed file)")
    if spec.md5 and d.md5 != spec.md5:
        raise ChecksumError(
            f"md5 of {what} is {d.md5}, datasets.toml says {spec.md5} (corrupt download or changed file)"
        )
    if spec.sha256 and d.sha256 != spec.sha256:
        raise ChecksumError(
            f"sha256 of {what} is {d.sha256}, datasets.toml says {spec.sha256} (corrupt download or changed file)"
        )
    if spec.md5 or spec.sha256:
        return "checksum from datasets.toml", False
    recorded = read_manifest(home).get(spec.name)
    if recorded:
        if recorded.get("sha256") != d.sha256:
            raise ChecksumError(
                f"sha256 of {what} is {d.sha256}, but the first good download of {spec.name} "
                f"had {recorded.get('sha256')} (recorded in {home / 'manifest.json'}); if the "
                f"file changed upstream on purpose, delete that entry"
            )
        return "sha256 recorded on the first download", False
    return "no published checksum (sha256 recorded now)", True


def _unsafe_member(name: str) -> bool:
    n = name.replace("\\", "/")
    return n.startswith("/") or re.match(r"^[A-Za-z]:", n) is not None or ".." in PurePosixPath(n).parts


def _read_zip_member(spec: DatasetSpec, path: Path, what: str) -> bytes:
    """The registry member's bytes, after refusing unsafe archives."""
    assert spec.member is not None
    try:
        if not zipfile.is_zipfile(path):
            with open(path, "rb") as fh:
                head = fh.read(512)
            kind = "an HTML page" if _looks_like_html(head) else "not a zip archive"
            raise DatasetError(f"{what} is {kind} (truncated or wrong download?)")
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
            for info in infos:
                if _unsafe_member(info.filename):
                    raise DatasetError(
                        f"{what} has an unsafe member {info.filename!r} (absolute path or '..'); refusing to extract"
                    )
            declared = sum(i.file_size for i in infos)
            if declared > spec.max_unpacked_bytes:
                raise DatasetError(
                    f"{what} declares {declared:,} bytes unpacked, more than the "
                    f"limit {spec.max_unpacked_bytes:,} (zip bomb?); refusing"
                )
            for i in infos:
                if i.file_size >= ZIP_RATIO_MIN_BYTES and i.file_size > ZIP_RATIO_LIMIT * max(i.compress_size, 1):
                    raise DatasetError(
                        f"{what}: member {i.filename!r} expands {i.compress_size:,}"
                        f" bytes to {i.file_size:,} (zip bomb?); refusing"
                    )
            by_name = {i.filename.replace("\\", "/"): i for i in infos}
            info = by_name.get(spec.member)
            if info is None or info.is_dir():
                listing = ", ".join(sorted(by_name)[:8]) or "nothing"
                raise DatasetError(f"{what} has no member {spec.member!r} (it has: {listing})")
            chunks, n = [], 0
            with zf.open(info) as fh:
                while block := fh.read(1 << 20):
                    n += len(block)
                    if n > info.file_size:
                        raise DatasetError(f"{what}: member {spec.member!r} is larger than declared; refusing")
                    chunks.append(block)
            return b"".join(chunks)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, NotImplementedError) as exc:
        raise DatasetError(f"{what} is a damaged zip archive ({exc})") from None


def _find_in_dir(spec: DatasetSpec, folder: Path) -> Path:
    """The ratings file in a folder laid out like the archive (or like its top folder)."""
    assert spec.member is not None
    parts = PurePosixPath(spec.member).parts
    tried = []
    for k in range(len(parts)):
        candidate = folder.joinpath(*parts[k:])
        tried.append(str(candidate))
        if candidate.is_file():
            return candidate
    raise DatasetError(f"{folder} has no {spec.member} (looked for {', '.join(tried)})")


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
    digests: _Digests | None = None
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
    digests = _hash_file(path)
    verified, record = _verify(spec, digests, what, home)
    data = _read_zip_member(spec, path, what) if spec.archive == "zip" else path.read_bytes()
    return _Artifact(kind, location, str(path), data, verified, digests, record)


def _obtain(
    spec: DatasetSpec, source: str | Path | None, home: Path, force: bool, out: _Out, cleanup: list[Callable[[], None]]
) -> _Artifact:
    name = spec.name
    if source is not None and not (isinstance(source, str) and _URL_RE.match(source)):
        path = Path(source).expanduser()
        if path.is_dir():
            f = _find_in_dir(spec, path)
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
            _download(url, part, spec, out)
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
    out = _Out(progress)
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
    out: _Out,
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
        "recbench_version": _version(),
        "notes": out.notes,
    }
    save_interactions(data, home, meta)
    return data
