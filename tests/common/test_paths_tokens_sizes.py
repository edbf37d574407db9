"""Object path validation, path tokens and config sizes (pure)."""

from __future__ import annotations

import pytest

from vodedge.paths import VIDEO_ID_RE, PathError, parse_object_path
from vodedge.sizes import parse_size
from vodedge.tokens import TokenVerdict, sign, verify


@pytest.mark.parametrize(
    ("raw", "key", "vid", "token"),
    [
        ("/v/abc/master.m3u8", "/v/abc/master.m3u8", "abc", None),
        ("/v/a_b-C9/h264-360p/seg-00001.m4s", "/v/a_b-C9/h264-360p/seg-00001.m4s", "a_b-C9", None),
        ("/t/k1.99.sig/v/abc/x.m4s", "/v/abc/x.m4s", "abc", "k1.99.sig"),
        ("/v/abc/thumbs/sprites/s1.jpg", "/v/abc/thumbs/sprites/s1.jpg", "abc", None),
    ],
)
def test_valid_paths(raw: str, key: str, vid: str, token: str | None) -> None:
    p = parse_object_path(raw)
    assert (p.key, p.video_id, p.token) == (key, vid, token)


@pytest.mark.parametrize(
    "raw",
    [
        "/v/../x",
        "/v/abc/../x",
        "/v/abc/..",
        "/v/abc/%2e%2e/x",
        "/v/abc/.hidden",
        "/v/abc",
        "/v/abc/",
        "/v//x",
        "/x/abc/y",
        "/t//v/abc/x",
        "/t/tok",
        "/v/" + "a" * 65 + "/x",
        "/v/abc/a/b/c/d",
        "/v/abc/" + "x" * 600,
        "/v/abc/x y",
        "/v/abc/x\x00",
    ],
)
def test_invalid_paths(raw: str) -> None:
    with pytest.raises(PathError):
        parse_object_path(raw)


KEYS = {"k1": b"a-very-long-test-secret-1234", "k2": b"another-long-test-secret-5678"}


def test_token_roundtrip_and_rotation() -> None:
    t1 = sign("k1", KEYS["k1"], "vid", 2000)
    t2 = sign("k2", KEYS["k2"], "vid", 2000)
    assert verify(t1, "vid", KEYS, 1000) is TokenVerdict.OK
    assert verify(t2, "vid", KEYS, 1000) is TokenVerdict.OK


def test_token_failures() -> None:
    t = sign("k1", KEYS["k1"], "vid", 2000)
    assert verify(t, "other", KEYS, 1000) is TokenVerdict.BAD_SIGNATURE  # one title only
    assert verify(t, "vid", KEYS, 2001) is TokenVerdict.EXPIRED
    assert verify(t, "vid", {"k2": KEYS["k2"]}, 1000) is TokenVerdict.UNKNOWN_KEY
    kid, exp, sig = t.split(".")
    assert verify(f"{kid}.{int(exp) + 1}.{sig}", "vid", KEYS, 1000) is TokenVerdict.BAD_SIGNATURE
    assert verify("garbage", "vid", KEYS, 1000) is TokenVerdict.MALFORMED
    assert verify("k1.notanumber.sig", "vid", KEYS, 1000) is TokenVerdict.MALFORMED
    with pytest.raises(ValueError):
        sign("bad.kid", b"x" * 20, "vid", 1)


@pytest.mark.parametrize(
    ("text", "n"),
    [
        ("200MB", 200 * 10**6),
        ("1.5TB", 15 * 10**11),
        ("512MiB", 512 * 2**20),
        ("4096", 4096),
        (123, 123),
        ("2 GiB", 2 * 2**30),
    ],
)
def test_sizes(text: str | int, n: int) -> None:
    assert parse_size(text) == n


@pytest.mark.parametrize("bad", ["12XB", "", "MB", "-5", "1.2.3GB"])
def test_bad_sizes(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_size(bad)


@pytest.mark.parametrize(
    "raw",
    ["/v/abc\n/x", "/v/abc/x\n", "/t/tok/v/abc\n/x", "/v/abc/h264-360p\n/x.m4s"],
)
def test_a_trailing_newline_is_no_id_or_name(raw: str) -> None:
    """``$`` matches before a final newline; the patterns end in ``\\Z``."""
    with pytest.raises(PathError):
        parse_object_path(raw)
    assert not VIDEO_ID_RE.match("abc\n")
