"""The job shapes (pure): payload and result round trips, the fan-out from a plan, the fan-in,
and payloads this version cannot read."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

from origin.catalog import Rendition, Video
from origin.catalog.rows import dump_json
from origin.config import PipelineConfig
from origin.media.chunks import plan_chunks
from origin.media.complexity import Complexity
from origin.media.ladder import plan_ladder
from origin.media.probe import ProbeResult
from origin.media.tracks import SubtitleTrack, Tracks
from origin.pipeline.errors import Rejected
from origin.pipeline.jobs import (
    ANALYSE,
    AUDIO_KEY,
    ENCODE_AUDIO,
    ENCODE_CHUNK,
    NOTIFY,
    PUBLISH,
    AnalysePayload,
    Analysis,
    PlanPayload,
    PublishPayload,
    analyse_job,
    chunk_key,
    encode_jobs,
    notify_job,
    package_job,
    probe_from_json,
    probe_to_json,
    publish_job,
    rung_groups,
)

TRACKS = Tracks(
    audio_language="fre",
    audio_label="Français",
    subtitles=(SubtitleTrack(2, "subrip", "eng", "English SDH"),),
    skipped=("subtitle stream 3: hdmv_pgs_subtitle is not a text format",),
)


def probe(
    *, audio: bool = True, seconds: float = 10.0, size: tuple[int, int] = (1280, 720)
) -> ProbeResult:
    return ProbeResult(
        format_name="matroska,webm",
        size_bytes=1_000_000,
        duration=seconds,
        video_codec="h264",
        video_index=0,
        video_start=0.0,
        width=size[0],
        height=size[1],
        sample_aspect=Fraction(1),
        fps=Fraction(30000, 1001),
        pix_fmt="yuv420p",
        rotation=0,
        has_audio=audio,
        audio_index=1 if audio else None,
        audio_codec="aac" if audio else None,
        audio_channels=2 if audio else None,
        audio_sample_rate=48000 if audio else None,
        audio_start=0.0 if audio else None,
        audio_duration=seconds if audio else None,
    )


def analysis(**kwargs: Any) -> Analysis:
    p = probe(**kwargs)
    return Analysis(
        probe=p,
        tracks=TRACKS,
        complexity=Complexity(kbps=512.5, samples_kbps=(400.0, 625.0)),
        rungs=tuple(plan_ladder(*p.display_size, 512.5)),
        plan=plan_chunks(p, chunk_seconds=4),
    )


def through_json(value: Any) -> Any:
    """What the catalog stores and gives back."""
    return json.loads(dump_json(value))


def test_probe_round_trips_with_exact_fractions() -> None:
    p = probe()
    data = through_json(probe_to_json(p))
    assert data["fps"] == "30000/1001"
    assert probe_from_json(data) == p
    with pytest.raises(ValueError, match="probe fields differ"):
        probe_from_json({**data, "surprise": 1})


def test_analysis_round_trips() -> None:
    a = analysis()
    assert Analysis.from_json(through_json(a.to_json())) == a
    payload = AnalysePayload.from_json(through_json(analyse_job(a.probe, TRACKS, 3).payload))
    assert (payload.probe, payload.tracks) == (a.probe, TRACKS)


RUNGS = ["h264-240p", "h264-360p", "h264-540p", "h264-720p"]


@pytest.mark.parametrize(
    ("per_job", "keys", "groups"),
    [
        (0, ["encode:chunk-0000"], [RUNGS]),
        (1, [f"encode:{r}:chunk-0000" for r in RUNGS], [[r] for r in RUNGS]),
        (
            3,
            ["encode:h264-240p+h264-360p+h264-540p:chunk-0000", "encode:h264-720p:chunk-0000"],
            [RUNGS[:3], RUNGS[3:]],
        ),
        (4, ["encode:h264-240p+h264-360p+h264-540p+h264-720p:chunk-0000"], [RUNGS]),
        (9, ["encode:h264-240p+h264-360p+h264-540p+h264-720p:chunk-0000"], [RUNGS]),
    ],
)
def test_fan_out_is_one_job_per_chunk_and_rung_group_plus_audio(
    per_job: int, keys: list[str], groups: list[list[str]]
) -> None:
    a = analysis()
    assert [r.name for r in a.rungs] == RUNGS
    assert [c.frames for c in a.plan.chunks] == [120, 120, 59]  # 299 whole frames at 29.97
    specs = encode_jobs(17, a, max_attempts=4, rungs_per_job=per_job)
    chunks = [s for s in specs if s.kind == ENCODE_CHUNK]
    assert len(chunks) == 3 * len(groups)
    assert len({s.key for s in specs}) == len(specs)
    assert [s.key for s in chunks[: len(groups)]] == keys  # chunk-major: early seconds first
    assert [s.payload["rungs"] for s in chunks[: len(groups)]] == groups
    assert chunks[-1].payload == {"analysis_job": 17, "rungs": groups[-1], "chunk": 2}
    assert chunks[-1].key == keys[-1].replace("chunk-0000", "chunk-0002")
    assert (specs[-1].kind, specs[-1].key, specs[-1].payload) == (
        ENCODE_AUDIO,
        AUDIO_KEY,
        {"analysis_job": 17},
    )
    assert {s.max_attempts for s in specs} == {4}
    # Deterministic: the same plan makes the same specs (enqueue stays idempotent).
    again = encode_jobs(17, Analysis.from_json(through_json(a.to_json())), 4, per_job)
    assert again == specs
    # Every rung of every chunk is encoded by exactly one job.
    pieces = [(r, s.payload["chunk"]) for s in chunks for r in s.payload["rungs"]]
    assert sorted(pieces) == sorted((r, c.index) for r in RUNGS for c in a.plan.chunks)


def test_the_default_is_every_rung_of_a_chunk_in_one_job() -> None:
    a = analysis()
    assert encode_jobs(17, a, 4) == encode_jobs(17, a, 4, rungs_per_job=0)
    assert PipelineConfig().rungs_per_job == 0


def test_rung_groups_and_keys() -> None:
    rungs = tuple(analysis().rungs)
    assert rung_groups(rungs, 0) == (rungs,)
    assert rung_groups(rungs, 2) == (rungs[:2], rungs[2:])
    assert rung_groups((), 0) == ()
    with pytest.raises(ValueError):
        rung_groups(rungs, -1)
    assert chunk_key(None, 3) == "encode:chunk-0003"
    assert chunk_key(["h264-240p"], 3) == "encode:h264-240p:chunk-0003"
    with pytest.raises(ValueError):
        chunk_key([], 3)


@pytest.mark.parametrize("per_job", [0, 1, 2])
def test_every_chunk_payload_names_pieces_of_the_plan(per_job: int) -> None:
    a = analysis()
    for spec in encode_jobs(17, a, 3, per_job)[:-1]:
        payload = PlanPayload.from_json(through_json(spec.payload))
        assert payload.rungs and payload.chunk is not None
        assert [a.rung(name).name for name in payload.rungs] == list(payload.rungs)
        assert a.chunk(payload.chunk).index == payload.chunk


def test_a_one_rung_payload_of_the_previous_version_is_read() -> None:
    old = {"analysis_job": 17, "rung": "h264-360p", "chunk": 2}
    assert PlanPayload.from_json(old) == PlanPayload(17, ("h264-360p",), 2)
    assert PlanPayload.from_json({"analysis_job": 17}) == PlanPayload(17, (), None)


def test_a_silent_title_has_no_audio_job_and_fans_in_on_chunks_only() -> None:
    silent = analysis(audio=False)
    assert [s.kind for s in encode_jobs(1, silent, 3)].count(ENCODE_AUDIO) == 0
    assert silent.fan_in == (ENCODE_CHUNK,)
    assert analysis().fan_in == (ENCODE_CHUNK, ENCODE_AUDIO)


def test_the_fan_in_enqueues_the_same_package_job_from_every_encode_job() -> None:
    assert package_job(17, 3) == package_job(17, 3)
    assert package_job(17, 3).payload == {"analysis_job": 17}


def test_publish_and_notify_payloads() -> None:
    renditions = [
        Rendition("h264-360p", "video", "h264", 640, 360, 900_000, 800_000, "avc1.64001e"),
        Rendition("subs-eng", "subtitle", "webvtt", language="en"),
    ]
    spec = publish_job(Path("/m/.staging/v.x"), renditions, 3)
    assert spec.kind == PUBLISH
    payload = PublishPayload.from_json(through_json(spec.payload))
    assert (str(payload.staging), list(payload.renditions)) == ("/m/.staging/v.x", renditions)
    video = Video("vid", "T", "", (), "READY", None, 4.0, 640, 360, "/src", 1.0, 2.5, 2.5, 0, None)
    notify = notify_job(video, 3)
    assert (notify.kind, notify.payload) == (
        NOTIFY,
        {"event": "video.ready", "video_id": "vid", "updated_at": 2.5},
    )


@pytest.mark.parametrize(
    ("reader", "payload"),
    [
        (PlanPayload.from_json, {}),
        (PlanPayload.from_json, {"analysis_job": "seventeen"}),
        (PlanPayload.from_json, {"analysis_job": 1, "rungs": "h264-240p", "chunk": 0}),
        (PlanPayload.from_json, {"analysis_job": 1, "rungs": ["a", "a"], "chunk": 0}),
        (AnalysePayload.from_json, {"probe": {}, "tracks": {}}),
        (PublishPayload.from_json, {"staging": "/x", "renditions": [{"name": "../up"}]}),
        (
            PublishPayload.from_json,
            {"staging": "/x", "renditions": [{"name": "../up", "kind": "video", "codec": "h264"}]},
        ),
    ],
)
def test_unreadable_payloads_are_rejected_for_good(reader: Any, payload: dict[str, Any]) -> None:
    with pytest.raises(Rejected, match="cannot read the"):
        reader(payload)


def test_names_outside_the_plan_are_rejected() -> None:
    a = analysis()
    with pytest.raises(Rejected, match="no rung 'h264-4320p'"):
        a.rung("h264-4320p")
    with pytest.raises(Rejected, match="no chunk 3"):
        a.chunk(3)
    assert analyse_job(a.probe, TRACKS, 3).kind == ANALYSE
