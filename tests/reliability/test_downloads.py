"""Download faults, injected through a local HTTP server on 127.0.0.1.

Each fault must give a one-line error naming its cause, leave nothing a later run would trust,
and a retry after the fault is fixed must succeed.
"""

from __future__ import annotations

import hashlib
import io
import socket
import struct
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from data.builders import Tiny, build_tiny, zip_bytes

from recbench.data import (
    ChecksumError,
    DatasetError,
    DatasetNotFetched,
    data_home,
    fetch,
    is_fetched,
    load_dataset,
)

MEMBER = "tiny/ratings.tsv"


@dataclass
class Server:
    port: int
    routes: dict[str, tuple[str, bytes]] = field(default_factory=dict)
    hits: list[str] = field(default_factory=list)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


class _Handler(BaseHTTPRequestHandler):
    server: ThreadingHTTPServer

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        srv: Server = self.server.state  # type: ignore[attr-defined]
        srv.hits.append(self.path)
        mode, body = srv.routes.get(self.path, ("404", b""))
        if mode == "404":
            self.send_error(404, "Not Found")
            return
        ctype = "text/html" if mode == "html" else "application/octet-stream"
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if mode in ("ok", "html", "html-sniffed"):
            self.wfile.write(body)
            return
        self.wfile.write(body[: len(body) // 2])
        self.wfile.flush()
        if mode == "drop":  # orderly close half way
            self.connection.shutdown(socket.SHUT_WR)
        elif mode == "reset":  # abortive close: RST
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[Server]:
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "*")
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    state = Server(port=httpd.server_address[1])
    httpd.state = state  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def tiny(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: Server) -> Tiny:
    """The tiny data set as a zip, registered at the test server's URL with its checksums."""
    t = build_tiny(tmp_path, monkeypatch, urls=[server.url("/tiny.zip")])
    server.routes["/tiny.zip"] = ("ok", t.archive.read_bytes())
    return t


def _nothing_trusted() -> None:
    """After a fault: no cache, no kept download, no temporary file."""
    assert not is_fetched("tiny")
    with pytest.raises(DatasetNotFetched):
        load_dataset("tiny")
    downloads = data_home() / "downloads"
    left = sorted(p.name for p in downloads.iterdir()) if downloads.exists() else []
    assert left == [], left


def _one_line(exc: pytest.ExceptionInfo[BaseException]) -> str:
    msg = str(exc.value)
    assert "\n" not in msg and msg
    return msg


def _retry_succeeds(server: Server, tiny: Tiny) -> None:
    server.routes["/tiny.zip"] = ("ok", tiny.archive.read_bytes())
    data = fetch("tiny", progress=False)
    assert (data.n_users, data.n_items, len(data)) == (20, 30, 120)
    assert is_fetched("tiny") and (data_home() / "downloads" / "tiny.zip").is_file()


def test_download_with_checksum_ok_then_noop(server: Server, tiny: Tiny) -> None:
    _retry_succeeds(server, tiny)
    assert server.hits == ["/tiny.zip"]
    server.routes.clear()  # "offline" now: a valid cache needs no network
    assert len(fetch("tiny", progress=False)) == 120
    # the cache gone, the kept (verified) download rebuilds it without the network
    for p in (data_home() / "datasets" / "tiny").iterdir():
        p.unlink()
    assert len(fetch("tiny", progress=False)) == 120
    assert server.hits == ["/tiny.zip"]


def test_progress_bar_path(server: Server, tiny: Tiny, capsys: pytest.CaptureFixture[str]) -> None:
    assert len(fetch("tiny", progress=True)) == 120


def test_checksum_mismatch(server: Server, tiny: Tiny) -> None:
    other = zip_bytes({MEMBER: tiny.data.replace(b"\t5\t", b"\t4\t"), "tiny/README": b"tiny\n"})
    server.routes["/tiny.zip"] = ("ok", other)
    with pytest.raises(ChecksumError) as exc:
        fetch("tiny", progress=False)
    assert "md5 of the download of tiny" in _one_line(exc) and tiny.md5 in str(exc.value)
    _nothing_trusted()
    _retry_succeeds(server, tiny)


@pytest.mark.parametrize("checksum", [True, False])
def test_truncated_archive(server: Server, tiny: Tiny, monkeypatch: pytest.MonkeyPatch, checksum: bool) -> None:
    if not checksum:
        tiny.register(monkeypatch, urls=[server.url("/tiny.zip")], md5=None, sha256=None)
    blob = tiny.archive.read_bytes()
    server.routes["/tiny.zip"] = ("ok", blob[: len(blob) - 40])
    with pytest.raises(DatasetError) as exc:
        fetch("tiny", progress=False)
    msg = _one_line(exc)
    if checksum:
        assert isinstance(exc.value, ChecksumError) and "md5 of the download" in msg
    else:
        assert "not a zip archive (truncated" in msg or "damaged zip" in msg
    _nothing_trusted()
    _retry_succeeds(server, tiny)


@pytest.mark.parametrize("mode", ["drop", "reset"])
def test_server_drops_connection_half_way(server: Server, tiny: Tiny, mode: str) -> None:
    server.routes["/tiny.zip"] = (mode, tiny.archive.read_bytes())
    with pytest.raises(DatasetError) as exc:
        fetch("tiny", progress=False)
    msg = _one_line(exc)
    assert "truncated: the connection closed after" in msg or "connection lost" in msg, msg
    assert "--from" in msg
    _nothing_trusted()
    _retry_succeeds(server, tiny)


@pytest.mark.parametrize("mode", ["html", "html-sniffed"])
def test_html_error_page_with_status_200(
    server: Server, tiny: Tiny, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    tiny.register(monkeypatch, urls=[server.url("/tiny.zip")], md5=None, sha256=None)
    page = b"<!DOCTYPE html>\n<html><body>Rate limit exceeded, try later</body></html>\n"
    server.routes["/tiny.zip"] = (mode, page)
    with pytest.raises(DatasetError) as exc:
        fetch("tiny", progress=False)
    assert "returned an HTML page (status 200)" in _one_line(exc)
    _nothing_trusted()
    _retry_succeeds(server, tiny)


@pytest.mark.parametrize("evil", ["../evil.txt", "/tmp/evil.txt", "tiny/../../evil.txt", "C:/evil.txt", "..\\evil.txt"])
def test_unsafe_member_refused(
    server: Server, tiny: Tiny, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, evil: str
) -> None:
    tiny.register(monkeypatch, urls=[server.url("/tiny.zip")], md5=None, sha256=None)
    server.routes["/tiny.zip"] = ("ok", zip_bytes({MEMBER: tiny.data, evil: b"owned\n"}))
    with pytest.raises(DatasetError) as exc:
        fetch("tiny", progress=False)
    assert "unsafe member" in _one_line(exc) and "refusing" in str(exc.value)
    assert not list(tmp_path.rglob("evil.txt")) and not Path("/tmp/evil.txt").exists()
    _nothing_trusted()
    _retry_succeeds(server, tiny)


def _patched_declared_size(blob: bytes, size: int) -> bytes:
    """Rewrite the uncompressed size of every central-directory entry (a lying header)."""
    out = bytearray(blob)
    pos = out.find(b"PK\x01\x02")
    while pos != -1:
        out[pos + 24 : pos + 28] = struct.pack("<I", size)
        pos = out.find(b"PK\x01\x02", pos + 4)
    return bytes(out)


@pytest.mark.parametrize("kind", ["ratio", "declared"])
def test_zip_bomb_refused(server: Server, tiny: Tiny, monkeypatch: pytest.MonkeyPatch, kind: str) -> None:
    tiny.register(monkeypatch, urls=[server.url("/tiny.zip")], md5=None, sha256=None)
    if kind == "ratio":
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
            zf.writestr(MEMBER, tiny.data)
            zf.writestr("tiny/zeros.bin", bytes(16 << 20))
        blob = buf.getvalue()
        expect = "(zip bomb?)"
    else:
        blob = _patched_declared_size(zip_bytes({MEMBER: tiny.data}), 0xF000_0000)
        expect = "declares 4,026,531,840 bytes unpacked"
    server.routes["/tiny.zip"] = ("ok", blob)
    with pytest.raises(DatasetError) as exc:
        fetch("tiny", progress=False)
    assert expect in _one_line(exc) and "refusing" in str(exc.value)
    _nothing_trusted()
    _retry_succeeds(server, tiny)


def test_missing_member(server: Server, tiny: Tiny, monkeypatch: pytest.MonkeyPatch) -> None:
    tiny.register(monkeypatch, urls=[server.url("/tiny.zip")], md5=None, sha256=None)
    server.routes["/tiny.zip"] = ("ok", zip_bytes({"other/ratings.tsv": tiny.data}))
    with pytest.raises(DatasetError) as exc:
        fetch("tiny", progress=False)
    assert "has no member 'tiny/ratings.tsv' (it has: other/ratings.tsv)" in _one_line(exc)
    _nothing_trusted()
    _retry_succeeds(server, tiny)


def test_offline_names_from_and_from_then_works(tiny: Tiny, monkeypatch: pytest.MonkeyPatch) -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there: connection refused
    tiny.register(monkeypatch, urls=[f"http://127.0.0.1:{port}/tiny.zip"], md5=tiny.md5)
    with pytest.raises(DatasetError) as exc:
        fetch("tiny", progress=False)
    msg = _one_line(exc)
    assert f"cannot download tiny: 127.0.0.1:{port} unreachable" in msg
    assert "recbench fetch tiny --from PATH" in msg
    _nothing_trusted()
    assert len(fetch("tiny", source=tiny.archive, progress=False)) == 120


def test_http_404_then_mirror(server: Server, tiny: Tiny, monkeypatch: pytest.MonkeyPatch) -> None:
    tiny.register(monkeypatch, urls=[server.url("/gone.zip")], md5=tiny.md5)
    with pytest.raises(DatasetError) as exc:
        fetch("tiny", progress=False)
    assert "HTTP 404" in _one_line(exc) and "--from" in str(exc.value)
    _nothing_trusted()
    tiny.register(monkeypatch, urls=[server.url("/gone.zip"), server.url("/tiny.zip")], md5=tiny.md5)
    assert len(fetch("tiny", progress=False)) == 120
    assert server.hits == ["/gone.zip", "/gone.zip", "/tiny.zip"]


def test_from_a_mirror_url_is_verified(server: Server, tiny: Tiny) -> None:
    server.routes["/mirror/tiny.zip"] = ("ok", b"PK\x03\x04 not the real thing")
    with pytest.raises(ChecksumError):
        fetch("tiny", source=server.url("/mirror/tiny.zip"), progress=False)
    _nothing_trusted()
    server.routes["/mirror/tiny.zip"] = ("ok", tiny.archive.read_bytes())
    assert len(fetch("tiny", source=server.url("/mirror/tiny.zip"), progress=False)) == 120


def test_plain_file_without_checksum_records_and_verifies(
    server: Server, tiny: Tiny, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A yelp-like data set: the download is the ratings file, no published checksum."""
    tiny.register(
        monkeypatch, urls=[server.url("/tiny.rating")], archive="file", member="tiny.rating", md5=None, sha256=None
    )
    server.routes["/tiny.rating"] = ("ok", tiny.data)
    assert len(fetch("tiny", progress=False)) == 120
    sha = hashlib.sha256(tiny.data).hexdigest()
    assert (data_home() / "downloads" / "tiny.rating").read_bytes() == tiny.data
    server.routes["/tiny.rating"] = ("ok", tiny.data + b"21\t1\t3\t5\n")
    with pytest.raises(ChecksumError) as exc:
        fetch("tiny", force=True, progress=False)
    assert f"had {sha}" in _one_line(exc) and "manifest.json" in str(exc.value)
    assert len(load_dataset("tiny")) == 120  # the good cache is untouched
    server.routes["/tiny.rating"] = ("ok", tiny.data)
    assert len(fetch("tiny", force=True, progress=False)) == 120
