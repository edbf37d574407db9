"""Appliance configuration: typed, frozen, validated once at start-up.

``load(path)`` reads the TOML file (see ``firmware-config/appliance.toml`` for every key with
comments) and returns an :class:`ApplianceConfig` or raises
:class:`vodedge.configfile.ConfigError` naming the offending key.
"""

from __future__ import annotations

import base64
import binascii
import copy
import hashlib
import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from vodedge.configfile import ConfigError, Section, parse_base_url, parse_listen, read_toml
from vodedge.files import write_file_atomic


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
    shutdown_timeout: float = 30.0
    """Seconds SIGTERM waits for in-flight responses before closing what is left."""


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
    body_timeout: float = 300.0
    """Seconds for the whole body: an upstream that trickles a byte just inside every
    ``idle_timeout`` must not hold a key (and its waiters and memory) in flight for ever."""
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
    require_mount: bool = False
    """Only use ``path`` if it is a mount point: a disk whose mount failed is taken out of
    service instead of filling the root file system."""


@dataclass(frozen=True, slots=True)
class StorageConfig:
    disks: tuple[DiskConfig, ...]
    verify_checksums: bool = True
    chunk_size: int = 2**20
    """Body chunk size in LMDB; see docs/architecture.md for the measurement behind 1 MiB."""
    sync: bool = True
    """fdatasync on commit (LMDB sync); the meta page is never synced separately (metasync off)."""
    ram_cache_size: int = 2**30
    """RAM tier of verified hot chunks, split evenly across workers (0 = off); see
    :mod:`appliance.ramcache`."""


@dataclass(frozen=True, slots=True)
class PrefillConfig:
    default_rate: int = 50 * 10**6
    """Bytes/s for a job that names no ``rate_bytes_per_s``."""
    max_rate: int = 0
    """Ceiling on any job's rate (0 = none); a job asking for more runs at this rate."""
    default_concurrency: int = 4
    max_concurrency: int = 16
    pause_at_player_fills: int = 32
    """A worker starts no prefill fetch while it has this many player fills in flight."""
    window: tuple[int, int] | None = None
    """Fill window as minutes after local midnight [start, end); None = always."""


@dataclass(frozen=True, slots=True)
class ControlPlaneConfig:
    url: str | None = None
    """Control plane base URL; None disables the heartbeat."""
    appliance_id: str = ""
    credential: str = ""
    interval: float = 5.0
    timeout: float = 3.0
    public_url: str = ""
    site: str = ""


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
    prefill: PrefillConfig = field(default_factory=PrefillConfig)
    control_plane: ControlPlaneConfig = field(default_factory=ControlPlaneConfig)
    log_level: str = "info"
    run_dir: Path = Path("var/run")
    """Where worker-to-worker sockets and multiprocess metric files live (may be tmpfs)."""
    state_dir: Path = Path("var/state")
    """What must survive a restart: prefill jobs, drain flag, control-plane overlay."""
    base_dir: Path = field(default_factory=Path.cwd)
    """Relative paths in the file are resolved against this (the config file's folder)."""
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    """The parsed TOML this was built from (reload merges at this level)."""
    overlay: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    """What the control plane sent last (see :func:`apply_overlay`)."""
    digest: str = ""


def _listen_list(v: Any) -> tuple[tuple[str, int], ...]:
    if not isinstance(v, list) or not v:
        raise ValueError("expected a non-empty list of 'host:port'")
    return tuple(parse_listen(x) for x in v)


def _secret(v: str) -> bytes:
    """Secrets are given as text; ``base64:...`` gives raw bytes."""
    if v.startswith("base64:"):
        try:
            raw = base64.b64decode(v[7:], validate=True)
        except binascii.Error:
            raise ValueError("invalid base64 secret") from None
        if len(raw) < 16:  # "base64:" alone would be an empty key anyone can sign with
            raise ValueError("secret must be at least 16 bytes")
        return raw
    if len(v) < 16:
        raise ValueError("secret must be at least 16 characters")
    return v.encode()


def load(path: str | Path) -> ApplianceConfig:
    """Read and validate a config file."""
    p = Path(path)
    return from_raw(read_toml(p), p.resolve().parent)


def from_raw(
    raw: dict[str, Any], base: Path, overlay: dict[str, Any] | None = None
) -> ApplianceConfig:
    """Validate a parsed config; ``overlay`` is what the control plane sent (token keys, fill
    window), applied on top of the file's values."""
    cfg = _from_section(Section(copy.deepcopy(raw)), base)
    if overlay:
        cfg = apply_overlay(cfg, overlay)
    digest = hashlib.sha256(
        json.dumps([raw, overlay or {}], sort_keys=True, default=str).encode()
    ).hexdigest()[:16]
    return replace(cfg, raw=raw, overlay=dict(overlay or {}), digest=digest)


def write_snapshot(path: Path, cfg: ApplianceConfig) -> None:
    """The running config for the workers: a worker (re)started later runs exactly this, even
    if the file on disk has since been edited or broken."""
    write_file_atomic(
        path,
        json.dumps(
            {"base": str(cfg.base_dir), "raw": cfg.raw, "overlay": cfg.overlay}, default=str
        ).encode(),
    )


def load_snapshot(path: Path) -> ApplianceConfig:
    snap = json.loads(path.read_text())
    return from_raw(snap["raw"], Path(snap["base"]), snap["overlay"])


def _from_section(root: Section, base: Path) -> ApplianceConfig:
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
        shutdown_timeout=s.float("shutdown_timeout", 30.0, minimum=0.0),
    )
    s.finish()

    a = root.section("admin")
    admin_listen = a.str("listen", "127.0.0.1:8090")
    admin = AdminConfig(
        listen=a.convert("listen", admin_listen, parse_listen) if admin_listen else None,
        token=a.str("token", ""),
    )
    if admin.token.startswith("REPLACE-ME"):
        raise ConfigError("admin.token: replace the placeholder with a random token")
    if admin.listen is not None and len(admin.token) < 16:
        raise ConfigError(
            "admin.token: at least 16 characters are required when admin.listen is set"
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
        body_timeout=f.float("body_timeout", 300.0, minimum=0.01),
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
        disks.append(DiskConfig(path=p, size=size, require_mount=d.bool("require_mount", False)))
        d.finish()
    if not disks:
        raise ConfigError("storage.disks: at least one [[storage.disks]] is required")
    chunk_size = st.size("chunk_size", "1MiB")
    if not 64 * 1024 <= chunk_size <= 64 * 2**20:
        raise ConfigError("storage.chunk_size: must be between 64KiB and 64MiB")
    ram_cache_size = st.size("ram_cache_size", "1GiB")
    if 0 < ram_cache_size < 64 * 2**20:
        raise ConfigError("storage.ram_cache_size: must be 0 (off) or at least 64MiB")
    storage = StorageConfig(
        disks=tuple(disks),
        verify_checksums=st.bool("verify_checksums", True),
        chunk_size=chunk_size,
        sync=st.bool("sync", True),
        ram_cache_size=ram_cache_size,
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

    pf = root.section("prefill")
    window_s = pf.str("window", "")
    prefill = PrefillConfig(
        default_rate=pf.size("default_rate", "50MB"),
        max_rate=pf.size("max_rate", 0),
        default_concurrency=pf.int("default_concurrency", 4, minimum=1),
        max_concurrency=pf.int("max_concurrency", 16, minimum=1),
        pause_at_player_fills=pf.int("pause_at_player_fills", 32, minimum=1),
        window=pf.convert("window", window_s, parse_window) if window_s else None,
    )
    pf.finish()

    cp = root.section("control_plane")
    cp_url = cp.str("url", "")
    control_plane = ControlPlaneConfig(
        url=cp.convert("url", cp_url, parse_base_url) if cp_url else None,
        appliance_id=cp.str("appliance_id", ""),
        credential=cp.str("credential", ""),
        interval=cp.float("interval", 5.0, minimum=0.1),
        timeout=cp.float("timeout", 3.0, minimum=0.1),
        public_url=cp.str("public_url", ""),
        site=cp.str("site", ""),
    )
    if control_plane.url and not control_plane.appliance_id:
        raise ConfigError("control_plane.appliance_id: required when control_plane.url is set")
    cp.finish()

    rt = root.section("runtime")
    run_dir = _dir(rt.str("run_dir", ""), disks[0].path.parent / "run", base)
    state_dir = _dir(rt.str("state_dir", ""), disks[0].path.parent / "state", base)
    rt.finish()
    root.finish()
    return ApplianceConfig(
        server=server,
        admin=admin,
        fill=fill,
        storage=storage,
        tokens=tokens,
        prefill=prefill,
        control_plane=control_plane,
        log_level=level,
        run_dir=run_dir,
        state_dir=state_dir,
        base_dir=base,
    )


def _dir(value: str, default: Path, base: Path) -> Path:
    p = Path(value) if value else default
    return p if p.is_absolute() else (base / p).resolve()


def parse_window(value: str) -> tuple[int, int]:
    """``"02:00-14:00"`` -> (120, 840): minutes after local midnight; may wrap past midnight."""
    try:
        a, b = value.split("-")
        start, end = (_minutes(x) for x in (a, b))
    except ValueError:
        raise ValueError(f"expected 'HH:MM-HH:MM', got {value!r}") from None
    if start == end:
        raise ValueError("an empty window: start equals end")
    return start, end


def _minutes(hhmm: str) -> int:
    h, m = hhmm.strip().split(":")
    hi, mi = int(h), int(m)
    if not (0 <= hi <= 24 and 0 <= mi < 60 and hi * 60 + mi <= 1440):
        raise ValueError(hhmm)
    return hi * 60 + mi


def apply_overlay(cfg: ApplianceConfig, overlay: dict[str, Any]) -> ApplianceConfig:
    """Apply what the control plane sent: ``token_keys`` {kid: secret} are added to (and win
    over) the file's keys; ``fill_window`` "HH:MM-HH:MM" (or "" for always) replaces
    ``prefill.window``. Raises ConfigError on a bad value."""
    tokens, prefill = cfg.tokens, cfg.prefill
    keys = overlay.get("token_keys")
    if keys is not None:
        if not isinstance(keys, dict):
            raise ConfigError("control plane token_keys: expected an object")
        merged = dict(cfg.tokens.keys)
        for kid, secret in keys.items():
            if not isinstance(kid, str) or not kid or "." in kid or "/" in kid:
                raise ConfigError(f"control plane token_keys: bad kid {kid!r}")
            if not isinstance(secret, str):
                raise ConfigError(f"control plane token_keys.{kid}: expected a string")
            try:
                merged[kid] = _secret(secret)
            except ValueError as e:
                raise ConfigError(f"control plane token_keys.{kid}: {e}") from None
        tokens = replace(tokens, keys=merged)
    window = overlay.get("fill_window")
    if window is not None:
        if not isinstance(window, str):
            raise ConfigError("control plane fill_window: expected 'HH:MM-HH:MM' or ''")
        try:
            prefill = replace(prefill, window=parse_window(window) if window else None)
        except ValueError as e:
            raise ConfigError(f"control plane fill_window: {e}") from None
    return replace(cfg, tokens=tokens, prefill=prefill)


RESTART_ONLY = ("server", "storage", "runtime", "admin.listen")
"""Keys a reload cannot change (sockets, worker count, disks, paths): they need a restart."""


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        name = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(_flatten(v, name + "."))
        else:
            out[name] = v
    return out


def _restart_only(key: str) -> bool:
    return any(key == p or key.startswith(p + ".") for p in RESTART_ONLY)


def merge_reload(
    running: dict[str, Any], new: dict[str, Any]
) -> tuple[dict[str, Any], list[str], list[str]]:
    """What a reload applies: the new file, except restart-only keys keep their running values.

    Returns (effective raw config, keys changed live, changed keys that need a restart).
    """
    old_flat, new_flat = _flatten(running), _flatten(new)
    changed = sorted(
        k for k in old_flat.keys() | new_flat.keys() if old_flat.get(k) != new_flat.get(k)
    )
    live = [k for k in changed if not _restart_only(k)]
    restart = [k for k in changed if _restart_only(k)]
    effective = copy.deepcopy(new)
    for path in RESTART_ONLY:
        head, _, leaf = path.partition(".")
        if not leaf:
            if head in running:
                effective[head] = copy.deepcopy(running[head])
            else:
                effective.pop(head, None)
            continue
        src = running.get(head, {})
        dst = effective.setdefault(head, {})
        if leaf in src:
            dst[leaf] = copy.deepcopy(src[leaf])
        else:
            dst.pop(leaf, None)
    return effective, live, restart
