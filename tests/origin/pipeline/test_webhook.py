"""Webhook delivery against a real loopback server: retried statuses, refused ones, timeouts,
nothing listening; and the pure rules (headers, back-off)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import pytest
from aiohttp import web

from origin.pipeline.webhook import BACKOFF_MAX_S, Delivery, backoff, deliver, headers

BODY = {"event": "video.ready", "video_id": "vid", "updated_at": 12.5}


@dataclass
class Hook:
    """Answers with the next status of ``script`` (the last one repeats); ``None`` = hang."""

    script: list[int | None]
    seen: list[tuple[str | None, object]] = field(default_factory=list)
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.seen.append((request.headers.get("Authorization"), await request.json()))
        status = self.script[min(len(self.seen), len(self.script)) - 1]
        if status is None:
            await asyncio.Event().wait()  # never answers
        return web.Response(status=status or 204)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


async def serve(hook: Hook) -> web.AppRunner:
    app = web.Application()
    app.router.add_post("/hook", hook.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    hook.url = f"http://127.0.0.1:{port}/hook"
    return runner


async def send(
    session: aiohttp.ClientSession,
    hook: Hook,
    *,
    token: str = "t0ken",
    timeout_s: float = 2.0,
    attempts: int = 3,
) -> tuple[Delivery, list[float]]:
    """Deliver ``BODY`` to ``hook`` on a loopback server; also return the back-off sleeps."""
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    runner = await serve(hook)
    try:
        delivery = await deliver(
            session,
            hook.url,
            BODY,
            token=token,
            timeout_s=timeout_s,
            attempts=attempts,
            sleep=sleep,
        )
    finally:
        await runner.cleanup()
    return delivery, slept


async def test_delivered_at_once_with_the_token(session: aiohttp.ClientSession) -> None:
    hook = Hook([204])
    delivery, slept = await send(session, hook)
    assert delivery == Delivery(True, 1, 204, None)
    assert delivery.outcome == "delivered"
    assert hook.seen == [("Bearer t0ken", BODY)]
    assert slept == []


async def test_server_errors_are_retried_with_back_off(session: aiohttp.ClientSession) -> None:
    hook = Hook([503, 429, 200])
    delivery, slept = await send(session, hook)
    assert delivery == Delivery(True, 3, 200, None)
    assert slept == [1.0, 2.0]


async def test_attempts_are_bounded(session: aiohttp.ClientSession) -> None:
    hook = Hook([500])
    delivery, slept = await send(session, hook, attempts=2)
    assert delivery == Delivery(False, 2, 500, "answered 500")
    assert delivery.outcome == "gave_up"
    assert slept == [1.0]
    assert len(hook.seen) == 2


async def test_a_refusal_is_not_repeated(session: aiohttp.ClientSession) -> None:
    hook = Hook([401])
    delivery, _ = await send(session, hook, token="")
    assert delivery == Delivery(False, 1, 401, "answered 401: refused, not repeated")
    assert delivery.outcome == "refused"
    assert hook.seen == [(None, BODY)]


async def test_a_hanging_receiver_times_out_per_attempt(session: aiohttp.ClientSession) -> None:
    hook = Hook([None, 204])
    delivery, _ = await send(session, hook, timeout_s=0.3)
    assert delivery == Delivery(True, 2, 204, None)


async def test_nobody_listening(session: aiohttp.ClientSession) -> None:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    delivery = await deliver(
        session, "http://127.0.0.1:9/hook", BODY, token="", timeout_s=1.0, attempts=2, sleep=sleep
    )
    assert (delivery.delivered, delivery.attempts, delivery.status) == (False, 2, None)
    assert delivery.error is not None and "Connect" in delivery.error
    assert delivery.outcome == "gave_up"


def test_pure_rules() -> None:
    assert headers("") == {"Content-Type": "application/json"}
    assert headers("x")["Authorization"] == "Bearer x"
    assert [backoff(n) for n in (1, 2, 3)] == [1.0, 2.0, 4.0]
    assert backoff(20) == BACKOFF_MAX_S
