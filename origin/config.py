"""Origin configuration: frozen dataclasses read once from a TOML file by :func:`load`.

```toml
[server]
listen = ["127.0.0.1:8081"]      # host:port, several allowed ("[::]:8081" for IPv6)

[media]
root = "./var/origin/media"      # holds v/{video_id}/...; relative to the working directory
sources = "./var/origin/sources" # uploaded originals, kept for re-runs; never served

[log]
level = "info"                   # debug | info | warning | error

[catalog]
path = "./var/origin/catalog.db" # SQLite (WAL) shared by `serve` and every `worker`
busy_timeout_s = 10.0            # a writer waits this long for the lock, then errors

[api]
tokens = []                      # bearer tokens for creators/operators; empty = API refuses all
max_upload_size = "20GB"         # enforced while the body streams in
upload_dir = "./var/origin/uploads"  # partial uploads; same file system as media.root
public_read = false              # true: GET catalog/search without a token (reads only)
part_idle_timeout_s = 60.0       # an upload part that sends nothing this long ends like a
                                 # dropped connection (bytes so far kept, client resumes)
upload_expiry_s = 604800.0       # `serve`'s janitor aborts an open upload idle this long
                                 # (7 days) and removes its partial file; >= 3600
janitor_interval_s = 3600.0      # how often `serve` runs the janitor (stale uploads, work
                                 # directories of old FAILED videos, leftover staging dirs)

[pipeline]
work_dir = "./var/origin/work"   # chunk encodes and staging; same file system as media.root
lease_s = 60.0                   # job lease; a worker extends it every lease_s/3
max_attempts = 3                 # per job, then the video is FAILED with the error log
retry_base_s = 5.0               # back-off after a failed attempt: base * 2**(n-1) ...
retry_max_s = 300.0              # ... capped here
poll_s = 1.0                     # an idle worker looks for work this often
concurrency = 1                  # jobs one worker process runs at once
shutdown_grace_s = 30.0          # on SIGTERM running jobs may finish this long, then are cancelled
encoder_threads = 1              # threads per ffmpeg encode (1 scales best across workers)
preset = "veryfast"              # x264/x265 preset
chunk_seconds = 10               # GOP-aligned chunk length of the parallel encode
rungs_per_job = 0                # rungs one encode_chunk job encodes from one decode of its
                                 # chunk: 0 = all, 1 = one job per rung, n = groups of n
av1 = false                      # top rungs in AV1 instead of HEVC
max_duration_s = 14400.0         # probe limits: longer uploads are FAILED with a reason
max_long_side = 4096
max_short_side = 2160
metrics_listen = ""              # worker's /metrics + /healthz listener, "host:port"; "" = off
                                 # (`worker --metrics-listen` overrides it per process)
failed_work_expiry_s = 604800.0  # `serve`'s janitor removes work_dir/{video_id} of a video
                                 # FAILED this long (7 days); 0 = at its next run

[webhook]
url = ""                         # POSTed {"event":"video.ready",...} on publish; "" = off
token = ""                       # sent as Authorization: Bearer
timeout_s = 5.0
attempts = 5                     # tries with back-off before giving up (logged, counted)
```

Every problem raises :class:`vodedge.configfile.ConfigError` naming the key; unknown keys too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, cast, get_args

from origin.media.chunks import X264_PRESETS
from vodedge.configfile import ConfigError, Section, parse_base_url, parse_listen, read_toml

LogLevel = Literal["debug", "info", "warning", "error"]
LOG_LEVELS: tuple[str, ...] = get_args(LogLevel)


@dataclass(frozen=True, slots=True)
class ServerConfig:
    listen: tuple[tuple[str, int], ...] = (("127.0.0.1", 8081),)
    """Addresses (host, port) the HTTP server binds; appliances fill from them."""


@dataclass(frozen=True, slots=True)
class MediaConfig:
    root: Path = Path("./var/origin/media")
    """Directory holding the published layout ``v/{video_id}/...``; a relative path is taken
    from the working directory of the process (``make run`` runs from the repository)."""
    sources: Path = Path("./var/origin/sources")
    """Uploaded source files (``{video_id}/source``), kept for re-runs and never served;
    on the file system of ``api.upload_dir`` so that completing an upload is a rename."""


@dataclass(frozen=True, slots=True)
class LogConfig:
    level: LogLevel = "info"
    """Lowest level written to stderr (JSON lines); access log lines are ``info``."""


@dataclass(frozen=True, slots=True)
class CatalogConfig:
    path: Path = Path("./var/origin/catalog.db")
    """SQLite file of the catalog and job queue; ``serve`` and every ``worker`` open it."""
    busy_timeout_s: float = 10.0
    """Seconds a writer waits for SQLite's write lock before the call fails."""


@dataclass(frozen=True, slots=True)
class ApiConfig:
    tokens: tuple[str, ...] = ()
    """Bearer tokens accepted by the API (creators, operators, the control plane). Empty:
    every API call is 401 (static ``/v/`` serving does not need a token)."""
    max_upload_size: int = 20 * 1000**3
    """Bytes; a declared or streamed size above it is refused (413) before it is stored."""
    upload_dir: Path = Path("./var/origin/uploads")
    """Where uploads are written while they arrive; keep it on the file system of
    ``media.root`` so that completing an upload is a rename."""
    public_read: bool = False
    """Let GET requests on the catalog and search through without a token."""
    part_idle_timeout_s: float = 60.0
    """Seconds an upload part may send no byte before it is treated like a dropped connection:
    what arrived is kept and the client resumes from ``Upload-Offset``. Bounds how long a
    stalled client holds a connection and the upload's lock."""
    upload_expiry_s: float = 7 * 86400.0
    """Seconds an open upload may receive nothing before ``serve``'s janitor aborts it and
    removes its partial file. An upload's time is updated when a part ends, not while it
    streams, hence the floor of an hour (:data:`MIN_UPLOAD_EXPIRY_S`)."""
    janitor_interval_s: float = 3600.0
    """Seconds between two runs of ``serve``'s janitor (:mod:`origin.janitor`); the first
    runs this long after start."""


@dataclass(frozen=True, slots=True)
class PipelineConfig:
    work_dir: Path = Path("./var/origin/work")
    """Per-video scratch space (chunks, staging); on the file system of ``media.root`` so
    that publishing is a rename."""
    lease_s: float = 60.0
    """Seconds a claimed job stays leased; the worker extends it every ``lease_s / 3``."""
    max_attempts: int = 3
    """Attempts per job before the video is FAILED with the job's error log."""
    retry_base_s: float = 5.0
    """Back-off after the first failed attempt; doubles per attempt."""
    retry_max_s: float = 300.0
    """Largest back-off between attempts."""
    poll_s: float = 1.0
    """How often an idle worker looks for a job."""
    concurrency: int = 1
    """Jobs one worker process runs at once (each is one ffmpeg)."""
    shutdown_grace_s: float = 30.0
    """On SIGTERM, running jobs may finish for this long; then they are cancelled and their
    leases expire (another worker redoes them). Keep it under systemd's TimeoutStopSec."""
    encoder_threads: int = 1
    """Threads per encode. One per job scales best: parallelism comes from chunks."""
    preset: str = "veryfast"
    """x264/x265 preset of the rung encodes."""
    chunk_seconds: int = 10
    """Length of the GOP-aligned chunks encoded in parallel (a multiple of the 2 s GOP)."""
    rungs_per_job: int = 0
    """Rungs one ``encode_chunk`` job encodes from ONE decode of its chunk (one ffmpeg, one
    output per rung): 0 = every rung of the chunk, 1 = one job per rung and chunk (each job
    decodes the chunk again), n = the ladder in groups of n. Fewer, larger jobs save the
    repeated decodes (about half the CPU with a heavy mezzanine) but a job holds its ffmpeg's
    encoder threads for longer; a group uses ``encoder_threads`` per rung when not pinned."""
    av1: bool = False
    """Encode the rungs above 1080p in AV1 (SVT-AV1) instead of HEVC."""
    max_duration_s: float = 4 * 3600.0
    """Longest accepted source; longer uploads are FAILED with a reason."""
    max_long_side: int = 4096
    """Largest accepted long side of the displayed picture, in pixels."""
    max_short_side: int = 2160
    """Largest accepted short side of the displayed picture, in pixels."""
    metrics_listen: tuple[str, int] | None = None
    """Address (host, port) of the worker's own HTTP listener for ``/metrics`` and ``/healthz``;
    None = no listener. Several workers on one machine need one port each: ``vodedge-origin
    worker --metrics-listen`` overrides it per process (the systemd template does)."""
    failed_work_expiry_s: float = 7 * 86400.0
    """Seconds after a video became FAILED before ``serve``'s janitor removes its
    ``{work_dir}/{video_id}`` (0 = at the janitor's next run). The API's re-run clears it
    anyway, so this only bounds how long the files of a failure stay for an operator to
    look at."""


@dataclass(frozen=True, slots=True)
class WebhookConfig:
    url: str | None = None
    """Control plane endpoint POSTed on publish (and delete); None = no notification."""
    token: str = ""
    """Sent as ``Authorization: Bearer``; empty = no header."""
    timeout_s: float = 5.0
    """Per attempt."""
    attempts: int = 5
    """Tries with back-off; after the last the failure is logged and counted."""


@dataclass(frozen=True, slots=True)
class OriginConfig:
    server: ServerConfig = field(default_factory=ServerConfig)
    media: MediaConfig = field(default_factory=MediaConfig)
    log: LogConfig = field(default_factory=LogConfig)
    catalog: CatalogConfig = field(default_factory=CatalogConfig)
    api: ApiConfig = field(default_factory=ApiConfig)
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    webhook: WebhookConfig = field(default_factory=WebhookConfig)


def load(path: str | Path) -> OriginConfig:
    """Read and validate ``path``; raise :class:`ConfigError` naming the first bad key."""
    return from_dict(read_toml(path))


def from_dict(data: dict[str, object]) -> OriginConfig:
    top = Section(dict(data))
    server = _server(top.section("server"))
    media = _media(top.section("media"))
    log = _log(top.section("log"))
    catalog = _catalog(top.section("catalog"))
    api = _api(top.section("api"))
    pipeline = _pipeline(top.section("pipeline"))
    webhook = _webhook(top.section("webhook"))
    top.finish()
    return OriginConfig(
        server=server,
        media=media,
        log=log,
        catalog=catalog,
        api=api,
        pipeline=pipeline,
        webhook=webhook,
    )


def _server(s: Section) -> ServerConfig:
    default = [f"{host}:{port}" for host, port in ServerConfig().listen]
    raw = s.str_list("listen", default)
    if not raw:
        raise ConfigError(f"{s.key('listen')}: must name at least one address")
    listen: list[tuple[str, int]] = []
    for i, value in enumerate(raw):
        try:
            addr = parse_listen(value)
        except ValueError as e:
            raise ConfigError(f"{s.key('listen')}[{i}]: {e}") from None
        if addr in listen:
            raise ConfigError(f"{s.key('listen')}[{i}]: duplicate address {value!r}")
        listen.append(addr)
    s.finish()
    return ServerConfig(listen=tuple(listen))


def _media(s: Section) -> MediaConfig:
    d = MediaConfig()
    cfg = MediaConfig(root=_path(s, "root", d.root), sources=_path(s, "sources", d.sources))
    s.finish()
    return cfg


def _log(s: Section) -> LogConfig:
    level = s.str("level", LogConfig().level).lower()
    if level not in LOG_LEVELS:
        raise ConfigError(
            f"{s.key('level')}: expected one of {', '.join(LOG_LEVELS)}, got {level!r}"
        )
    s.finish()
    return LogConfig(level=cast(LogLevel, level))


def _path(s: Section, key: str, default: Path) -> Path:
    value = s.str(key, str(default))
    if not value.strip():
        raise ConfigError(f"{s.key(key)}: must not be empty")
    return Path(value)


def _catalog(s: Section) -> CatalogConfig:
    d = CatalogConfig()
    cfg = CatalogConfig(
        path=_path(s, "path", d.path),
        busy_timeout_s=s.float("busy_timeout_s", d.busy_timeout_s, minimum=0.1),
    )
    s.finish()
    return cfg


MIN_TOKEN_LENGTH = 16
MIN_UPLOAD_EXPIRY_S = 3600.0
"""``api.upload_expiry_s`` floor: well above any part still streaming (its bytes are recorded
only when it ends)."""


def _api(s: Section) -> ApiConfig:
    d = ApiConfig()
    tokens = s.str_list("tokens", list(d.tokens))
    for i, token in enumerate(tokens):
        if len(token) < MIN_TOKEN_LENGTH or token.strip() != token:
            raise ConfigError(
                f"{s.key('tokens')}[{i}]: a token needs at least {MIN_TOKEN_LENGTH} characters "
                "and no surrounding spaces"
            )
        if "REPLACE-ME" in token:
            raise ConfigError(f"{s.key('tokens')}[{i}]: replace the placeholder token")
    size = s.size("max_upload_size", d.max_upload_size)
    if size <= 0:
        raise ConfigError(f"{s.key('max_upload_size')}: must be > 0")
    cfg = ApiConfig(
        tokens=tuple(tokens),
        max_upload_size=size,
        upload_dir=_path(s, "upload_dir", d.upload_dir),
        public_read=s.bool("public_read", d.public_read),
        part_idle_timeout_s=s.float("part_idle_timeout_s", d.part_idle_timeout_s, minimum=1.0),
        upload_expiry_s=s.float("upload_expiry_s", d.upload_expiry_s, minimum=MIN_UPLOAD_EXPIRY_S),
        janitor_interval_s=s.float("janitor_interval_s", d.janitor_interval_s, minimum=1.0),
    )
    s.finish()
    return cfg


def _pipeline(s: Section) -> PipelineConfig:
    d = PipelineConfig()
    preset = s.str("preset", d.preset)
    if preset not in X264_PRESETS:
        raise ConfigError(f"{s.key('preset')}: expected one of {', '.join(X264_PRESETS)}")
    chunk_seconds = s.int("chunk_seconds", d.chunk_seconds, minimum=2)
    if chunk_seconds % 2:
        raise ConfigError(f"{s.key('chunk_seconds')}: must be a multiple of the 2 s GOP")
    lease_s = s.float("lease_s", d.lease_s, minimum=3.0)
    retry_base_s = s.float("retry_base_s", d.retry_base_s, minimum=0.0)
    retry_max_s = s.float("retry_max_s", d.retry_max_s, minimum=0.0)
    if retry_max_s < retry_base_s:
        raise ConfigError(f"{s.key('retry_max_s')}: must be >= retry_base_s")
    cfg = PipelineConfig(
        work_dir=_path(s, "work_dir", d.work_dir),
        lease_s=lease_s,
        max_attempts=s.int("max_attempts", d.max_attempts, minimum=1),
        retry_base_s=retry_base_s,
        retry_max_s=retry_max_s,
        poll_s=s.float("poll_s", d.poll_s, minimum=0.01),
        concurrency=s.int("concurrency", d.concurrency, minimum=1),
        shutdown_grace_s=s.float("shutdown_grace_s", d.shutdown_grace_s, minimum=0.0),
        encoder_threads=s.int("encoder_threads", d.encoder_threads, minimum=1),
        preset=preset,
        chunk_seconds=chunk_seconds,
        rungs_per_job=s.int("rungs_per_job", d.rungs_per_job, minimum=0),
        av1=s.bool("av1", d.av1),
        max_duration_s=s.float("max_duration_s", d.max_duration_s, minimum=1.0),
        max_long_side=s.int("max_long_side", d.max_long_side, minimum=16),
        max_short_side=s.int("max_short_side", d.max_short_side, minimum=16),
        metrics_listen=_optional_listen(s, "metrics_listen"),
        failed_work_expiry_s=s.float("failed_work_expiry_s", d.failed_work_expiry_s, minimum=0.0),
    )
    s.finish()
    return cfg


def _optional_listen(s: Section, key: str) -> tuple[str, int] | None:
    """``"host:port"``, or ``""`` for none."""
    value = s.str(key, "")
    return s.convert(key, value, parse_listen) if value else None


def _webhook(s: Section) -> WebhookConfig:
    d = WebhookConfig()
    raw = s.str("url", "")
    cfg = WebhookConfig(
        url=s.convert("url", raw, parse_base_url) if raw else None,
        token=s.str("token", d.token),
        timeout_s=s.float("timeout_s", d.timeout_s, minimum=0.1),
        attempts=s.int("attempts", d.attempts, minimum=1),
    )
    s.finish()
    return cfg
