"""Heartbeat to the control plane (DESIGN.md): ``POST /api/v1/appliances/{id}/heartbeat``.

Every ``control_plane.interval`` seconds the supervisor sends the appliance's state, disks,
load, holdings per title and request counts per title since the last accepted beat. When the
control plane is down the appliance keeps serving: beats back off (doubling, at most
``MAX_BACKOFF`` seconds) and request counts are merged into the next beat, never queued, so
memory stays bounded by the number of titles. A 200 answer may carry ``{"config": {...}}``
(``token_keys``, ``fill_window``), handed to ``apply`` (see ``config.apply_overlay``).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from appliance import supmetrics as sm
from appliance.config import ControlPlaneConfig
from appliance.metrics import TIMEOUTS

log = logging.getLogger("appliance.heartbeat")

MAX_BACKOFF = 60.0
MAX_PENDING_TITLES = 200_000
"""Request counts kept for titles while the control plane is unreachable."""

Collect = Callable[[], Awaitable[tuple[dict[str, Any], dict[str, int]]]]
"""Returns (the beat without ``requests``, request counts per title since the last call)."""
Apply = Callable[[dict[str, Any]], Awaitable[None]]


def next_delay(interval: float, failures: int, rand: float) -> float:
    """Seconds to the next beat: the interval, or a doubling back-off with ±10 % jitter."""
    if failures <= 0:
        return float(interval)
    return float(min(MAX_BACKOFF, interval * 2.0 ** min(failures, 10)) * (0.9 + 0.2 * rand))


def merge_counts(pending: dict[str, int], new: dict[str, int]) -> int:
    """Add ``new`` into ``pending``; returns how many titles were dropped to stay bounded."""
    dropped = 0
    for vid, n in new.items():
        if vid in pending:
            pending[vid] += n
        elif len(pending) < MAX_PENDING_TITLES:
            pending[vid] = n
        else:
            dropped += 1
    return dropped


class Heartbeat:
    def __init__(
        self, config: Callable[[], ControlPlaneConfig], collect: Collect, apply: Apply
    ) -> None:
        self.config = config
        self.collect = collect
        self.apply = apply
        self.seq = 0
        self.pending: dict[str, int] = {}
        self.failures = 0
        self.last_success_at: float | None = None
        self.last_error: str | None = None

    def status(self) -> dict[str, Any]:
        return {
            "configured": self.config().url is not None,
            "last_success_at": self.last_success_at,
            "consecutive_failures": self.failures,
            "last_error": self.last_error,
        }

    async def run(self) -> None:
        async with aiohttp.ClientSession() as session:
            while True:
                cfg = self.config()
                if cfg.url is None:
                    await asyncio.sleep(5.0)  # may be configured by a reload
                    continue
                try:
                    await self.beat(session, cfg)
                except Exception as e:  # collect/apply failing (disk full...) must not stop it
                    log.exception("heartbeat round failed")
                    self._failed("error", f"{type(e).__name__}: {e}")
                await asyncio.sleep(next_delay(cfg.interval, self.failures, random.random()))

    async def beat(self, session: aiohttp.ClientSession, cfg: ControlPlaneConfig) -> bool:
        body, counts = await self.collect()
        merge_counts(self.pending, counts)
        self.seq += 1
        body = body | {"seq": self.seq, "sent_at": time.time(), "requests": self.pending}
        url = f"{cfg.url}/api/v1/appliances/{cfg.appliance_id}/heartbeat"
        headers = {"Authorization": f"Bearer {cfg.credential}"} if cfg.credential else {}
        try:
            async with session.post(
                url, json=body, headers=headers, timeout=aiohttp.ClientTimeout(total=cfg.timeout)
            ) as resp:
                if resp.status != 200:
                    raise _Refused(f"control plane answered {resp.status}")
                answer = await resp.json(content_type=None) if resp.content_length != 0 else {}
        except TimeoutError:
            TIMEOUTS.labels("heartbeat").inc()
            return self._failed("timeout", f"no answer in {cfg.timeout}s")
        except _Refused as e:
            return self._failed("refused", str(e))
        except (aiohttp.ClientError, OSError, ValueError) as e:
            return self._failed("error", f"{type(e).__name__}: {e}")
        self.pending = {}
        self.failures = 0
        self.last_error = None
        self.last_success_at = time.time()
        sm.HEARTBEATS.labels("ok").inc()
        sm.HEARTBEAT_LAST_SUCCESS.set(self.last_success_at)
        config = answer.get("config") if isinstance(answer, dict) else None
        if isinstance(config, dict) and config:
            await self.apply(config)
        return True

    def _failed(self, result: str, error: str) -> bool:
        sm.HEARTBEATS.labels(result).inc()
        if self.failures == 0 or self.last_error != error:
            log.warning("heartbeat failed", extra={"error": error, "failures": self.failures + 1})
        self.failures += 1
        self.last_error = error
        return False


class _Refused(Exception):
    pass
