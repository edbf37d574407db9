"""The miss path under upstream faults: nothing incomplete is stored; failover; timeouts."""

from __future__ import annotations

import os
import socket
import socketserver
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.support.appliance_proc import Appliance, Upstream, run_appliance, run_upstream
from tests.support.procs import free_port


@pytest.fixture(scope="module")
def second(module_tmp: Path) -> Iterator[Upstream]:
    with run_upstream(module_tmp / "origin2", module_tmp) as u:
        yield u


@pytest.fixture(scope="module")
def app(module_tmp: Path, upstream: Upstream, second: Upstream) -> Iterator[Appliance]:
    with run_appliance(module_tmp / "app", [upstream.base_url, second.base_url], workers=2) as a:
        yield a


def get(app: Appliance, key: str) -> requests.Response:
    return requests.get(app.base_url + key, timeout=15)


def test_truncated_body_is_not_stored_and_next_request_refetches(
    app: Appliance, upstream: Upstream
) -> None:
    key = "/v/faults/r/seg-00001.m4s"
    body = os.urandom(3 * 2**20)
    upstream.put(key, body)
    upstream.fault(key, "truncate", once=True)
    with pytest.raises(requests.exceptions.RequestException):
        r = get(app, key)
        assert len(r.content) != len(body)  # pragma: no cover - requests raises first
    r2 = get(app, key)
    assert r2.status_code == 200 and r2.content == body
    assert upstream.count(key) == 2


def test_fill_failing_before_any_body_byte_gives_a_plain_502(
    app: Appliance, upstream: Upstream
) -> None:
    # The head was known (length and ETag) but no byte came: the client's head had not gone
    # out yet, so it gets an answer it can read and retry, not a broken body.
    key = "/v/faults/r/seg-00009.m4s"
    body = os.urandom(2**20)
    upstream.put(key, body)
    upstream.fault(key, "headonly", once=True)
    r = get(app, key)
    assert r.status_code == 502, r.headers
    assert r.text == "upstream error\n", r.text  # no upstream URL or library message
    assert "received 0 of" in app.proc.log_tail(20000)  # the detail is in the log
    r2 = get(app, key)
    assert r2.status_code == 200 and r2.content == body
    assert upstream.count(key) == 2


def test_short_body_with_declared_length_is_not_stored(app: Appliance, upstream: Upstream) -> None:
    key = "/v/faults/r/seg-00002.m4s"
    body = os.urandom(700_000)
    upstream.put(key, body)
    upstream.fault(key, "short", once=True)
    with pytest.raises(requests.exceptions.RequestException):
        get(app, key)
    assert get(app, key).content == body
    assert upstream.count(key) == 2


def test_5xx_fails_over_to_next_upstream(
    app: Appliance, upstream: Upstream, second: Upstream
) -> None:
    key = "/v/faults/r/seg-00003.m4s"
    body = os.urandom(100_000)
    upstream.put(key, body)
    second.put(key, body)
    upstream.fault(key, "status", 503)
    r = get(app, key)
    assert r.status_code == 200 and r.content == body
    assert upstream.count(key) == 1 and second.count(key) == 1


def test_all_upstreams_failing_gives_502_and_nothing_stored(
    app: Appliance, upstream: Upstream, second: Upstream
) -> None:
    key = "/v/faults/r/seg-00004.m4s"
    body = os.urandom(1000)
    upstream.put(key, body)
    second.put(key, body)
    upstream.fault(key, "status", 500)
    second.fault(key, "status", 502)
    assert get(app, key).status_code == 502
    upstream.fault(key, "none")
    second.fault(key, "none")
    r = get(app, key)
    assert r.status_code == 200 and r.content == body
    assert upstream.count(key) == 2


def test_first_byte_timeout_gives_504_and_is_counted(
    app: Appliance, upstream: Upstream, second: Upstream
) -> None:
    key = "/v/faults/r/seg-00005.m4s"
    upstream.put(key, b"x" * 1000)
    second.put(key, b"x" * 1000)
    upstream.fault(key, "delay", 3500)  # first_byte_timeout = 3 s in the test config
    second.fault(key, "delay", 3500)
    before = app.metric("vodedge_timeouts_total", kind="upstream_first_byte")
    r = get(app, key)
    assert r.status_code == 504
    assert app.metric("vodedge_timeouts_total", kind="upstream_first_byte") >= before + 2


def test_idle_timeout_mid_body_aborts_and_is_not_stored(
    app: Appliance, upstream: Upstream, second: Upstream
) -> None:
    key = "/v/faults/r/seg-00006.m4s"
    body = os.urandom(1_000_000)
    upstream.put(key, body)
    upstream.fault(key, "stall", once=True)  # idle_timeout = 2 s
    with pytest.raises(requests.exceptions.RequestException):
        get(app, key)
    assert app.metric("vodedge_timeouts_total", kind="upstream_idle") >= 1
    assert get(app, key).content == body


def test_connect_error_fails_over(module_tmp: Path, second: Upstream) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    key = "/v/faults/r/seg-00007.m4s"
    second.put(key, b"y" * 5000)
    with run_appliance(module_tmp / "app-dead", [dead, second.base_url], workers=1) as a:
        r = get(a, key)
        assert r.status_code == 200 and r.content == b"y" * 5000
        assert a.metric("vodedge_upstream_requests_total", result="connect_error") >= 1


def test_missing_content_length_still_verified(app: Appliance, upstream: Upstream) -> None:
    key = "/v/faults/r/seg-00008.m4s"
    body = os.urandom(300_000)
    upstream.put(key, body)
    upstream.fault(key, "nolength")
    r = get(app, key)
    assert r.status_code == 200 and r.content == body
    assert int(r.headers["Content-Length"]) == len(body)


def test_a_body_ended_by_closing_the_connection_is_served_never_stored(
    module_tmp: Path,
) -> None:
    """No Content-Length and no chunked framing: a cut connection would look just like the
    end, so the body goes to its waiters but is not stored."""
    body = os.urandom(200_000)
    requests_seen: list[bytes] = []

    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            requests_seen.append(self.request.recv(65536))
            self.request.sendall(
                b'HTTP/1.1 200 OK\r\nContent-Type: video/iso.segment\r\nETag: "cd1"\r\n'
                b"Connection: close\r\n\r\n" + body
            )
            self.request.shutdown(socket.SHUT_WR)

    with socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler) as srv:
        srv.daemon_threads = True
        t = threading.Thread(target=srv.serve_forever, daemon=True)
        t.start()
        base = f"http://127.0.0.1:{srv.server_address[1]}"
        try:
            with run_appliance(module_tmp / "closedelim", [base], workers=1) as a:
                key = "/v/faults/r/seg-00009.m4s"
                for _ in range(2):
                    r = get(a, key)
                    assert r.status_code == 200 and r.content == body
                    assert r.headers["Cache-Status"] != "vodedge; hit"
                assert len(requests_seen) == 2  # never stored: fetched again
                deadline = time.monotonic() + 5
                while a.metric("vodedge_fills_total", result="not_stored") < 2:
                    assert time.monotonic() < deadline, "not counted"
                    time.sleep(0.2)
        finally:
            srv.shutdown()


def test_a_trickling_body_is_cut_at_body_timeout_and_not_stored(
    module_tmp: Path, upstream: Upstream
) -> None:
    key = "/v/faults/r/seg-00010.m4s"
    body = os.urandom(1_000_000)  # 16 writes of 64 KiB, 250 ms apart: ~4 s, never 2 s idle
    upstream.put(key, body)
    upstream.fault(key, "trickle", 250)
    with run_appliance(
        module_tmp / "trickle", [upstream.base_url], workers=1, fill="body_timeout = 1.0"
    ) as a:
        with pytest.raises(requests.exceptions.RequestException):
            get(a, key)  # headers were out: the body is aborted
        assert a.metric("vodedge_timeouts_total", kind="upstream_body") == 1
        assert a.metric("vodedge_upstream_requests_total", result="timeout_body") == 1
        before = upstream.count(key)
        with pytest.raises(requests.exceptions.RequestException):
            get(a, key)  # not stored: fetched (and cut) again
        assert upstream.count(key) == before + 1


def test_a_parent_refusing_with_429_falls_over_to_the_origin(
    module_tmp: Path, upstream: Upstream, second: Upstream
) -> None:
    key = "/v/faults/r/seg-00011.m4s"
    body = os.urandom(100_000)
    upstream.put(key, body)  # the parent could serve it, but refuses
    second.put(key, body)
    upstream.fault(key, "status", 429)
    with run_appliance(
        module_tmp / "parent429",
        [second.base_url],
        workers=1,
        fill=f'parent = "{upstream.base_url}"',
    ) as a:
        r = get(a, key)
        assert r.status_code == 200 and r.content == body
        assert upstream.count(key) == 1 and second.count(key) == 1
        key2 = "/v/faults/r/seg-00012.m4s"  # an origin's refusal stays final
        second.put(key2, body)
        second.fault(key2, "status", 403)
        upstream.fault(key2, "status", 429)
        assert get(a, key2).status_code == 502
