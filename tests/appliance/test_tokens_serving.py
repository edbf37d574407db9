"""Path tokens on a live appliance: verified before any store or upstream work."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.support.appliance_proc import Appliance, Upstream, run_appliance
from vodedge.tokens import sign

SECRET = "token-secret-for-tests-0123"
KEY = "/v/tok1/h264-360p/seg-00001.m4s"


@pytest.fixture(scope="module")
def app(module_tmp: Path, upstream: Upstream) -> Iterator[Appliance]:
    upstream.put(KEY, b"t" * 50_000)
    with run_appliance(
        module_tmp / "app", [upstream.base_url], workers=1, token_keys={"k1": SECRET}
    ) as a:
        yield a


def url(app: Appliance, token: str | None, key: str = KEY) -> str:
    return app.base_url + (f"/t/{token}" if token else "") + key


def test_valid_token_serves(app: Appliance) -> None:
    tok = sign("k1", SECRET.encode(), "tok1", int(time.time()) + 60)
    r = requests.get(url(app, tok), timeout=5)
    assert r.status_code == 200 and r.content == b"t" * 50_000


@pytest.mark.parametrize(
    "token",
    [
        None,
        "garbage",
        f"k9.{int(time.time()) + 60}.AAAA",
        sign("k1", SECRET.encode(), "tok1", int(time.time()) - 5),  # expired
        sign("k1", SECRET.encode(), "other", int(time.time()) + 60),  # another title
        sign("k1", b"wrong-secret-wrong-secret", "tok1", int(time.time()) + 60),
    ],
)
def test_bad_tokens_are_403_and_never_reach_upstream(
    app: Appliance, upstream: Upstream, token: str | None
) -> None:
    cold = "/v/tok1/h264-360p/seg-00002.m4s"
    upstream.put(cold, b"c" * 1000)
    r = requests.get(url(app, token, cold), timeout=5)
    assert r.status_code == 403
    assert upstream.count(cold) == 0
