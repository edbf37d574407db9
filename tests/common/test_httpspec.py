"""RFC 9110 Range and conditional decisions (pure)."""

from __future__ import annotations

import pytest

from vodedge.httpspec import (
    UNSATISFIABLE,
    ByteRange,
    RangeError,
    content_type_for,
    http_date,
    if_range_matches,
    not_modified,
    parse_range,
)


@pytest.mark.parametrize(
    ("header", "length", "want"),
    [
        (None, 100, None),
        ("bytes=0-9", 100, ByteRange(0, 9, 100)),
        ("bytes=90-", 100, ByteRange(90, 99, 100)),
        ("bytes=-10", 100, ByteRange(90, 99, 100)),
        ("bytes=-1000", 100, ByteRange(0, 99, 100)),
        ("bytes=50-1000", 100, ByteRange(50, 99, 100)),
        ("bytes=100-", 100, UNSATISFIABLE),
        ("bytes=-0", 100, UNSATISFIABLE),
        ("bytes=0-0", 0, UNSATISFIABLE),
        ("bytes=0-1,4-5", 100, None),
        (" bytes = 3-4 ", 100, ByteRange(3, 4, 100)),
        ("bytes=" + "0" * 17 + "3-4" + " " * 60, 100, ByteRange(3, 4, 100)),  # long: not cached
    ],
)
def test_parse_range(header: str | None, length: int, want: object) -> None:
    assert parse_range(header, length) == want


@pytest.mark.parametrize(
    "header",
    [
        "bytes=",
        "bytes=a-b",
        "bytes=5-1",
        "items=0-1",
        "bytes=-",
        "0-1",
        "bytes=1-2,",
        "bytes=\u00b2-",  # a digit to str.isdigit, not to int()
        "bytes=-\u0663",  # an Arabic-Indic three: int() takes it, HTTP does not
        "bytes=1-2," + " " * 80 + "x",  # long: parsed without the cache, still refused
    ],
)
def test_malformed_range(header: str) -> None:
    for _ in range(2):  # a refusal is not cached: the same answer the second time
        with pytest.raises(RangeError):
            parse_range(header, 100)


def test_content_range_text() -> None:
    assert ByteRange(0, 9, 100).content_range() == "bytes 0-9/100"
    assert ByteRange(0, 9, 100).size == 10


def test_not_modified() -> None:
    lm = 1_700_000_000.0
    assert not_modified('"a"', None, '"a"', lm)
    assert not_modified('"x", W/"a"', None, '"a"', lm)
    assert not_modified("*", None, '"a"', lm)
    assert not not_modified('"b"', None, '"a"', lm)
    assert not_modified(None, http_date(lm), '"a"', lm)
    assert not not_modified(None, http_date(lm - 10), '"a"', lm)
    # If-None-Match wins over If-Modified-Since
    assert not not_modified('"b"', http_date(lm), '"a"', lm)
    assert not not_modified(None, "garbage", '"a"', lm)


def test_if_range() -> None:
    lm = 1_700_000_000.0
    assert if_range_matches(None, '"a"', lm)
    assert if_range_matches('"a"', '"a"', lm)
    assert not if_range_matches('W/"a"', '"a"', lm)
    assert not if_range_matches('"b"', '"a"', lm)
    assert if_range_matches(http_date(lm), '"a"', lm)
    assert not if_range_matches(http_date(lm + 1), '"a"', lm)


@pytest.mark.parametrize(
    ("path", "ctype"),
    [
        ("/v/a/master.m3u8", "application/vnd.apple.mpegurl"),
        ("/v/a/manifest.mpd", "application/dash+xml"),
        ("/v/a/r/init.mp4", "video/mp4"),
        ("/v/a/r/seg-00001.m4s", "video/iso.segment"),
        ("/v/a/subs/en.vtt", "text/vtt"),
        ("/v/a/thumbs/poster.jpg", "image/jpeg"),
        ("/v/a/blob", "application/octet-stream"),
    ],
)
def test_content_types(path: str, ctype: str) -> None:
    assert content_type_for(path) == ctype
