"""Serving semantics through a real appliance (2 workers) in front of a real upstream process."""

from __future__ import annotations

import gzip
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.support.appliance_proc import Appliance, Upstream, run_appliance

SEG = "/v/title1/h264-360p/seg-00001.m4s"
PLAYLIST = "/v/title1/h264-360p/playlist.m3u8"
BODY = os.urandom(3 * 2**20 + 12345)  # spans four 1 MiB chunks
PLAYLIST_BODY = b"#EXTM3U\n#EXT-X-VERSION:7\n" + b"#EXTINF:6.0,\nseg-00001.m4s\n" * 200


@pytest.fixture(scope="module")
def app(module_tmp: Path, upstream: Upstream) -> Iterator[Appliance]:
    upstream.put(SEG, BODY)
    upstream.put(PLAYLIST, PLAYLIST_BODY)
    with run_appliance(module_tmp / "app", [upstream.base_url], workers=2) as a:
        yield a


def get(app: Appliance, path: str, **headers: str) -> requests.Response:
    return requests.get(app.base_url + path, headers=headers, timeout=10)


def wait_hit(app: Appliance, path: str, timeout: float = 5.0) -> requests.Response:
    """The store commit follows the last byte: poll until a request is a hit."""
    deadline = time.monotonic() + timeout
    while True:
        r = get(app, path)
        if r.headers.get("Cache-Status") == "vodedge; hit" or time.monotonic() > deadline:
            assert r.headers.get("Cache-Status") == "vodedge; hit", r.headers
            return r
        time.sleep(0.05)


def test_miss_then_hit(app: Appliance, upstream: Upstream) -> None:
    key = "/v/title1/h264-360p/seg-00002.m4s"
    upstream.put(key, BODY[:500_000])
    r1 = get(app, key)
    assert r1.status_code == 200
    assert r1.content == BODY[:500_000]
    assert "fwd=miss" in r1.headers["Cache-Status"]
    r2 = wait_hit(app, key)
    assert r2.status_code == 200 and r2.content == BODY[:500_000]
    assert upstream.count(key) == 1
    for h in ("ETag", "Last-Modified", "Date", "Age", "Cache-Control", "Content-Length"):
        assert h in r2.headers
    assert r2.headers["Content-Type"] == "video/iso.segment"
    assert r2.headers["Accept-Ranges"] == "bytes"
    assert r2.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert r2.headers["ETag"] == r1.headers["ETag"]


@pytest.mark.parametrize(
    ("rng", "start", "end"),
    [
        ("bytes=0-99", 0, 99),
        ("bytes=1048570-1048590", 1048570, 1048590),  # crosses a chunk boundary
        ("bytes=-100", len(BODY) - 100, len(BODY) - 1),
        ("bytes=3000000-", 3000000, len(BODY) - 1),
        ("bytes=5-5", 5, 5),
        ("bytes=100-99999999", 100, len(BODY) - 1),
    ],
)
def test_range_on_hit(app: Appliance, rng: str, start: int, end: int) -> None:
    wait_hit(app, SEG)
    r = get(app, SEG, Range=rng)
    assert r.status_code == 206
    assert r.headers["Content-Range"] == f"bytes {start}-{end}/{len(BODY)}"
    assert r.content == BODY[start : end + 1]
    assert r.headers["Cache-Status"] == "vodedge; hit"


def test_range_on_cold_miss_gets_slice(app: Appliance, upstream: Upstream) -> None:
    key = "/v/title1/h264-360p/seg-00003.m4s"
    upstream.put(key, BODY)
    r = get(app, key, Range="bytes=2097150-2097160")
    assert r.status_code == 206
    assert r.content == BODY[2097150:2097161]
    assert upstream.count(key) == 1
    # the miss fetched the whole object: now a full hit
    assert wait_hit(app, key).content == BODY


def test_unsatisfiable_and_malformed_range(app: Appliance) -> None:
    get(app, SEG)
    r = get(app, SEG, Range=f"bytes={len(BODY)}-")
    assert r.status_code == 416
    assert r.headers["Content-Range"] == f"bytes */{len(BODY)}"
    for bad in ("bytes=abc", "items=0-1", "bytes=5-2", "bytes="):
        assert get(app, SEG, Range=bad).status_code == 400, bad


def test_multi_range_gets_whole_body(app: Appliance) -> None:
    r = get(app, SEG, Range="bytes=0-1,5-9")
    assert r.status_code == 200 and r.content == BODY


def test_conditional_requests(app: Appliance) -> None:
    etag = get(app, SEG).headers["ETag"]
    lm = get(app, SEG).headers["Last-Modified"]
    r = get(app, SEG, **{"If-None-Match": etag})
    assert r.status_code == 304 and r.content == b""
    assert r.headers["ETag"] == etag
    assert get(app, SEG, **{"If-None-Match": '"other"'}).status_code == 200
    assert get(app, SEG, **{"If-Modified-Since": lm}).status_code == 304
    assert (
        get(app, SEG, **{"If-Modified-Since": "Tue, 03 Nov 2020 10:00:00 GMT"}).status_code == 200
    )
    # If-Range: matching ETag honours the Range, a stale one gets the whole body
    assert get(app, SEG, Range="bytes=0-9", **{"If-Range": etag}).status_code == 206
    r = get(app, SEG, Range="bytes=0-9", **{"If-Range": '"stale"'})
    assert r.status_code == 200 and len(r.content) == len(BODY)


def test_head(app: Appliance) -> None:
    g = get(app, SEG)
    h = requests.head(app.base_url + SEG, timeout=5)
    assert h.status_code == 200
    assert h.content == b""
    assert h.headers["Content-Length"] == str(len(BODY)) == g.headers["Content-Length"]
    assert h.headers["ETag"] == g.headers["ETag"]


def test_cors(app: Appliance) -> None:
    r = get(app, SEG, Origin="https://player.example")
    assert r.headers["Access-Control-Allow-Origin"] == "*"
    exposed = r.headers["Access-Control-Expose-Headers"]
    for h in ("Content-Length", "Content-Range", "Date", "Age"):
        assert h in exposed
    pre = requests.options(
        app.base_url + SEG,
        headers={
            "Origin": "https://player.example",
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "range",
        },
        timeout=5,
    )
    assert pre.status_code == 204
    assert "Range" in pre.headers["Access-Control-Allow-Headers"]
    assert "GET" in pre.headers["Access-Control-Allow-Methods"]


def test_playlist_gzip(app: Appliance) -> None:
    r = requests.get(
        app.base_url + PLAYLIST, headers={"Accept-Encoding": "gzip"}, timeout=5, stream=True
    )
    raw = r.raw.read(decode_content=False)
    assert r.headers["Content-Encoding"] == "gzip"
    assert r.headers["Content-Type"] == "application/vnd.apple.mpegurl"
    assert "Accept-Encoding" in r.headers["Vary"]
    assert gzip.decompress(raw) == PLAYLIST_BODY
    assert int(r.headers["Content-Length"]) == len(raw) < len(PLAYLIST_BODY)
    plain = requests.get(
        app.base_url + PLAYLIST, headers={"Accept-Encoding": "identity"}, timeout=5
    )
    assert "Content-Encoding" not in plain.headers and plain.content == PLAYLIST_BODY
    assert plain.headers["ETag"] != r.headers["ETag"]


@pytest.mark.parametrize(
    "path",
    [
        "/v/../etc/passwd",
        "/v/title1/../../etc/passwd",
        "/v/title1/%2e%2e/x",
        "/v/bad%20id/x.m4s",
        "/v/title1/x.m4s%00",
        "/v/title1",
        "/v/" + "a" * 65 + "/x.m4s",
        "/v/title1/.hidden",
        "/v/title1/a/b/c/d/e.m4s",
    ],
)
def test_bad_paths_are_400_and_never_reach_upstream(
    app: Appliance, upstream: Upstream, path: str
) -> None:
    before = upstream.count(path)
    with socket.create_connection(("127.0.0.1", app.port), timeout=5) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        data = _recv_all(s)
    assert data.startswith(b"HTTP/1.1 400"), data[:100]
    assert upstream.count(path) == before


def test_unknown_path_404_and_method_405(app: Appliance) -> None:
    assert get(app, "/nope").status_code == 404
    r = requests.post(app.base_url + SEG, data=b"x", timeout=5)
    assert r.status_code == 405 and "GET" in r.headers["Allow"]


def test_oversized_headers_431(app: Appliance) -> None:
    with socket.create_connection(("127.0.0.1", app.port), timeout=5) as s:
        s.sendall(f"GET {SEG} HTTP/1.1\r\nHost: x\r\nX-Big: {'a' * 20000}\r\n\r\n".encode())
        data = _recv_all(s)
    assert data.startswith(b"HTTP/1.1 431")


def test_garbage_request_400(app: Appliance) -> None:
    with socket.create_connection(("127.0.0.1", app.port), timeout=5) as s:
        s.sendall(b"\x16\x03\x01 hello\r\n\r\n")
        data = _recv_all(s)
    assert data.startswith(b"HTTP/1.1 400")


def test_pipelined_requests_answer_in_order(app: Appliance, upstream: Upstream) -> None:
    cold = "/v/title1/h264-360p/seg-00009.m4s"
    upstream.put(cold, b"c" * 70000)
    get(app, SEG)
    with socket.create_connection(("127.0.0.1", app.port), timeout=10) as s:
        reqs = (
            f"GET {cold} HTTP/1.1\r\nHost: x\r\n\r\n"
            f"GET {SEG} HTTP/1.1\r\nHost: x\r\nRange: bytes=0-3\r\n\r\n"
            f"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        s.sendall(reqs.encode())
        data = _recv_all(s)
    first = data.find(b"HTTP/1.1 200")
    second = data.find(b"HTTP/1.1 206")
    third = data.rfind(b"HTTP/1.1 200")
    assert 0 == first < second < third
    assert b"c" * 70000 in data
    assert BODY[:4] in data


def test_404_is_cached_briefly(app: Appliance, upstream: Upstream) -> None:
    key = "/v/title1/h264-360p/missing.m4s"
    assert get(app, key).status_code == 404
    assert get(app, key).status_code == 404
    assert upstream.count(key) == 1


def test_metrics_and_healthz(app: Appliance) -> None:
    get(app, SEG)
    assert get(app, "/healthz").status_code == 200
    text = get(app, "/metrics").text
    for name in (
        "vodedge_requests_total",
        "vodedge_response_bytes_total",
        "vodedge_upstream_requests_total",
        "vodedge_upstream_fetch_seconds_bucket",
        "vodedge_fill_bytes_total",
        "vodedge_disk_capacity_bytes",
        "vodedge_disk_object_bytes",
        "vodedge_fills_in_flight",
        "vodedge_process_cpu_seconds_total",
        "vodedge_process_resident_memory_bytes",
    ):
        assert name in text, name
    assert 'outcome="hit"' in text


def _recv_all(s: socket.socket) -> bytes:
    chunks = []
    while True:
        try:
            b = s.recv(65536)
        except (ConnectionResetError, TimeoutError):
            break
        if not b:
            break
        chunks.append(b)
    return b"".join(chunks)


def test_slow_request_head_is_cut_off(module_tmp: Path, upstream: Upstream) -> None:
    with (
        run_appliance(
            module_tmp / "app-slow",
            [upstream.base_url],
            workers=1,
            server="keepalive_timeout = 1.0\nmax_header_bytes = 2048",
        ) as a,
        socket.create_connection(("127.0.0.1", a.port), timeout=10) as s,
    ):
        t0 = time.monotonic()
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        for _ in range(10):  # trickle header lines, never finishing the head
            time.sleep(0.3)
            try:
                s.sendall(b"X-A: b\r\n")
            except OSError:
                break
        data = _recv_all(s)
        assert data == b""  # closed without a response
        assert time.monotonic() - t0 < 4.0


@pytest.fixture(scope="module")
def impatient(module_tmp: Path, upstream: Upstream) -> Iterator[Appliance]:
    upstream.put("/v/big/r/seg-00001.m4s", os.urandom(24 * 2**20))
    with run_appliance(
        module_tmp / "app-impatient",
        [upstream.base_url],
        workers=1,
        server="keepalive_timeout = 1.0\nsend_timeout = 1.0",
    ) as a:
        yield a


def _read_response(s: socket.socket, length: int) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        data += s.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    while len(body) < length:
        body += s.recv(65536)
    return head


def test_idle_keepalive_connection_is_closed_after_responses(
    impatient: Appliance, upstream: Upstream
) -> None:
    key, body = "/v/idle/r/seg-00001.m4s", os.urandom(100_000)
    upstream.put(key, body)
    with socket.create_connection(("127.0.0.1", impatient.port), timeout=10) as s:
        for want in ("fwd=miss", "hit"):  # a streamed miss, then a hit answered at once
            if want == "hit":
                wait_hit(impatient, key)
            s.sendall(f"GET {key} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            assert want.encode() in _read_response(s, len(body))
        t0 = time.monotonic()
        assert s.recv(1) == b""  # the server closed the idle connection
        assert 0.9 < time.monotonic() - t0 < 3.0


def test_client_that_stops_reading_is_cut_off_by_send_timeout(impatient: Appliance) -> None:
    key = "/v/big/r/seg-00001.m4s"
    wait_hit(impatient, key, timeout=15)
    before = impatient.metric("vodedge_timeouts_total", kind="client_send")
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.settimeout(10)
    with s:
        s.connect(("127.0.0.1", impatient.port))
        s.sendall(f"GET {key} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        time.sleep(3.0)  # accept nothing: 24 MiB cannot fit the socket buffers
        deadline = time.monotonic() + 5
        while impatient.metric("vodedge_timeouts_total", kind="client_send") <= before:
            assert time.monotonic() < deadline, "send timeout not counted"
            time.sleep(0.2)
        assert len(_recv_all(s)) < 24 * 2**20  # aborted: the body never completed


def test_request_body_is_refused(app: Appliance) -> None:
    with socket.create_connection(("127.0.0.1", app.port), timeout=5) as s:
        s.sendall(
            f"GET {SEG} HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n".encode()
            + b"z" * 100000
        )
        data = _recv_all(s)
    assert data.startswith(b"HTTP/1.1 413")


def test_body_bytes_counted_are_the_bytes_sent(app: Appliance) -> None:
    wait_hit(app, SEG)
    etag = get(app, SEG).headers["ETag"]

    def counted() -> float:
        """The hit bytes counted, once the workers' once-a-second flushes have caught up."""
        deadline = time.monotonic() + 15
        last = app.metric("vodedge_response_bytes_total", outcome="hit")
        while True:
            time.sleep(1.1)
            now = app.metric("vodedge_response_bytes_total", outcome="hit")
            if now == last:
                return now
            assert time.monotonic() < deadline, "the byte count never settled"
            last = now

    before = counted()
    assert len(get(app, SEG, Range="bytes=1048570-1048580").content) == 11  # 206
    assert requests.head(app.base_url + SEG, timeout=5).status_code == 200  # no body
    assert get(app, SEG, **{"If-None-Match": etag}).status_code == 304  # no body
    assert get(app, SEG, Range=f"bytes={len(BODY)}-").status_code == 416  # no body
    assert len(get(app, SEG).content) == len(BODY)  # 200
    assert counted() - before == 11 + len(BODY)
