"""The upload's other tracks: its audio language and the subtitle streams worth passing through.

:func:`inspect` (in :mod:`.probe`) finds the video and the first audio stream; this module
looks at the languages and subtitles, which the packaged title carries as the audio
rendition's language and as segmented WebVTT (:class:`~.package.SubtitleInput`).

Pure parts: :func:`parse_tracks` (the stream list of the probe's ffprobe JSON, from
:func:`~.probe.inspect_with_json`, -> :class:`Tracks`; no second ffprobe run),
:func:`extract_args` (one subtitle stream -> a WebVTT file). Async part:
:func:`extract_subtitle`.

Rules:

- Only text subtitles pass through (:data:`TEXT_SUBTITLE_CODECS`: SubRip, ASS/SSA, MP4 timed
  text, WebVTT); bitmap subtitles (DVD, PGS, DVB) would need OCR and are skipped with a note.
- Languages are the container's tags, lower-cased (``eng``, ``fr``, ``pt-br``). A missing,
  malformed or ``und`` tag becomes the caller's default language (:data:`DEFAULT_LANGUAGE`):
  the packager refuses ``und``, and every rendition needs a language. The packager writes the
  shortest form into the manifests (``eng`` -> ``en``); file and rendition names keep the tag
  as found.
- One subtitle track per language (the first; a default-flagged one wins): the language names
  its files (``subs/{language}.m3u8``). Further tracks of a language are skipped with a note.
- Labels (HLS ``NAME``) are the stream's ``title`` tag without the characters the packager's
  stream descriptors cannot carry (``,`` ``=`` ``"``), else the language tag.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from origin.media.tools import Tools, run

TEXT_SUBTITLE_CODECS = frozenset({"subrip", "srt", "ass", "ssa", "mov_text", "webvtt", "text"})
DEFAULT_LANGUAGE = "en"
"""For untagged tracks (the media layer's own default for the audio rendition)."""
UNDETERMINED = "und"
MAX_LABEL = 64
EXTRACT_TIMEOUT = 600.0
"""Seconds to pull one subtitle stream out of the upload (demuxing all of it)."""
_LANGUAGE_RE = re.compile(r"^[a-z]{2,3}(-[a-z0-9]{1,8})*\Z")
_LABEL_DROP = re.compile(r'[,="\x00-\x1f\x7f]+')


@dataclass(frozen=True, slots=True)
class SubtitleTrack:
    index: int
    """Stream index for ``-map 0:{index}``."""
    codec: str
    language: str
    label: str


@dataclass(frozen=True, slots=True)
class Tracks:
    audio_language: str
    """Of the audio stream :func:`inspect` chose; the default when untagged or silent."""
    audio_label: str
    subtitles: tuple[SubtitleTrack, ...]
    """Text tracks to pass through, one per language, in stream order."""
    skipped: tuple[str, ...] = ()
    """Why other subtitle streams are left out (for the job's record)."""


def language_tag(value: object, default: str = DEFAULT_LANGUAGE) -> str:
    """A container's language tag, lower-cased; ``default`` if missing, malformed or ``und``."""
    text = str(value or "").strip().lower().replace("_", "-")
    return text if _LANGUAGE_RE.match(text) and text != UNDETERMINED else default


def label_text(title: object, fallback: str) -> str:
    """A track's display name: its title without descriptor-breaking characters."""
    text = " ".join(_LABEL_DROP.sub(" ", str(title or "")).split())[:MAX_LABEL].strip()
    return text or fallback


def parse_tracks(
    data: Mapping[str, Any], audio_index: int | None, default_language: str = DEFAULT_LANGUAGE
) -> Tracks:
    """ffprobe's stream list (``-show_streams`` JSON) -> :class:`Tracks`; ``audio_index`` is
    the audio stream in use."""
    if not _LANGUAGE_RE.match(default_language) or default_language == UNDETERMINED:
        raise ValueError(f"not a usable default language: {default_language!r}")
    streams: list[Mapping[str, Any]] = list(data.get("streams") or [])
    audio_language = audio_label = default_language
    subtitles: list[SubtitleTrack] = []
    skipped: list[str] = []
    candidates = [s for s in streams if s.get("codec_type") == "subtitle"]
    # A default-flagged track goes first within its language; otherwise stream order.
    candidates.sort(key=lambda s: not (s.get("disposition") or {}).get("default"))
    for stream in streams:
        tags: Mapping[str, Any] = stream.get("tags") or {}
        if stream.get("codec_type") == "audio" and stream.get("index") == audio_index:
            audio_language = language_tag(tags.get("language"), default_language)
            audio_label = label_text(tags.get("title"), audio_language)
    taken: set[str] = set()
    for stream in candidates:
        tags = stream.get("tags") or {}
        index = int(stream.get("index") or 0)
        codec = str(stream.get("codec_name") or "unknown")
        language = language_tag(tags.get("language"), default_language)
        if codec not in TEXT_SUBTITLE_CODECS:
            skipped.append(f"subtitle stream {index}: {codec} is not a text format")
        elif language in taken:
            skipped.append(f"subtitle stream {index}: a second {language} track")
        else:
            taken.add(language)
            subtitles.append(
                SubtitleTrack(index, codec, language, label_text(tags.get("title"), language))
            )
    subtitles.sort(key=lambda t: t.index)
    return Tracks(audio_language, audio_label, tuple(subtitles), tuple(skipped))


def extract_args(ffmpeg: Path, src: Path, track: SubtitleTrack, out: Path) -> list[str]:
    """One subtitle stream converted to WebVTT (styling of ASS/SSA is dropped)."""
    return [
        str(ffmpeg), "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
        "-i", str(src), "-map", f"0:{track.index}", "-c:s", "webvtt", "-f", "webvtt", str(out),
    ]  # fmt: skip


async def extract_subtitle(
    tools: Tools,
    src: Path,
    track: SubtitleTrack,
    out: Path,
    *,
    timeout: float = EXTRACT_TIMEOUT,  # noqa: ASYNC109 (see tools.run)
) -> None:
    """Write ``track`` of ``src`` as WebVTT to ``out``."""
    step = f"extract subtitles {track.language}"
    await run(extract_args(tools.ffmpeg, src, track, out), step=step, timeout=timeout)
