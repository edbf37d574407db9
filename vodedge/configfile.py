"""Reading TOML config files into typed dataclasses, with one clear error line per problem.

Each service defines frozen dataclasses and a ``load`` function that walks the parsed TOML with a
:class:`Section`; every failure raises :class:`ConfigError` naming the offending key, e.g.
``storage.disks[1].size: not a size: '12XB'``. Unknown keys are errors too (typos are the most
common config bug).
"""

from __future__ import annotations

import builtins
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from vodedge.sizes import parse_size

T = TypeVar("T")


class ConfigError(ValueError):
    """A config file that cannot be used; the message names the key."""


def read_toml(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    try:
        with p.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{p}: config file not found") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{p}: not valid TOML: {e}") from None
    except OSError as e:
        raise ConfigError(f"{p}: cannot read: {e.strerror}") from None


class Section:
    """A TOML table being read; remembers its dotted name and which keys were used."""

    def __init__(self, data: dict[builtins.str, Any], name: builtins.str = "") -> None:
        if not isinstance(data, dict):
            raise ConfigError(f"{name or 'config'}: expected a table")
        self._data = data
        self._name = name
        self._used: set[builtins.str] = set()

    def key(self, k: builtins.str) -> builtins.str:
        return f"{self._name}.{k}" if self._name else k

    def _get(self, k: builtins.str, default: Any) -> Any:
        self._used.add(k)
        return self._data.get(k, default)

    def section(self, k: builtins.str) -> Section:
        return Section(self._get(k, {}), self.key(k))

    def sections(self, k: builtins.str) -> list[Section]:
        raw = self._get(k, [])
        if not isinstance(raw, list):
            raise ConfigError(f"{self.key(k)}: expected an array of tables ([[{self.key(k)}]])")
        return [Section(item, f"{self.key(k)}[{i}]") for i, item in enumerate(raw)]

    def typed(self, k: builtins.str, kind: type[T], default: T) -> T:
        v = self._get(k, default)
        if (
            kind is builtins.float
            and isinstance(v, builtins.int)
            and not isinstance(v, builtins.bool)
        ):
            v = builtins.float(v)
        if not isinstance(v, kind) or (kind is builtins.int and isinstance(v, builtins.bool)):
            raise ConfigError(f"{self.key(k)}: expected {kind.__name__}, got {v!r}")
        return v

    def str(self, k: builtins.str, default: builtins.str) -> builtins.str:
        return self.typed(k, builtins.str, default)

    def int(
        self, k: builtins.str, default: builtins.int, minimum: builtins.int | None = None
    ) -> builtins.int:
        v = self.typed(k, builtins.int, default)
        if minimum is not None and v < minimum:
            raise ConfigError(f"{self.key(k)}: must be >= {minimum}, got {v}")
        return v

    def float(
        self, k: builtins.str, default: builtins.float, minimum: builtins.float | None = None
    ) -> builtins.float:
        v = self.typed(k, builtins.float, default)
        if minimum is not None and v < minimum:
            raise ConfigError(f"{self.key(k)}: must be >= {minimum}, got {v}")
        return v

    def bool(self, k: builtins.str, default: builtins.bool) -> builtins.bool:
        return self.typed(k, builtins.bool, default)

    def size(self, k: builtins.str, default: builtins.str | builtins.int) -> builtins.int:
        v = self._get(k, default)
        try:
            return parse_size(v)
        except (ValueError, TypeError) as e:
            raise ConfigError(f"{self.key(k)}: {e}") from None

    def str_list(self, k: builtins.str, default: list[builtins.str]) -> list[builtins.str]:
        v = self._get(k, default)
        if not isinstance(v, list) or not all(isinstance(x, builtins.str) for x in v):
            raise ConfigError(f"{self.key(k)}: expected a list of strings, got {v!r}")
        return list(v)

    def str_map(self, k: builtins.str) -> dict[builtins.str, builtins.str]:
        v = self._get(k, {})
        if not isinstance(v, dict) or not all(isinstance(x, builtins.str) for x in v.values()):
            raise ConfigError(f"{self.key(k)}: expected a table of strings")
        return dict(v)

    def convert(self, k: builtins.str, default: Any, fn: Callable[[Any], T]) -> T:
        v = self._get(k, default)
        try:
            return fn(v)
        except (ValueError, TypeError) as e:
            raise ConfigError(f"{self.key(k)}: {e}") from None

    def finish(self) -> None:
        """Raise on keys that were never read (typos, misplaced keys)."""
        unknown = sorted(set(self._data) - self._used)
        if unknown:
            raise ConfigError(f"{self.key(unknown[0])}: unknown key")


def parse_listen(value: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` -> (host, port)."""
    if not isinstance(value, str):
        raise ValueError(f"expected 'host:port', got {value!r}")
    host, sep, port_s = value.rpartition(":")
    if not sep or not (port_s.isascii() and port_s.isdigit()):
        raise ValueError(f"expected 'host:port', got {value!r}")
    host = host.strip("[]")
    port = int(port_s)
    if not host or not 0 <= port <= 65535:
        raise ValueError(f"expected 'host:port', got {value!r}")
    return host, port


def parse_base_url(value: str) -> str:
    """An http(s) base URL without trailing slash."""
    if not isinstance(value, str) or not value.startswith(("http://", "https://")):
        raise ValueError(f"expected an http(s) URL, got {value!r}")
    return value.rstrip("/")
