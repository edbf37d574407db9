"""Origin configuration: frozen dataclasses read once from a TOML file by :func:`load`.

```toml
[server]
listen = ["127.0.0.1:8081"]      # host:port, several allowed ("[::]:8081" for IPv6)

[media]
root = "./var/origin/media"      # holds v/{video_id}/...; relative to the working directory

[log]
level = "info"                   # debug | info | warning | error
```

Every problem raises :class:`vodedge.configfile.ConfigError` naming the key; unknown keys too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, cast, get_args

from vodedge.configfile import ConfigError, Section, parse_listen, read_toml

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


@dataclass(frozen=True, slots=True)
class LogConfig:
    level: LogLevel = "info"
    """Lowest level written to stderr (JSON lines); access log lines are ``info``."""


@dataclass(frozen=True, slots=True)
class OriginConfig:
    server: ServerConfig = field(default_factory=ServerConfig)
    media: MediaConfig = field(default_factory=MediaConfig)
    log: LogConfig = field(default_factory=LogConfig)


def load(path: str | Path) -> OriginConfig:
    """Read and validate ``path``; raise :class:`ConfigError` naming the first bad key."""
    return from_dict(read_toml(path))


def from_dict(data: dict[str, object]) -> OriginConfig:
    top = Section(dict(data))
    server = _server(top.section("server"))
    media = _media(top.section("media"))
    log = _log(top.section("log"))
    top.finish()
    return OriginConfig(server=server, media=media, log=log)


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
    root = s.str("root", str(MediaConfig().root))
    if not root.strip():
        raise ConfigError(f"{s.key('root')}: must not be empty")
    s.finish()
    return MediaConfig(root=Path(root))


def _log(s: Section) -> LogConfig:
    level = s.str("level", LogConfig().level).lower()
    if level not in LOG_LEVELS:
        raise ConfigError(
            f"{s.key('level')}: expected one of {', '.join(LOG_LEVELS)}, got {level!r}"
        )
    s.finish()
    return LogConfig(level=cast(LogLevel, level))
