"""Heads of plain full hits: rendered once per object, Date and Age once per second."""

from __future__ import annotations

from appliance.respond import HitHeads
from appliance.store import new_meta

STORED_AT = 1_700_000_000.75


def test_the_head_is_reused_within_a_second_and_renewed_after() -> None:
    heads = HitHeads("*")
    meta = new_meta([b"x" * 10], 10, "video/mp4", '"e1"', 0.0, "public", 2**20, now=STORED_AT)
    a = heads.full(meta, meta.object_id, True, STORED_AT + 5.1)
    b = heads.full(meta, meta.object_id, True, STORED_AT + 5.2)
    assert a is b  # same second: the very same bytes, nothing formatted
    c = heads.full(meta, meta.object_id, True, STORED_AT + 6.3)
    assert c != a
    text = c.decode("latin-1")
    assert text.startswith("HTTP/1.1 200 OK\r\n")
    # Age in whole seconds of the clock: int(now) - int(stored_at), never below the elapsed
    # whole seconds (6.3 s elapsed -> 1700000007 - 1700000000 = 7).
    assert "\r\nAge: 7\r\n" in text
    assert "Content-Length: 10\r\n" in text and "Access-Control-Allow-Origin: *\r\n" in text
    assert text.endswith("\r\n\r\n")


def test_keep_alive_and_close_heads_are_kept_apart() -> None:
    heads = HitHeads("")
    meta = new_meta([b"y" * 4], 4, "video/mp4", '"e2"', 0.0, "public", 2**20)
    keep = heads.full(meta, meta.object_id, True, 1000.0)
    close = heads.full(meta, meta.object_id, False, 1000.0)
    assert b"Connection: close\r\n" in close and b"Connection: close" not in keep
