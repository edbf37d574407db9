"""Output cadence and chunk planning (pure), argv builders, and real chunk joins (x264, x265)."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import pytest

from origin.media.chunks import (
    Chunk,
    ChunkPlan,
    TooShort,
    audio_filter,
    audio_sample_limit,
    check_length,
    codec_args,
    concat_chunks,
    concat_list,
    encode_audio,
    encode_chunks,
    frame_count,
    gop_frames,
    output_fps,
    plan_chunks,
    rungs_args,
    split_frames,
    video_args,
)
from origin.media.ladder import ReferenceRung, Rung, plan_ladder
from origin.media.probe import ProbeRejected, ProbeResult, probe_file
from origin.media.tools import MediaError, Tools
from tests.origin.media.conftest import keyframe_times

F = Fraction


def probe_result(**changes: object) -> ProbeResult:
    base = ProbeResult(
        format_name="mov,mp4,m4a,3gp,3g2,mj2",
        size_bytes=1000,
        duration=10.0,
        video_codec="h264",
        video_index=0,
        video_start=0.0,
        width=640,
        height=360,
        sample_aspect=F(1),
        fps=F(25),
        pix_fmt="yuv420p",
        rotation=0,
        has_audio=True,
        audio_index=1,
        audio_start=0.0,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("source", "out"),
    [
        (F(25), F(25)),
        (F(24000, 1001), F(24000, 1001)),
        (F(2987, 100), F(30000, 1001)),  # a phone's variable rate
        (F(50), F(50)),
        (F(120), F(60)),
        (F(240), F(60)),
        (F(120000, 1001), F(60000, 1001)),
        (F(15), F(15)),
        (F(25, 2), F(25, 2)),
        (F(1, 3), F(1)),
    ],
)
def test_output_fps(source: Fraction, out: Fraction) -> None:
    assert output_fps(source) == out


@pytest.mark.parametrize(
    ("fps", "gop"), [(F(25), 50), (F(24000, 1001), 48), (F(30000, 1001), 60), (F(60), 120)]
)
def test_gop_is_two_seconds_of_frames(fps: Fraction, gop: int) -> None:
    assert gop_frames(fps) == gop


def test_frame_count_tolerates_float_rounding() -> None:
    assert frame_count(9.99999, F(25)) == 250
    assert frame_count(10.03, F(25)) == 250
    assert frame_count(10.0, F(30000, 1001)) == 299


def test_split_frames_cuts_whole_gops_and_leaves_the_rest_last() -> None:
    assert split_frames(250, 50, 2) == (Chunk(0, 0, 100), Chunk(1, 100, 100), Chunk(2, 200, 50))
    assert split_frames(100, 50, 2) == (Chunk(0, 0, 100),)
    assert split_frames(30, 50, 6) == (Chunk(0, 0, 30),)
    chunks = split_frames(7211, 48, 6)
    assert sum(c.frames for c in chunks) == 7211
    assert all(c.start_frame % 48 == 0 for c in chunks)
    assert all(c.frames == 288 for c in chunks[:-1])
    with pytest.raises(ValueError):
        split_frames(0, 50, 2)


def test_plan_chunks_for_a_ntsc_source() -> None:
    probe = probe_result(duration=60.06, fps=F(30000, 1001), video_start=0.033)
    plan = plan_chunks(probe)
    assert (plan.fps, plan.gop_frames, plan.total_frames) == (F(30000, 1001), 60, 1800)
    assert [c.frames for c in plan.chunks] == [360] * 5
    assert plan.duration == F(1800 * 1001, 30000)
    assert plan.start_seconds(plan.chunks[1]) == F(360 * 1001, 30000)
    # half a frame early, on the file's clock
    assert plan.seek_seconds(plan.chunks[1]) == pytest.approx(0.033 + 12.012 - 0.5 * 1001 / 30000)
    assert plan.seek_seconds(plan.chunks[0]) == 0.0
    assert ChunkPlan.from_dict(plan.as_dict()) == plan


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"duration": 0.0083, "fps": F(120)}, "no whole frame at 60 fps in 0.008 s"),
        ({"duration": 0.0, "fps": F(25)}, "no whole frame at 25 fps in 0.000 s"),
        (
            {"duration": 0.0167, "fps": F(60)},
            "1 frame(s), 0.017 s, less than one audio frame (1024 samples at 48000 Hz)",
        ),
    ],
)
def test_a_source_with_nothing_to_encode_is_rejected(
    changes: dict[str, object], reason: str
) -> None:
    probe = probe_result(**changes)
    for check in (check_length, plan_chunks):
        with pytest.raises(TooShort) as info:
            check(probe)
        assert isinstance(info.value, ProbeRejected)  # permanent: no retries
        assert info.value.reason == f"the video is too short: {reason}"


def test_one_frame_without_audio_is_enough() -> None:
    probe = probe_result(duration=0.0167, fps=F(60), has_audio=False, audio_index=None)
    check_length(probe)
    assert plan_chunks(probe).total_frames == 1


async def test_encode_audio_refuses_less_than_one_aac_frame(tools: Tools, tmp_path: Path) -> None:
    with pytest.raises(TooShort, match="less than one audio frame"):
        await encode_audio(
            tools, tmp_path / "in.mp4", probe_result(), tmp_path / "a.mp4", duration_limit=F(1, 60)
        )


def test_plan_chunks_halves_high_frame_rates() -> None:
    plan = plan_chunks(probe_result(duration=10.0, fps=F(120)), chunk_seconds=4)
    assert (plan.fps, plan.gop_frames, plan.total_frames) == (F(60), 120, 600)
    assert [c.frames for c in plan.chunks] == [240, 240, 120]
    # half a *source* frame before the boundary: never picks the previous source frame
    assert plan.seek_seconds(plan.chunks[1]) == pytest.approx(4.0 - 0.5 / 120)


def rung(codec: str = "h264", width: int = 320, height: int = 180) -> Rung:
    name = f"{codec}-{height}p"
    return Rung(name, codec, width, height, 300, 450, 600)  # type: ignore[arg-type]


def test_video_args_fix_the_gop_and_the_frame_count() -> None:
    plan = plan_chunks(probe_result(), chunk_seconds=4)
    args = video_args(Path("ffmpeg"), Path("in.mp4"), plan, plan.chunks[1], rung(), Path("o.mp4"))
    text = " ".join(args)
    assert "-ss 3.980000 -i in.mp4" in text  # input seeking, before -i
    assert "-frames:v 100" in text
    assert "setpts=PTS-STARTPTS,fps=25,scale=320:180,setsar=1,format=yuv420p" in text
    assert "keyint=50:min-keyint=50:scenecut=0:open-gop=0:stitchable=1" in text
    assert "-force_key_frames expr:eq(mod(n,50),0)" in text
    assert "-b:v 300k -maxrate 450k -bufsize 600k" in text
    first = video_args(Path("f"), Path("i"), plan, plan.chunks[0], rung(), Path("o"))
    assert "-ss" not in first
    with pytest.raises(ValueError):
        video_args(Path("f"), Path("i"), plan, plan.chunks[0], rung(), Path("o"), preset="x")


def test_codec_args_per_codec() -> None:
    hevc = " ".join(codec_args(rung("hevc"), 48, preset="veryfast", threads=1))
    assert "libx265" in hevc and "-tag:v hvc1" in hevc
    assert "keyint=48:min-keyint=48:scenecut=0:open-gop=0:pools=1:frame-threads=1" in hevc
    av1 = " ".join(codec_args(rung("av1"), 48, preset="veryfast", threads=2))
    assert "libsvtav1 -preset 10" in av1 and "-maxrate" not in av1
    assert "keyint=48:scd=0:irefresh-type=2:lp=2" in av1


def test_audio_is_cut_to_whole_aac_frames_inside_the_video() -> None:
    assert audio_sample_limit(F(10)) == 468 * 1024  # 9.984 s <= 10 s
    assert audio_sample_limit(F(1024, 48000)) == 1024
    assert audio_sample_limit(F(1023, 48000)) == 0
    for frames in range(1, 2000, 37):
        limit = F(frames * 1001, 30000)
        samples = audio_sample_limit(limit)
        assert samples % 1024 == 0
        assert F(samples, 48000) <= limit < F(samples + 1024, 48000)


def test_audio_filter_puts_audio_on_the_video_clock() -> None:
    late = audio_filter(probe_result(audio_start=0.25, video_start=0.0), 1024)
    assert "adelay=delays=250:all=1" in late and late.endswith("atrim=end_sample=1024")
    early = audio_filter(probe_result(audio_start=0.0, video_start=0.1), 2048)
    assert "atrim=start=0.100000,asetpts=PTS-STARTPTS" in early
    assert "channel_layouts=stereo" in early and "sample_rates=48000" in early


def test_concat_list_quotes_paths(tmp_path: Path) -> None:
    text = concat_list([tmp_path / "a.mp4", tmp_path / "it's.mp4"])
    assert text.splitlines()[0] == "ffconcat version 1.0"
    assert f"file '{tmp_path}/it'\\''s.mp4'" in text


async def test_hevc_chunks_join_with_aligned_idr_frames(
    tools: Tools, small_clip: Path, tmp_path: Path
) -> None:
    probe = await probe_file(tools, small_clip)
    plan = plan_chunks(probe, chunk_seconds=2)
    assert [c.frames for c in plan.chunks] == [50, 50]
    [hevc] = plan_ladder(320, 180, None, reference=[ReferenceRung(180, 200, "hevc")])
    paths = [tmp_path / f"{c.index}.mp4" for c in plan.chunks]
    await asyncio.gather(
        *(
            encode_chunks(tools, small_clip, plan, c, [(hevc, p)], preset="ultrafast")
            for c, p in zip(plan.chunks, paths, strict=True)
        )
    )
    joined = await concat_chunks(tools, paths, tmp_path / "hevc.mp4", expected_frames=100)
    assert (joined.codec, joined.width, joined.height, joined.packets) == ("hevc", 320, 180, 100)
    assert keyframe_times(tools, tmp_path / "hevc.mp4") == [0.0, 2.0]


async def test_chunks_with_different_parameters_are_not_joined(
    tools: Tools, small_clip: Path, tmp_path: Path
) -> None:
    probe = await probe_file(tools, small_clip)
    plan = plan_chunks(probe, chunk_seconds=2)
    a, b = tmp_path / "a.mp4", tmp_path / "b.mp4"
    await encode_chunks(tools, small_clip, plan, plan.chunks[0], [(rung(), a)], preset="ultrafast")
    other = replace(rung(), width=256, height=144)
    await encode_chunks(tools, small_clip, plan, plan.chunks[1], [(other, b)], preset="ultrafast")
    with pytest.raises(MediaError, match="codec parameters differ"):
        await concat_chunks(tools, [a, b], tmp_path / "joined.mp4")


async def test_a_chunk_past_the_end_fails_its_frame_check(
    tools: Tools, small_clip: Path, tmp_path: Path
) -> None:
    probe = await probe_file(tools, small_clip)
    plan = plan_chunks(replace(probe, duration=8.0), chunk_seconds=4)  # the clip has 4 s
    with pytest.raises(MediaError, match="expected 100") as info:
        await encode_chunks(
            tools,
            small_clip,
            plan,
            plan.chunks[1],
            [(rung(), tmp_path / "x.mp4")],
            preset="ultrafast",
        )
    assert info.value.step == "encode h264-180p chunk 1"


def output_options(args: list[str], out: str, previous: str) -> list[str]:
    """The options of the output file ``out``: what follows ``previous`` (the file before it,
    or the filter graph) up to ``out``."""
    start = args.index(previous) + 1
    return args[start : args.index(out)]


def test_rungs_args_decode_once_and_encode_each_rung_as_it_would_alone() -> None:
    plan = plan_chunks(probe_result(video_index=2), chunk_seconds=4)
    rungs = [rung(), rung(width=640, height=360), rung("hevc", 1280, 720)]
    outs = [(r, Path(f"{r.name}.mp4")) for r in rungs]
    args = rungs_args(
        Path("ffmpeg"), Path("in.mp4"), plan, plan.chunks[1], outs, preset="fast", threads=2
    )
    assert args.count("-i") == 1 and "-ss 3.980000 -i in.mp4" in " ".join(args)
    graph = args[args.index("-filter_complex") + 1]
    assert graph == (
        "[0:2]setpts=PTS-STARTPTS,fps=25,split=3[s0][s1][s2];"
        "[s0]scale=320:180,setsar=1,format=yuv420p[v0];"
        "[s1]scale=640:360,setsar=1,format=yuv420p[v1];"
        "[s2]scale=1280:720,setsar=1,format=yuv420p[v2]"
    )
    assert "-filter_complex_threads 2" in " ".join(args)
    previous = graph
    for i, (r, out) in enumerate(outs):
        options = output_options(args, str(out), previous)
        assert options[:2] == ["-map", f"[v{i}]"]
        assert " ".join(options).count("-frames:v 100") == 1
        # exactly the encoder options of this rung alone: rate, VBV, keyframes, threads
        codec = codec_args(r, plan.gop_frames, preset="fast", threads=2)
        assert options[-len(codec) :] == codec
        previous = str(out)
    assert args[-1] == "hevc-720p.mp4"
    # One rung is today's one-rung argv.
    one = rungs_args(Path("f"), Path("i"), plan, plan.chunks[0], outs[:1])
    assert one == video_args(Path("f"), Path("i"), plan, plan.chunks[0], rungs[0], outs[0][1])
    with pytest.raises(ValueError, match="named twice"):
        rungs_args(Path("f"), Path("i"), plan, plan.chunks[0], [outs[0], outs[0]])
    with pytest.raises(ValueError, match="no rungs"):
        rungs_args(Path("f"), Path("i"), plan, plan.chunks[0], [])
    with pytest.raises(ValueError, match="preset"):
        rungs_args(Path("f"), Path("i"), plan, plan.chunks[0], outs, preset="x")


async def test_several_rungs_of_mixed_codecs_from_one_decode_join_with_aligned_idrs(
    tools: Tools, small_clip: Path, tmp_path: Path
) -> None:
    probe = await probe_file(tools, small_clip)
    plan = plan_chunks(probe, chunk_seconds=2)
    rungs = [rung(width=256, height=144), rung(), rung("hevc")]
    paths = {r.name: [tmp_path / f"{r.name}-{c.index}.mp4" for c in plan.chunks] for r in rungs}
    for c in plan.chunks:
        outs = [(r, paths[r.name][c.index]) for r in rungs]
        checks = await encode_chunks(tools, small_clip, plan, c, outs, preset="ultrafast")
        got = [(k.codec, k.width, k.height, k.packets) for k in checks]
        assert got == [(r.codec, r.width, r.height, 50) for r in rungs]
    for r in rungs:
        out = tmp_path / f"{r.name}.mp4"
        joined = await concat_chunks(tools, paths[r.name], out, expected_frames=100)
        assert (joined.codec, joined.width, joined.height) == (r.codec, r.width, r.height)
        assert keyframe_times(tools, out) == [0.0, 2.0]


async def test_every_output_of_a_chunk_past_the_end_fails_its_frame_check(
    tools: Tools, small_clip: Path, tmp_path: Path
) -> None:
    probe = await probe_file(tools, small_clip)
    plan = plan_chunks(replace(probe, duration=8.0), chunk_seconds=4)  # the clip has 4 s
    outs = [(rung(), tmp_path / "a.mp4"), (rung(width=256, height=144), tmp_path / "b.mp4")]
    with pytest.raises(MediaError, match="expected 100") as info:
        await encode_chunks(tools, small_clip, plan, plan.chunks[1], outs, preset="ultrafast")
    assert info.value.step == "encode h264-180p+h264-144p chunk 1"
    assert "h264-180p: wrote" in str(info.value) and "h264-144p: wrote" in str(info.value)
