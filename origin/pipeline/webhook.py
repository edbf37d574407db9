"""Telling the control plane that a title is READY: one JSON POST, retried a bounded number
of times.

Request: ``POST {webhook.url}`` with ``Content-Type: application/json``, the body
``{"event": "video.ready", "video_id": …, "updated_at": …}`` and, when a token is configured,
``Authorization: Bearer {token}``. Delivery is at least once (a worker may die after the POST
and before recording it); receivers drop repeats by ``(video_id, updated_at)``.

Attempts (:func:`deliver`): at most ``webhook.attempts``, each bounded by ``webhook.timeout_s``,
:func:`backoff` seconds apart (1, 2, 4 … capped at :data:`BACKOFF_MAX_S`).

- 2xx: delivered.
- 408, 429 and 5xx, timeouts, connection errors: tried again.
- Any other status (400, 401, 404 …): refused; the same request would be refused again, so
  it is not repeated.

The outcome is a :class:`Delivery`, never an exception: failing to notify must not undo a
publish. The caller logs and counts what was not delivered.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import aiohttp

BACKOFF_BASE_S = 1.0
BACKOFF_MAX_S = 30.0
_RETRY_STATUSES = frozenset({408, 429})


WebhookOutcome = Literal["delivered", "refused", "gave_up"]
"""How a notification ended (:attr:`Delivery.outcome`): accepted; ``refused`` with a status
that retrying cannot change; ``gave_up`` after every attempt timed out, could not connect or
got a status worth retrying."""


@dataclass(frozen=True, slots=True)
class Delivery:
    delivered: bool
    attempts: int
    status: int | None
    """HTTP status of the last attempt; None if it got no response."""
    error: str | None

    @property
    def outcome(self) -> WebhookOutcome:
        if self.delivered:
            return "delivered"
        if self.status is not None and not worth_retrying(self.status):
            return "refused"
        return "gave_up"


def headers(token: str) -> dict[str, str]:
    out = {"Content-Type": "application/json"}
    if token:
        out["Authorization"] = f"Bearer {token}"
    return out


def backoff(attempt: int) -> float:
    """Seconds to wait after the ``attempt``-th failed try (1-based)."""
    return min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2.0 ** max(0, attempt - 1))


def worth_retrying(status: int) -> bool:
    return status >= 500 or status in _RETRY_STATUSES


async def deliver(
    session: aiohttp.ClientSession,
    url: str,
    body: Mapping[str, Any],
    *,
    token: str,
    timeout_s: float,
    attempts: int,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> Delivery:
    """POST ``body`` to ``url`` until it is accepted, refused, or ``attempts`` are used up."""
    status: int | None = None
    error: str | None = None
    for attempt in range(1, attempts + 1):
        if attempt > 1:
            await sleep(backoff(attempt - 1))
        try:
            async with session.post(
                url,
                json=dict(body),
                headers=headers(token),
                timeout=aiohttp.ClientTimeout(total=timeout_s),
                allow_redirects=False,
            ) as response:
                status = response.status
                await response.read()
        except TimeoutError:
            status, error = None, f"no answer within {timeout_s:g} s"
            continue
        except aiohttp.ClientError as e:
            status, error = None, f"{type(e).__name__}: {e}"
            continue
        if 200 <= status < 300:
            return Delivery(True, attempt, status, None)
        error = f"answered {status}"
        if not worth_retrying(status):
            return Delivery(False, attempt, status, f"{error}: refused, not repeated")
    return Delivery(False, attempts, status, error)
