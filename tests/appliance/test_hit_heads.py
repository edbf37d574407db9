"""Heads of plain full hits: rendered once per object, Date and Age when their second changes."""

from __future__ import annotations

from appliance.respond import HitHeads
from appliance.store import new_meta

STORED_AT = 1_700_000_000.75


def _age(head: bytes) -> int:
    return int(head.split(b"\r\nAge: ")[1].split(b"\r\n")[0])


def test_the_head_is_reused_while_date_and_age_stay_and_renewed_when_either_moves() -> None:
    heads = HitHeads("*")
    meta = new_meta([b"x" * 10], 10, "video/mp4", '"e1"', 0.0, "public", 2**20, now=STORED_AT)
    # stored at .75 of a second: Date's second changes at .0, Age's at .75
    a = heads.full(meta, meta.object_id, True, STORED_AT + 5.05)  # 1700000005.80, age 5.05
    b = heads.full(meta, meta.object_id, True, STORED_AT + 5.15)  # same Date, same Age
    assert a is b and _age(a) == 5  # the very same bytes, nothing formatted
    c = heads.full(meta, meta.object_id, True, STORED_AT + 5.30)  # next Date second, age 5.30
    assert c is not a and _age(c) == 5 and c.split(b"Date: ")[1] != a.split(b"Date: ")[1]
    d = heads.full(meta, meta.object_id, True, STORED_AT + 6.10)  # same Date second, age 6.10
    assert d is not c and _age(d) == 6  # exact whole seconds since stored, never stale
    text = d.decode("latin-1")
    assert text.startswith("HTTP/1.1 200 OK\r\n")
    assert "Content-Length: 10\r\n" in text and "Access-Control-Allow-Origin: *\r\n" in text
    assert text.endswith("\r\n\r\n")


def test_keep_alive_and_close_heads_are_kept_apart() -> None:
    heads = HitHeads("")
    meta = new_meta([b"y" * 4], 4, "video/mp4", '"e2"', 0.0, "public", 2**20)
    keep = heads.full(meta, meta.object_id, True, 1000.0)
    close = heads.full(meta, meta.object_id, False, 1000.0)
    assert b"Connection: close\r\n" in close and b"Connection: close" not in keep
