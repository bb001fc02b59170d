"""Getting a data set's file safely: streamed download with a progress bar (refusing HTML pages,
truncation and empty bodies), verification against the registry's size and checksums (or the
sha256 recorded on the first good download), and reading the ratings member out of a zip
archive without extracting anything (no absolute or ``..`` members, no zip bombs).
:mod:`recbench.data.fetch` calls these in order."""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import re
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from recbench.data.cache import read_manifest
from recbench.data.registry import ChecksumError, DatasetError, DatasetSpec

CHUNK = 1 << 16
TIMEOUT_S = 30.0
ZIP_RATIO_LIMIT = 200  # a member this many times larger than its compressed size ...
ZIP_RATIO_MIN_BYTES = 8 << 20  # ... and at least this large is refused as a zip bomb


def package_version() -> str:
    try:
        from importlib.metadata import version

        return version("recbench")
    except Exception:  # pragma: no cover
        return "0"


# --------------------------------------------------------------------------- output


class Notes:
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


def offline_hint(name: str) -> str:
    return (
        f"if offline, fetch from a local copy: `recbench fetch {name} --from PATH` "
        f"(the archive, or a folder of its contents)"
    )


def looks_like_html(head: bytes) -> bool:
    h = head.lstrip()[:64].lower()
    return h.startswith((b"<!doctype html", b"<html", b"<head", b"<body"))


@dataclass
class Digests:
    size: int
    md5: str
    sha256: str


def hash_file(path: Path) -> Digests:
    md5, sha, n = hashlib.md5(usedforsecurity=False), hashlib.sha256(), 0
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            md5.update(block)
            sha.update(block)
            n += len(block)
    return Digests(n, md5.hexdigest(), sha.hexdigest())


def download(url: str, dest: Path, spec: DatasetSpec, out: Notes) -> Digests:
    """Stream ``url`` into ``dest`` (a temporary name), hashing as it goes."""
    name = spec.name
    host = urllib.parse.urlsplit(url).netloc or url
    req = urllib.request.Request(url, headers={"User-Agent": f"recbench/{package_version()}"})
    try:
        resp = urllib.request.urlopen(req, timeout=TIMEOUT_S)
    except urllib.error.HTTPError as exc:
        raise DatasetError(
            f"download of {name} from {url} failed: HTTP {exc.code} {exc.reason}; {offline_hint(name)}"
        ) from None
    except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DatasetError(f"cannot download {name}: {host} unreachable ({reason}); {offline_hint(name)}") from None
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
                        if ctype == "text/html" or looks_like_html(block):
                            raise DatasetError(
                                f"download of {name} from {url} returned an HTML page "
                                f"(status {resp.status}) instead of the data file; "
                                f"{offline_hint(name)}"
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
                f"{offline_hint(name)}"
            ) from None
    if total is not None and n != total:
        raise DatasetError(
            f"download of {name} from {url} truncated: the connection closed "
            f"after {n:,} of {total:,} bytes; retry, or {offline_hint(name)}"
        )
    if n == 0:
        raise DatasetError(f"download of {name} from {url} is empty; {offline_hint(name)}")
    return Digests(n, md5.hexdigest(), sha.hexdigest())


# --------------------------------------------------------------------------- verification


def verify(spec: DatasetSpec, d: Digests, what: str, home: Path) -> tuple[str, bool]:
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


def unsafe_member(name: str) -> bool:
    n = name.replace("\\", "/")
    return n.startswith("/") or re.match(r"^[A-Za-z]:", n) is not None or ".." in PurePosixPath(n).parts


def read_zip_member(spec: DatasetSpec, path: Path, what: str) -> bytes:
    """The registry member's bytes, after refusing unsafe archives."""
    assert spec.member is not None
    try:
        if not zipfile.is_zipfile(path):
            with open(path, "rb") as fh:
                head = fh.read(512)
            kind = "an HTML page" if looks_like_html(head) else "not a zip archive"
            raise DatasetError(f"{what} is {kind} (truncated or wrong download?)")
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
            for info in infos:
                if unsafe_member(info.filename):
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


def find_in_dir(spec: DatasetSpec, folder: Path) -> Path:
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
