"""The pipeline's job kinds: what each one's payload and result hold, and what it enqueues next.

Everything here is pure: JSON shapes in and out, and the :class:`~origin.catalog.JobSpec` lists
a completed stage hands to ``Catalog.complete(then=…)``. A title's jobs, in order::

    kind          key                          payload                        enqueued by
    probe         probe                        {}                             the upload API
    analyse       analyse                      {probe, tracks}                probe
    encode_chunk  encode:chunk-{0003}          {analysis_job, rungs, chunk}   analyse (fan-out)
                  encode:{rungs}:chunk-{0003}
    encode_audio  encode:audio                 {analysis_job}                 analyse (with audio)
    package       package                      {analysis_job}                 the last encode job
    publish       publish                      {staging, renditions}          package
    notify        notify                       {event, video_id, updated_at}  publish (webhook on)

Payloads and results (JSON objects; Fractions as ``"30000/1001"`` strings)::

    probe        result  ProbeJson (the ProbeResult fields, origin.media.probe) + {"tracks"}
    analyse      payload {"probe": ProbeJson, "tracks": TracksJson}
                 result  AnalysisJson = {"probe", "tracks", "complexity_kbps", "samples_kbps",
                         "rungs": [Rung.as_dict()], "plan": ChunkPlan.as_dict()}
    encode_chunk payload {"analysis_job": <job id of analyse>, "chunk": 3,
                          "rungs": ["h264-240p", "h264-360p"]}   (ladder order)
                 result  {"files": [{"rung": "h264-240p", "file": "chunks/h264-240p/00003.mp4",
                          "frames": 50, "bytes": 81234}, …]}   (one per rung of the payload)
    encode_audio payload {"analysis_job": …}
                 result  {"file": "audio.mp4", "seconds": 3.99, "bytes": …}
    package      payload {"analysis_job": …}
                 result  {"staging": "/abs/media/.staging/{id}.xyz", "renditions": [Rendition],
                         "bandwidth_fixes": 2, "skipped": ["subtitle stream 3: …"]}
    publish      payload {"staging": …, "renditions": [Rendition]} (package's result)
                 result  {"files": 42, "bytes": 1234567, "already": false}
    notify       payload {"event": "video.ready", "video_id": …, "updated_at": …} (= the body)
                 result  {"delivered": true, "attempts": 1, "status": 204, "error": null}

    TracksJson  = {"audio_language", "audio_label", "subtitles": [{"index", "codec",
                   "language", "label"}], "skipped": [str]}
    Rendition   = the origin.catalog.Rendition fields

Chunk jobs (``pipeline.rungs_per_job``, :func:`rung_groups`): one job encodes a group of rungs
of one chunk from one decode of it. 0 = the whole ladder in one job per chunk, key
``encode:chunk-0003``; n = the ladder (in its order) cut into groups of n, key
``encode:h264-240p+h264-360p:chunk-0003`` (n = 1: ``encode:h264-240p:chunk-0003``, one job per
rung and chunk as before). A group may mix codecs (the H.264 and HEVC rungs of a 4K title). A
payload of an earlier version with one ``"rung"`` instead of ``"rungs"`` is still read.

Where a payload carries data and where it names a job: one-to-one hops carry what the next
stage needs (a few hundred bytes, written once). The fan-out names the analyse job instead
of copying the plan into thousands of chunk jobs; each encode job and the package job read
the plan from that job's result, so the plan exists once, in the catalog. Payloads are
deterministic functions of that plan, which keeps the fan-in's repeated enqueue of
``package`` (by whichever encode job finishes last) idempotent.

A payload this version cannot read raises :class:`~origin.pipeline.errors.Rejected`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, TypeVar

from origin.catalog import JobSpec, Rendition, Video
from origin.media.chunks import Chunk, ChunkPlan
from origin.media.complexity import Complexity
from origin.media.ladder import Rung
from origin.media.probe import ProbeResult
from origin.media.tracks import SubtitleTrack, Tracks
from origin.pipeline.errors import Rejected
from origin.pipeline.start import PROBE

ANALYSE = "analyse"
ENCODE_CHUNK = "encode_chunk"
ENCODE_AUDIO = "encode_audio"
PACKAGE = "package"
PUBLISH = "publish"
NOTIFY = "notify"
KINDS: tuple[str, ...] = (PROBE, ANALYSE, ENCODE_CHUNK, ENCODE_AUDIO, PACKAGE, PUBLISH, NOTIFY)
"""Every kind a worker of this version runs (and claims: it leaves unknown kinds alone)."""

AUDIO_KEY = "encode:audio"
READY_EVENT = "video.ready"

JsonDict = dict[str, Any]
T = TypeVar("T")


def chunk_key(rungs: Sequence[str] | None, index: int) -> str:
    """The key of the chunk job encoding ``rungs`` of chunk ``index``; None = every rung."""
    if rungs is None:
        return f"encode:chunk-{index:04d}"
    if not rungs:
        raise ValueError("a chunk job encodes at least one rung")
    return f"encode:{'+'.join(rungs)}:chunk-{index:04d}"


def rung_groups(rungs: Sequence[Rung], per_job: int) -> tuple[tuple[Rung, ...], ...]:
    """The ladder cut into the rung groups of one chunk job each, in ladder order:
    ``per_job`` rungs per group (the last takes the rest), 0 = one group of every rung."""
    if per_job < 0:
        raise ValueError(f"rungs per job must be >= 0, got {per_job}")
    size = per_job or len(rungs) or 1
    return tuple(tuple(rungs[i : i + size]) for i in range(0, len(rungs), size))


def parse(what: str, build: Callable[[], T]) -> T:
    """Run ``build`` (which reads a payload or result); malformed data becomes ``Rejected``."""
    try:
        return build()
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise Rejected(f"cannot read the {what}: {type(e).__name__}: {e}") from None


# -- the shapes ------------------------------------------------------------------------------

_FRACTION_FIELDS = ("sample_aspect", "fps")
_PROBE_FIELDS = frozenset(f.name for f in dataclasses.fields(ProbeResult))


def probe_to_json(probe: ProbeResult) -> JsonDict:
    data = dataclasses.asdict(probe)
    for name in _FRACTION_FIELDS:
        data[name] = str(data[name])
    return data


def probe_from_json(data: Mapping[str, Any]) -> ProbeResult:
    if set(data) != _PROBE_FIELDS:
        raise ValueError(f"probe fields differ: {sorted(set(data) ^ _PROBE_FIELDS)}")
    fields: dict[str, Any] = {
        k: Fraction(v) if k in _FRACTION_FIELDS else v for k, v in data.items()
    }
    return ProbeResult(**fields)


def tracks_to_json(tracks: Tracks) -> JsonDict:
    return {
        "audio_language": tracks.audio_language,
        "audio_label": tracks.audio_label,
        "subtitles": [dataclasses.asdict(s) for s in tracks.subtitles],
        "skipped": list(tracks.skipped),
    }


def tracks_from_json(data: Mapping[str, Any]) -> Tracks:
    return Tracks(
        audio_language=str(data["audio_language"]),
        audio_label=str(data["audio_label"]),
        subtitles=tuple(SubtitleTrack(**s) for s in data["subtitles"]),
        skipped=tuple(str(s) for s in data["skipped"]),
    )


def rendition_to_json(rendition: Rendition) -> JsonDict:
    return dataclasses.asdict(rendition)


def rendition_from_json(data: Mapping[str, Any]) -> Rendition:
    rendition = Rendition(**data)
    rendition.check()
    return rendition


@dataclass(frozen=True, slots=True)
class Analysis:
    """The plan of one title: the analyse job's result, read by every later stage."""

    probe: ProbeResult
    tracks: Tracks
    complexity: Complexity
    rungs: tuple[Rung, ...]
    plan: ChunkPlan

    @property
    def fan_in(self) -> tuple[str, ...]:
        """The kinds whose jobs must all be done before packaging."""
        return (ENCODE_CHUNK, ENCODE_AUDIO) if self.probe.has_audio else (ENCODE_CHUNK,)

    def rung(self, name: str) -> Rung:
        for rung in self.rungs:
            if rung.name == name:
                return rung
        raise Rejected(f"no rung {name!r} in the plan")

    def chunk(self, index: int) -> Chunk:
        if not 0 <= index < len(self.plan.chunks):
            raise Rejected(f"no chunk {index} in the plan")
        return self.plan.chunks[index]

    def to_json(self) -> JsonDict:
        return {
            "probe": probe_to_json(self.probe),
            "tracks": tracks_to_json(self.tracks),
            "complexity_kbps": self.complexity.kbps,
            "samples_kbps": list(self.complexity.samples_kbps),
            "rungs": [r.as_dict() for r in self.rungs],
            "plan": self.plan.as_dict(),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Analysis:
        return cls(
            probe=probe_from_json(data["probe"]),
            tracks=tracks_from_json(data["tracks"]),
            complexity=Complexity(
                kbps=float(data["complexity_kbps"]),
                samples_kbps=tuple(float(k) for k in data["samples_kbps"]),
            ),
            rungs=tuple(Rung.from_dict(r) for r in data["rungs"]),
            plan=ChunkPlan.from_dict(data["plan"]),
        )


@dataclass(frozen=True, slots=True)
class AnalysePayload:
    probe: ProbeResult
    tracks: Tracks

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AnalysePayload:
        return parse(
            "analyse payload",
            lambda: cls(probe_from_json(data["probe"]), tracks_from_json(data["tracks"])),
        )


@dataclass(frozen=True, slots=True)
class PlanPayload:
    """Names the analyse job whose result is the plan; ``encode_chunk`` adds its rungs and
    chunk (``encode_audio`` and ``package`` need neither)."""

    analysis_job: int
    rungs: tuple[str, ...] = ()
    chunk: int | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PlanPayload:
        def build() -> PlanPayload:
            chunk = data.get("chunk")
            if "rungs" in data:
                raw = data["rungs"]
                if not isinstance(raw, list):
                    raise TypeError(f"rungs is a {type(raw).__name__}, not a list")
                rungs = tuple(str(r) for r in raw)
            else:  # a job queued by a version with one rung per job
                rungs = () if data.get("rung") is None else (str(data["rung"]),)
            if len(set(rungs)) != len(rungs):
                raise ValueError(f"a rung named twice: {list(rungs)}")
            return cls(
                analysis_job=int(data["analysis_job"]),
                rungs=rungs,
                chunk=None if chunk is None else int(chunk),
            )

        return parse("payload", build)


@dataclass(frozen=True, slots=True)
class PublishPayload:
    staging: Path
    renditions: tuple[Rendition, ...]

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PublishPayload:
        return parse(
            "publish payload",
            lambda: cls(
                staging=Path(str(data["staging"])),
                renditions=tuple(rendition_from_json(r) for r in data["renditions"]),
            ),
        )


# -- what each stage enqueues ----------------------------------------------------------------


def analyse_job(probe: ProbeResult, tracks: Tracks, max_attempts: int) -> JobSpec:
    payload = {"probe": probe_to_json(probe), "tracks": tracks_to_json(tracks)}
    return JobSpec(ANALYSE, ANALYSE, payload, max_attempts)


def encode_jobs(
    analysis_job: int, analysis: Analysis, max_attempts: int, rungs_per_job: int = 0
) -> list[JobSpec]:
    """The fan-out: one job per chunk x rung group (:func:`rung_groups`; chunk-major, so the
    first seconds of every rung finish first), and the audio job when the source has audio."""
    groups = rung_groups(analysis.rungs, rungs_per_job)
    specs = [
        JobSpec(
            ENCODE_CHUNK,
            chunk_key(None if rungs_per_job == 0 else names, chunk.index),
            {"analysis_job": analysis_job, "rungs": names, "chunk": chunk.index},
            max_attempts,
        )
        for chunk in analysis.plan.chunks
        for names in ([r.name for r in group] for group in groups)
    ]
    if analysis.probe.has_audio:
        specs.append(JobSpec(ENCODE_AUDIO, AUDIO_KEY, {"analysis_job": analysis_job}, max_attempts))
    return specs


def package_job(analysis_job: int, max_attempts: int) -> JobSpec:
    return JobSpec(PACKAGE, PACKAGE, {"analysis_job": analysis_job}, max_attempts)


def publish_job(staging: Path, renditions: Sequence[Rendition], max_attempts: int) -> JobSpec:
    payload = {"staging": str(staging), "renditions": [rendition_to_json(r) for r in renditions]}
    return JobSpec(PUBLISH, PUBLISH, payload, max_attempts)


def notify_job(video: Video, max_attempts: int) -> JobSpec:
    """The webhook body of a title that became READY; ``updated_at`` lets the receiver drop
    a repeated delivery (notification is at least once)."""
    payload = {"event": READY_EVENT, "video_id": video.video_id, "updated_at": video.updated_at}
    return JobSpec(NOTIFY, NOTIFY, payload, max_attempts)
