"""Appliance configuration: typed, frozen, validated once at start-up.

``load(path)`` reads the TOML file (see ``firmware-config/appliance.toml`` for every key with
comments) and returns an :class:`ApplianceConfig` or raises
:class:`vodedge.configfile.ConfigError` naming the offending key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vodedge.configfile import ConfigError, Section, parse_base_url, parse_listen, read_toml


@dataclass(frozen=True, slots=True)
class ServerConfig:
    listen: tuple[tuple[str, int], ...]
    """Public HTTP listeners (players)."""
    workers: int
    """Worker processes; 0 resolves to one per CPU in :func:`load`."""
    max_header_bytes: int = 8192
    """Largest request head accepted; larger gets 431."""
    keepalive_timeout: float = 75.0
    """Seconds an idle keep-alive connection stays open."""
    send_timeout: float = 60.0
    """Seconds a client may accept no bytes before it is disconnected."""
    access_log: bool = True
    cors_allow_origin: str = "*"


@dataclass(frozen=True, slots=True)
class AdminConfig:
    listen: tuple[str, int] | None
    token: str


@dataclass(frozen=True, slots=True)
class FillConfig:
    origins: tuple[str, ...]
    """Origin base URLs, tried in order."""
    parent: str | None
    """Parent appliance base URL, tried before the origins."""
    connect_timeout: float = 2.0
    first_byte_timeout: float = 10.0
    idle_timeout: float = 10.0
    negative_ttl: float = 10.0
    """Seconds a 404 from upstream is remembered."""
    max_object_size: int = 256 * 2**20
    """A fill is held in memory while it streams to its waiters; larger objects are refused."""

    @property
    def upstreams(self) -> tuple[str, ...]:
        return ((self.parent,) if self.parent else ()) + self.origins


@dataclass(frozen=True, slots=True)
class DiskConfig:
    path: Path
    size: int
    """Byte budget for cached objects on this disk."""


@dataclass(frozen=True, slots=True)
class StorageConfig:
    disks: tuple[DiskConfig, ...]
    verify_checksums: bool = True
    chunk_size: int = 2**20
    """Body chunk size in LMDB; see docs/architecture.md for the measurement behind 1 MiB."""
    sync: bool = True
    """fdatasync on commit (LMDB sync); the meta page is never synced separately (metasync off)."""


@dataclass(frozen=True, slots=True)
class TokenConfig:
    required: bool
    keys: dict[str, bytes] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ApplianceConfig:
    server: ServerConfig
    admin: AdminConfig
    fill: FillConfig
    storage: StorageConfig
    tokens: TokenConfig
    log_level: str = "info"
    run_dir: Path = Path("var/run")
    """Where worker-to-worker sockets and multiprocess metric files live."""
    source: Path | None = None
    digest: str = ""


def _listen_list(v: Any) -> tuple[tuple[str, int], ...]:
    if not isinstance(v, list) or not v:
        raise ValueError("expected a non-empty list of 'host:port'")
    return tuple(parse_listen(x) for x in v)


def _secret(v: str) -> bytes:
    """Secrets are given as text; ``base64:...`` gives raw bytes."""
    if v.startswith("base64:"):
        try:
            return base64.b64decode(v[7:], validate=True)
        except binascii.Error:
            raise ValueError("invalid base64 secret") from None
    if len(v) < 16:
        raise ValueError("secret must be at least 16 characters")
    return v.encode()


def load(path: str | Path) -> ApplianceConfig:
    raw_bytes = Path(path).read_bytes() if Path(path).is_file() else b""
    root = Section(read_toml(path))
    cfg = from_section(root, source=Path(path))
    digest = hashlib.sha256(raw_bytes).hexdigest()[:16]
    return ApplianceConfig(
        server=cfg.server,
        admin=cfg.admin,
        fill=cfg.fill,
        storage=cfg.storage,
        tokens=cfg.tokens,
        log_level=cfg.log_level,
        run_dir=cfg.run_dir,
        source=cfg.source,
        digest=digest,
    )


def from_section(root: Section, source: Path | None = None) -> ApplianceConfig:
    base = source.parent if source else Path.cwd()

    s = root.section("server")
    workers = s.int("workers", 0, minimum=0)
    server = ServerConfig(
        listen=s.convert("listen", ["0.0.0.0:8080"], _listen_list),
        workers=workers or (os.cpu_count() or 1),
        max_header_bytes=s.int("max_header_bytes", 8192, minimum=1024),
        keepalive_timeout=s.float("keepalive_timeout", 75.0, minimum=0.1),
        send_timeout=s.float("send_timeout", 60.0, minimum=0.1),
        access_log=s.bool("access_log", True),
        cors_allow_origin=s.str("cors_allow_origin", "*"),
    )
    s.finish()

    a = root.section("admin")
    admin_listen = a.str("listen", "127.0.0.1:8090")
    admin = AdminConfig(
        listen=a.convert("listen", admin_listen, parse_listen) if admin_listen else None,
        token=a.str("token", ""),
    )
    a.finish()

    f = root.section("fill")
    origins = tuple(f.convert("origins", [], lambda v: [parse_base_url(x) for x in v]))
    parent_s = f.str("parent", "")
    fill = FillConfig(
        origins=origins,
        parent=f.convert("parent", parent_s, parse_base_url) if parent_s else None,
        connect_timeout=f.float("connect_timeout", 2.0, minimum=0.01),
        first_byte_timeout=f.float("first_byte_timeout", 10.0, minimum=0.01),
        idle_timeout=f.float("idle_timeout", 10.0, minimum=0.01),
        negative_ttl=f.float("negative_ttl", 10.0, minimum=0.0),
        max_object_size=f.size("max_object_size", "256MiB"),
    )
    if not fill.upstreams:
        raise ConfigError("fill.origins: at least one origin (or fill.parent) is required")
    f.finish()

    st = root.section("storage")
    disks = []
    seen: set[Path] = set()
    for d in st.sections("disks"):
        p = Path(d.str("path", ""))
        if not str(p):
            raise ConfigError(f"{d.key('path')}: required")
        p = p if p.is_absolute() else (base / p).resolve()
        if p in seen:
            raise ConfigError(f"{d.key('path')}: disk listed twice: {p}")
        seen.add(p)
        size = d.size("size", 0)
        if size < 16 * 2**20:
            raise ConfigError(f"{d.key('size')}: must be at least 16MiB")
        disks.append(DiskConfig(path=p, size=size))
        d.finish()
    if not disks:
        raise ConfigError("storage.disks: at least one [[storage.disks]] is required")
    chunk_size = st.size("chunk_size", "1MiB")
    if not 64 * 1024 <= chunk_size <= 64 * 2**20:
        raise ConfigError("storage.chunk_size: must be between 64KiB and 64MiB")
    storage = StorageConfig(
        disks=tuple(disks),
        verify_checksums=st.bool("verify_checksums", True),
        chunk_size=chunk_size,
        sync=st.bool("sync", True),
    )
    st.finish()

    t = root.section("tokens")
    required = t.bool("required", False)
    keys: dict[str, bytes] = {}
    for kid, secret in t.str_map("keys").items():
        if not kid or "." in kid or "/" in kid:
            raise ConfigError(f"tokens.keys.{kid}: a kid must not contain '.' or '/'")
        try:
            keys[kid] = _secret(secret)
        except ValueError as e:
            raise ConfigError(f"tokens.keys.{kid}: {e}") from None
    if required and not keys:
        raise ConfigError("tokens.keys: tokens.required is true but no keys are configured")
    tokens = TokenConfig(required=required, keys=keys)
    t.finish()

    lg = root.section("log")
    level = lg.str("level", "info").lower()
    if level not in ("debug", "info", "warning", "error"):
        raise ConfigError(f"log.level: expected debug/info/warning/error, got {level!r}")
    lg.finish()

    rt = root.section("runtime")
    run_dir_s = rt.str("run_dir", "")
    run_dir = Path(run_dir_s) if run_dir_s else disks[0].path.parent / "run"
    if not run_dir.is_absolute():
        run_dir = (base / run_dir).resolve()
    rt.finish()
    root.finish()
    return ApplianceConfig(server, admin, fill, storage, tokens, level, run_dir, source)
