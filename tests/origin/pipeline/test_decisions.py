"""The stages' pure decisions: how a failure is recorded, which way a status may move, which
rung makes the thumbnails, the rendition rows read from a master, which rendition a published
file belongs to, temporary names, and the notification body."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from origin.catalog import Invalid, NotFound, Rendition, VideoStatus
from origin.media.ladder import Rung
from origin.media.package import AudioInput, Bandwidth, SubtitleInput
from origin.media.probe import ProbeRejected
from origin.media.tools import MediaError
from origin.pipeline.errors import Rejected, Verdict, classify
from origin.pipeline.notify import body_of
from origin.pipeline.package import rendition_rows, thumbnail_rung
from origin.pipeline.publish import published_files, rendition_of
from origin.pipeline.stage import moves_forward
from origin.pipeline.workdir import WorkDir, output, temp_path
from origin.storage import StoredFile


@pytest.mark.parametrize(
    ("exc", "verdict"),
    [
        (Rejected("the source is missing"), Verdict("the source is missing", True, True)),
        (ProbeRejected("no video stream"), Verdict("no video stream", True, True)),
        (NotFound("no video 'x'"), Verdict("gone: no video 'x'", True, True)),
        (
            MediaError("encode h264-360p chunk 3", 1, "Conversion failed!"),
            Verdict("encode h264-360p chunk 3 exited with 1: Conversion failed!", False, True),
        ),
        (
            OSError(28, "No space left on device"),
            Verdict("OSError: [Errno 28] No space left on device", False, True),
        ),
        (Invalid("bad"), Verdict("Invalid: bad", False, False)),
        (KeyError("rung"), Verdict("KeyError: 'rung'", False, False)),
    ],
)
def test_classify(exc: Exception, verdict: Verdict) -> None:
    assert classify(exc) == verdict


@pytest.mark.parametrize(
    ("old", "new", "moves"),
    [
        ("PENDING", "SEGMENTED", True),
        ("PENDING", "TRANSCODING", True),
        ("SEGMENTED", "TRANSCODING", True),
        ("SEGMENTED", "SEGMENTED", False),
        ("TRANSCODING", "SEGMENTED", False),  # a late analyse redo never moves it back
        ("TRANSCODING", "TRANSCODING", False),  # the thousandth chunk writes nothing
        ("READY", "TRANSCODING", False),
        ("FAILED", "SEGMENTED", False),
    ],
)
def test_status_only_moves_forward(old: VideoStatus, new: VideoStatus, moves: bool) -> None:
    assert moves_forward(old, new) is moves


def rung(height: int, width: int | None = None) -> Rung:
    w = width if width is not None else height * 16 // 9 // 2 * 2
    return Rung(f"h264-{height}p", "h264", w, height, 1000, 1500, 2000)


def test_thumbnails_come_from_the_largest_rung_up_to_720p() -> None:
    assert thumbnail_rung([rung(240), rung(360)]).name == "h264-360p"
    assert thumbnail_rung([rung(360), rung(720), rung(1080)]).name == "h264-720p"
    assert thumbnail_rung([rung(1080), rung(1440)]).name == "h264-1080p"
    portrait = Rung("h264-720p", "h264", 720, 1280, 1000, 1500, 2000)  # short side 720
    assert thumbnail_rung([portrait]).name == "h264-720p"


MASTER = """#EXTM3U
## Generated with https://github.com/shaka-project/shaka-packager version v3.8.0
#EXT-X-INDEPENDENT-SEGMENTS
#EXT-X-MEDIA:TYPE=AUDIO,URI="aac-128k-fre/playlist.m3u8",GROUP-ID="audio",LANGUAGE="fr",\
NAME="fre",DEFAULT=YES,AUTOSELECT=YES,CHANNELS="2"
#EXT-X-MEDIA:TYPE=SUBTITLES,URI="subs/eng.m3u8",GROUP-ID="subs",LANGUAGE="en",NAME="eng",\
DEFAULT=YES,AUTOSELECT=YES
#EXT-X-STREAM-INF:BANDWIDTH=424854,AVERAGE-BANDWIDTH=400000,CODECS="avc1.64c015,mp4a.40.2",\
RESOLUTION=426x240,FRAME-RATE=25.000,AUDIO="audio",SUBTITLES="subs",CLOSED-CAPTIONS=NONE
h264-240p/playlist.m3u8
#EXT-X-STREAM-INF:BANDWIDTH=852384,AVERAGE-BANDWIDTH=800000,CODECS="avc1.64c01e,mp4a.40.2",\
RESOLUTION=640x360,FRAME-RATE=25.000,AUDIO="audio",SUBTITLES="subs",CLOSED-CAPTIONS=NONE
h264-360p/playlist.m3u8
#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=30784,AVERAGE-BANDWIDTH=29664,CODECS="avc1.64c015",\
RESOLUTION=426x240,URI="h264-240p/iframe.m3u8"
"""


def test_rendition_rows_are_what_the_master_declares() -> None:
    audio = AudioInput(Path("audio.mp4"), language="fre", label="fre")
    subs = [SubtitleInput(Path("eng.vtt"), "eng", "English")]
    rows = rendition_rows(
        MASTER, [rung(240), rung(360)], audio, Bandwidth(peak=131_000, average=129_000), subs
    )
    assert rows == [
        Rendition("h264-240p", "video", "h264", 426, 240, 424854, 400000, "avc1.64c015"),
        Rendition("h264-360p", "video", "h264", 640, 360, 852384, 800000, "avc1.64c01e"),
        Rendition("aac-128k-fre", "audio", "aac", None, None, 131_000, 129_000, "mp4a.40.2", "fr"),
        Rendition("subs-eng", "subtitle", "webvtt", language="en"),
    ]
    for row in rows:
        row.check()


def test_rendition_rows_refuse_a_master_that_differs_from_the_plan() -> None:
    with pytest.raises(ValueError, match="not in the plan"):
        rendition_rows(MASTER, [rung(240)], None, None, [])
    with pytest.raises(ValueError, match="lacks the renditions"):
        rendition_rows(MASTER, [rung(240), rung(360), rung(540)], None, None, [])


RENDITIONS = [
    Rendition("h264-360p", "video", "h264", 640, 360),
    Rendition("aac-128k-en", "audio", "aac"),
    Rendition("subs-pt", "subtitle", "webvtt", language="pt"),
    Rendition("subs-pt-br", "subtitle", "webvtt", language="pt-br"),
]


@pytest.mark.parametrize(
    ("name", "rendition"),
    [
        ("master.m3u8", None),
        ("manifest.mpd", None),
        ("thumbs/poster.jpg", None),
        ("h264-360p/seg-00001.m4s", "h264-360p"),
        ("h264-360p/iframe.m3u8", "h264-360p"),
        ("aac-128k-en/init.mp4", "aac-128k-en"),
        ("subs/pt.m3u8", "subs-pt"),
        ("subs/pt-00001.vtt", "subs-pt"),
        ("subs/pt-br.vtt", "subs-pt-br"),
        ("subs/pt-br-00012.vtt", "subs-pt-br"),
        ("subs/de.vtt", None),
        ("h264-720p/seg-00001.m4s", None),
    ],
)
def test_which_rendition_a_published_file_belongs_to(name: str, rendition: str | None) -> None:
    assert rendition_of(f"/v/vid/{name}", "vid", RENDITIONS) == rendition


def test_published_files_keep_path_and_size() -> None:
    stored = [StoredFile("/v/vid/master.m3u8", 900), StoredFile("/v/vid/subs/pt.vtt", 12)]
    files = published_files(stored, "vid", RENDITIONS)
    assert [(f.path, f.size, f.rendition) for f in files] == [
        ("/v/vid/master.m3u8", 900, None),
        ("/v/vid/subs/pt.vtt", 12, "subs-pt"),
    ]
    for f in files:
        f.check("vid")


def test_work_paths_and_temporary_names() -> None:
    work = WorkDir(Path("/w"), "vid")
    chunk = work.chunk("h264-360p", 3)
    assert chunk == Path("/w/vid/chunks/h264-360p/00003.mp4")
    assert work.relative(chunk) == "chunks/h264-360p/00003.mp4"
    tmp = temp_path(chunk, "ab12")
    assert (tmp.parent, tmp.name) == (chunk.parent, ".00003.ab12.tmp.mp4")  # muxer by suffix
    assert work.attempt("ab12") == Path("/w/vid/package-ab12")


async def test_an_output_appears_whole_or_not_at_all(tmp_path: Path) -> None:
    final = tmp_path / "chunks" / "00000.mp4"
    with pytest.raises(RuntimeError):
        async with output(final) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("ffmpeg died")
    assert not final.exists() and list(final.parent.iterdir()) == []

    async def slow() -> None:
        async with output(final) as tmp:
            tmp.write_bytes(b"half")
            await asyncio.sleep(60)

    task = asyncio.create_task(slow())
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert list(final.parent.iterdir()) == []

    async with output(final) as tmp:
        tmp.write_bytes(b"whole")
    assert final.read_bytes() == b"whole"
    assert list(final.parent.iterdir()) == [final]


def test_the_notification_body_is_the_checked_payload() -> None:
    payload = {"event": "video.ready", "video_id": "vid", "updated_at": 12.5}
    assert body_of(payload) == payload
    for bad in ({}, {"event": "video.deleted", "video_id": "vid", "updated_at": 1.0}):
        with pytest.raises(Rejected):
            body_of(bad)
