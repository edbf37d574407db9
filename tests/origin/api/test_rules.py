"""The API's pure rules: Content-Range, queries, auth decisions, progress, and the ingest
client's progress display and retry delays."""

from __future__ import annotations

import io
import time
from datetime import UTC, datetime

import pytest

from origin import ingest
from origin.api.auth import Access, check
from origin.api.errors import ApiError
from origin.api.input import (
    PartRange,
    parse_content_range,
    parse_list_query,
    parse_time,
)
from origin.api.render import percent, stage, stage_counts
from origin.catalog import Job, Video, VideoStatus
from origin.catalog.models import JobState
from vodedge.bearer import bearer_ok, challenge


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, PartRange(0, 99, 100)),
        ("bytes 0-99/100", PartRange(0, 99, 100)),
        ("bytes 40-40/100", PartRange(40, 40, 100)),
        (" bytes 10-49/100 ", PartRange(10, 49, 100)),
    ],
)
def test_content_range_parts(value: str | None, expected: PartRange) -> None:
    part = parse_content_range(value, 100)
    assert part == expected and part.length == expected.end - expected.start + 1


@pytest.mark.parametrize(
    ("value", "code"),
    [
        ("bytes 0-99/101", "size_mismatch"),
        ("bytes 0-100/100", "bad_range"),
        ("bytes 9-8/100", "bad_range"),
        ("bytes */100", "bad_range"),
        ("bytes=0-9/100", "bad_range"),
        ("bytes -1-9/100", "bad_range"),
        ("bytes 0-9/100, bytes 10-19/100", "bad_range"),
        ("bytes 0-99999999999999999999999/100", "bad_range"),
    ],
)
def test_bad_content_ranges(value: str, code: str) -> None:
    with pytest.raises(ApiError) as e:
        parse_content_range(value, 100)
    assert (e.value.status, e.value.code) == (400, code)


def test_times_in_seconds_or_rfc3339() -> None:
    assert parse_time("1718000000.5", "t") == 1718000000.5
    when = datetime(2024, 6, 10, 6, 13, 20, tzinfo=UTC).timestamp()
    assert parse_time("2024-06-10T06:13:20Z", "t") == when
    assert parse_time("2024-06-10T08:13:20+02:00", "t") == when
    assert parse_time(None, "t") is None and parse_time("", "t") is None
    for bad in ("inf", "-1", "2024-06-10", "soon"):
        with pytest.raises(ApiError):
            parse_time(bad, "t")


def test_list_query_defaults_and_values() -> None:
    q = parse_list_query({})
    assert (q.status, q.limit, q.cursor, q.include_deleted) == (None, 100, None, False)
    q = parse_list_query({"status": "ready", "limit": "7", "include_deleted": "1"})
    assert (q.status, q.limit, q.include_deleted) == ("READY", 7, True)


def test_bearer_tokens() -> None:
    tokens = ("first-token-0123456", "second-token-012345")
    assert bearer_ok("Bearer second-token-012345", tokens)
    assert bearer_ok("bearer   first-token-0123456 ", tokens)
    assert bearer_ok("Bearer first-token-0123456", "first-token-0123456")
    # A non-ASCII token (aiohttp keeps undecodable header bytes as surrogates): just wrong.
    assert not bearer_ok("Bearer \udcff", tokens)
    assert not bearer_ok("Bearer first-token-0123456\u00e9", tokens)
    for header in (None, "", "Bearer", "Bearer ", "Basic first-token-0123456", "first-token"):
        assert not bearer_ok(header, tokens), header
    assert not bearer_ok("Bearer first-token-012345", tokens)  # a prefix is not the token
    assert not bearer_ok("Bearer x", ("", "x"[:0]))
    assert not bearer_ok("Bearer anything", ())
    assert challenge("r") == 'Bearer realm="r"'
    assert challenge("r", token_given=True) == 'Bearer realm="r", error="invalid_token"'


@pytest.mark.parametrize(
    ("access", "header", "public_read", "allowed"),
    [
        (Access.OPEN, None, False, True),
        (Access.PUBLIC_READ, None, True, True),
        (Access.PUBLIC_READ, None, False, False),
        (Access.TOKEN, None, True, False),
        (Access.TOKEN, "Bearer tok-0123456789abcdef", False, True),
        (Access.TOKEN, "Bearer tok-0123456789abcdeF", False, False),
    ],
)
def test_access_decisions(
    access: Access, header: str | None, public_read: bool, allowed: bool
) -> None:
    tokens = ("tok-0123456789abcdef",)
    if allowed:
        check(access, header, tokens, public_read)
    else:
        with pytest.raises(ApiError) as e:
            check(access, header, tokens, public_read)
        assert e.value.status == 401 and "WWW-Authenticate" in e.value.headers


def video(status: VideoStatus) -> Video:
    now = time.time()
    return Video(
        "v",
        "t",
        "",
        (),
        status,
        None,
        None,
        None,
        None,
        None,
        now,
        now,
        None,
        0,
        None,
    )


def job(job_id: int, kind: str, state: JobState) -> Job:
    return Job(
        job_id,
        "v",
        kind,
        f"{kind}-{job_id}",
        {},
        state,
        0,
        3,
        None,
        None,
        0.0,
        None,
        (),
        None,
        0.0,
        0.0,
    )


def test_progress_per_stage_and_percent() -> None:
    jobs = [
        job(1, "probe", "done"),
        job(2, "encode_chunk", "done"),
        job(3, "encode_chunk", "leased"),
        job(4, "encode_chunk", "queued"),
        job(5, "analyse", "done"),
    ]
    counts = stage_counts(jobs)
    assert list(counts) == ["probe", "encode_chunk", "analyse"]
    assert (counts["encode_chunk"].done, counts["encode_chunk"].total) == (1, 3)
    assert percent(video("TRANSCODING"), counts) == 60.0
    assert stage(jobs) == "encode_chunk"
    every_done = stage_counts([job(1, "probe", "done")])
    assert percent(video("SEGMENTED"), every_done) == 99.0  # publishing still ahead
    assert percent(video("READY"), every_done) == 100.0
    assert percent(video("PENDING"), {}) == 0.0 and stage([]) is None


def test_ingest_progress_lines_and_bar() -> None:
    now = [100.0]
    log = io.StringIO()
    lines = ingest.Progress(10_000_000, log, tty=False, clock=lambda: now[0])
    lines.update(0)
    now[0] += 1
    lines.update(2_000_000)  # too soon for another line
    now[0] += ingest.LOG_EVERY_S
    lines.update(5_000_000)
    lines.update(10_000_000)  # the end is always shown
    assert log.getvalue().splitlines() == [
        "uploaded  50.0% 5.0MB/10.0MB 833.3KB/s",
        "uploaded 100.0% 10.0MB/10.0MB 1.7MB/s",
    ]
    bar = io.StringIO()
    drawn = ingest.Progress(100, bar, tty=True, clock=lambda: now[0])
    drawn.update(0)
    now[0] += 1
    drawn.update(50)
    drawn.update(60)  # too soon to redraw
    drawn.finish()
    frames = bar.getvalue().split("\r")[1:]
    assert frames[0].startswith("[###############...............]  50.0% 50B/100B 50B/s")
    assert frames[1].startswith("[##################............]  60.0%")
    assert len(frames) == 2 and bar.getvalue().endswith("\n")


def test_ingest_backoff_doubles_up_to_a_cap() -> None:
    delays = [ingest._backoff(n) for n in range(1, 9)]
    assert delays[:4] == [0.5, 1.0, 2.0, 4.0]
    assert max(delays) == ingest.BACKOFF_MAX_S
