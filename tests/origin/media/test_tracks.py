"""Languages and subtitle tracks of an upload: ffprobe's stream list parsed, and real tracks
found and converted to WebVTT."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from origin.media.probe import probe_with_json
from origin.media.tools import Tools
from origin.media.tracks import (
    SubtitleTrack,
    Tracks,
    extract_subtitle,
    label_text,
    language_tag,
    parse_tracks,
)


def stream(index: int, kind: str, codec: str, default: int = 0, **tags: str) -> dict[str, Any]:
    return {
        "index": index,
        "codec_type": kind,
        "codec_name": codec,
        "disposition": {"default": default},
        "tags": tags,
    }


def test_languages_and_text_subtitles_pass_through() -> None:
    data = {
        "streams": [
            stream(0, "video", "h264"),
            stream(1, "audio", "aac", language="fre", title="Français, stéréo"),
            stream(2, "audio", "ac3", language="eng"),
            stream(3, "subtitle", "subrip", language="eng"),
            stream(4, "subtitle", "hdmv_pgs_subtitle", language="ger"),
            stream(5, "subtitle", "ass", default=1, language="eng", title="English SDH"),
            stream(6, "subtitle", "mov_text", language="pt-BR"),
            stream(7, "subtitle", "webvtt"),
        ]
    }
    assert parse_tracks(data, audio_index=1) == Tracks(
        audio_language="fre",
        audio_label="Français stéréo",
        subtitles=(
            SubtitleTrack(5, "ass", "eng", "English SDH"),  # the default one wins its language
            SubtitleTrack(6, "mov_text", "pt-br", "pt-br"),
            SubtitleTrack(7, "webvtt", "en", "en"),  # untagged: the default language
        ),
        skipped=(
            "subtitle stream 3: a second eng track",
            "subtitle stream 4: hdmv_pgs_subtitle is not a text format",
        ),
    )
    assert parse_tracks(data, audio_index=2).audio_language == "eng"


def test_untagged_and_silent_sources_get_the_default_language() -> None:
    untagged = {"streams": [stream(0, "video", "h264"), stream(1, "audio", "aac", language="und")]}
    assert parse_tracks(untagged, 1) == Tracks("en", "en", ())
    assert parse_tracks({}, None, default_language="de") == Tracks("de", "de", ())
    with pytest.raises(ValueError, match="default language"):
        parse_tracks({}, None, default_language="und")


@pytest.mark.parametrize(
    ("tag", "language"),
    [("ENG", "eng"), ("pt_BR", "pt-br"), ("und", "en"), ("", "en"), ("english", "en"),
     ("e,n", "en"), (None, "en")],
)  # fmt: skip
def test_language_tag(tag: str | None, language: str) -> None:
    assert language_tag(tag) == language


def test_labels_lose_what_the_packager_cannot_carry() -> None:
    assert label_text('Commentary, "director" = fun\n', "en") == "Commentary director fun"
    assert label_text(",,,", "en") == "en"
    assert len(label_text("x" * 500, "en")) == 64


@pytest.fixture
def tracked_clip(tools: Tools, tmp_path: Path) -> Path:
    """2 s of video, Spanish audio, an English SubRip track."""
    srt = tmp_path / "a.srt"
    srt.write_text("1\n00:00:00,500 --> 00:00:01,500\nHello, world\n")
    src = tmp_path / "src.mkv"
    subprocess.run(
        [str(tools.ffmpeg), "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=160x90:d=2",
         "-f", "lavfi", "-i", "sine=d=2", "-i", str(srt), "-map", "0", "-map", "1", "-map", "2",
         "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", "-c:s", "srt",
         "-metadata:s:a:0", "language=spa", "-metadata:s:s:0", "language=eng", str(src)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return src


async def test_real_tracks_are_found_and_converted(
    tools: Tools, tracked_clip: Path, tmp_path: Path
) -> None:
    probe, data = await probe_with_json(tools, tracked_clip)  # the probe stage's one run
    assert probe.audio_index == 1
    tracks = parse_tracks(data, probe.audio_index)
    assert tracks == Tracks("spa", "spa", (SubtitleTrack(2, "subrip", "eng", "eng"),))
    out = tmp_path / "eng.vtt"
    await extract_subtitle(tools, tracked_clip, tracks.subtitles[0], out)
    text = out.read_text()
    assert text.startswith("WEBVTT")
    assert "00:00.500 --> 00:01.500\nHello, world" in text
