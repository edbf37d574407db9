"""Packager argv, bandwidth measurement and the master playlist rewrite (pure)."""

from __future__ import annotations

from pathlib import Path

import m3u8
import pytest

from origin.media.package import (
    AudioInput,
    Bandwidth,
    SubtitleInput,
    VideoInput,
    expected_files,
    fix_master_bandwidths,
    packager_args,
    rewrite_master,
    segment_bandwidth,
)

OUT = Path("/work/title/out")
VIDEOS = [VideoInput(n, Path(f"/work/title/{n}.mp4")) for n in ("h264-240p", "h264-360p")]
AUDIO = AudioInput(Path("/work/title/audio.mp4"))
SUBS = [SubtitleInput(Path("/work/title/fr.vtt"), "fr", "Français")]


def descriptors(args: list[str]) -> list[dict[str, str]]:
    return [dict(f.split("=", 1) for f in a.split(",")) for a in args if a.startswith("in=")]


def test_packager_args_name_files_per_the_layout() -> None:
    args = packager_args(Path("packager"), OUT, VIDEOS, AUDIO, SUBS)
    video, _, audio, text = descriptors(args)
    assert video == {
        "in": "../h264-240p.mp4",
        "stream": "video",
        "init_segment": "h264-240p/init.mp4",
        "segment_template": "h264-240p/seg-$Number%05d$.m4s",
        "playlist_name": "h264-240p/playlist.m3u8",
        "iframe_playlist_name": "h264-240p/iframe.m3u8",
    }
    assert audio["init_segment"] == "aac-128k-en/init.mp4"
    assert (audio["hls_group_id"], audio["hls_name"], audio["language"]) == (
        "audio",
        "English",
        "en",
    )
    assert text["segment_template"] == "subs/fr-$Number%05d$.vtt"
    assert text["playlist_name"] == "subs/fr.m3u8"
    joined = " ".join(args)
    assert "--segment_duration 6 --fragment_duration 2" in joined
    assert "--generate_static_live_mpd --hls_playlist_type VOD" in joined
    assert "--hls_master_playlist_output master.m3u8 --mpd_output manifest.mpd" in joined
    assert "subs/fr.vtt" in expected_files(VIDEOS, AUDIO, SUBS)


def test_packager_args_without_audio() -> None:
    args = packager_args(Path("packager"), OUT, VIDEOS[:1])
    assert [d["stream"] for d in descriptors(args)] == ["video"]
    assert "--default_language" not in args


@pytest.mark.parametrize(
    "bad",
    [
        {"videos": []},
        {"videos": [VideoInput("H264 360p", Path("/x.mp4"))]},
        {"videos": VIDEOS[:1] * 2},
        {"videos": [VideoInput("h264-240p", Path("/work/a,b.mp4"))]},
        {"subtitles": [SubtitleInput(Path("/s.vtt"), "en", "English,stream=video")]},
        {"subtitles": [SubtitleInput(Path("/s.vtt"), "../../etc", "x")]},
        {"audio": AudioInput(Path("/a.mp4"), language="english")},
    ],
)
def test_packager_args_refuse_what_would_break_a_descriptor(bad: dict[str, object]) -> None:
    kwargs: dict[str, object] = {"videos": VIDEOS, "audio": AUDIO, "subtitles": SUBS} | bad
    with pytest.raises(ValueError):
        packager_args(Path("packager"), OUT, **kwargs)  # type: ignore[arg-type]


def test_segment_bandwidth_is_peak_and_average() -> None:
    bw = segment_bandwidth([(750_000, 6.0), (300_000, 4.0), (0, 0.0)])
    assert bw == Bandwidth(peak=1_000_000, average=840_000)
    with pytest.raises(ValueError):
        segment_bandwidth([])


MASTER = """#EXTM3U
#EXT-X-STREAM-INF:BANDWIDTH=1000,AVERAGE-BANDWIDTH=900,CODECS="avc1.64001e,mp4a.40.2",RESOLUTION=640x360
h264-360p/playlist.m3u8
#EXT-X-STREAM-INF:BANDWIDTH=3000,CODECS="avc1.64001f,mp4a.40.2",RESOLUTION=1280x720

h264-720p/playlist.m3u8
#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=100,AVERAGE-BANDWIDTH=80,URI="h264-360p/iframe.m3u8"
"""


def test_rewrite_master_fixes_only_what_is_off() -> None:
    measured = {
        "h264-360p/playlist.m3u8": Bandwidth(1050, 950),  # within 10 %: kept
        "h264-720p/playlist.m3u8": Bandwidth(3100, 2500),  # no average declared: added
        "h264-360p/iframe.m3u8": Bandwidth(150, 81),  # peak 33 % off: rewritten
    }
    text, fixes = rewrite_master(MASTER, measured)
    assert [f.rewritten for f in fixes] == [False, True, True]
    assert fixes[1].declared is None
    lines = text.splitlines()
    assert lines[1] == MASTER.splitlines()[1]
    assert lines[3].startswith("#EXT-X-STREAM-INF:BANDWIDTH=3100,AVERAGE-BANDWIDTH=2500,CODECS=")
    iframe = '#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=150,AVERAGE-BANDWIDTH=81,URI="{}"'
    assert lines[6] == iframe.format("h264-360p/iframe.m3u8")
    master = m3u8.loads(text)
    assert [p.stream_info.average_bandwidth for p in master.playlists] == [900, 2500]


def test_fix_master_bandwidths_measures_the_files(tmp_path: Path) -> None:
    (tmp_path / "v").mkdir()
    (tmp_path / "a").mkdir()
    (tmp_path / "v" / "seg-1.m4s").write_bytes(b"x" * 6000)  # 8000 bit/s over 6 s
    (tmp_path / "v" / "seg-2.m4s").write_bytes(b"x" * 2000)  # 4000 bit/s over 4 s
    (tmp_path / "a" / "seg-1.m4s").write_bytes(b"x" * 750)  # 1000 bit/s
    media = "#EXTM3U\n#EXT-X-TARGETDURATION:6\n#EXTINF:{d},\n{u}\n"
    (tmp_path / "v" / "p.m3u8").write_text(
        "#EXTM3U\n#EXT-X-TARGETDURATION:6\n#EXTINF:6.0,\nseg-1.m4s\n#EXTINF:4.0,\nseg-2.m4s\n"
    )
    (tmp_path / "a" / "p.m3u8").write_text(media.format(d="6.0", u="seg-1.m4s"))
    (tmp_path / "master.m3u8").write_text(
        '#EXTM3U\n#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="audio",NAME="en",URI="a/p.m3u8"\n'
        '#EXT-X-STREAM-INF:BANDWIDTH=1,AVERAGE-BANDWIDTH=1,AUDIO="audio"\nv/p.m3u8\n'
    )
    [fix] = fix_master_bandwidths(tmp_path)
    assert fix.measured == Bandwidth(peak=9000, average=7400)
    assert fix.rewritten
    assert "BANDWIDTH=9000,AVERAGE-BANDWIDTH=7400," in (tmp_path / "master.m3u8").read_text()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
