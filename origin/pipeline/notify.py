"""Stage ``notify``: the webhook for a title that became READY (:mod:`.webhook`).

Its own job, enqueued in the transaction that completes ``publish``, so a notification is
never lost to a crash between publishing and sending. The stage completes whatever the
receiver does: every delivery is counted (``Context.on_webhook``); one that was given up is
logged and recorded in the job's result, and never fails the job, since a failed job of a
READY video would say the title failed when it did not (the catalog keeps it READY either way).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from typing import Any

import aiohttp

from origin.catalog import Job
from origin.pipeline.jobs import READY_EVENT, parse
from origin.pipeline.stage import Context, Done
from origin.pipeline.webhook import Delivery, deliver

log = logging.getLogger("origin.pipeline.notify")


def body_of(payload: Mapping[str, Any]) -> dict[str, Any]:
    """The webhook body: the job's payload, checked."""

    def build() -> dict[str, Any]:
        if payload.get("event") != READY_EVENT or not isinstance(payload.get("video_id"), str):
            raise ValueError("not a video.ready notification")
        return {
            "event": READY_EVENT,
            "video_id": payload["video_id"],
            "updated_at": float(payload["updated_at"]),
        }

    return parse("notify payload", build)


async def run(ctx: Context, job: Job) -> Done:
    body = body_of(job.payload)
    url = ctx.webhook.url
    if url is None:
        delivery = Delivery(False, 0, None, "no webhook url is configured")
    else:
        async with aiohttp.ClientSession() as session:
            delivery = await deliver(
                session,
                url,
                body,
                token=ctx.webhook.token,
                timeout_s=ctx.webhook.timeout_s,
                attempts=ctx.webhook.attempts,
            )
    if url is not None:
        ctx.on_webhook(delivery)
    if url is not None and not delivery.delivered:
        log.warning(
            "webhook not delivered",
            extra={
                "video_id": job.video_id,
                "attempts": delivery.attempts,
                "status": delivery.status,
                "error": delivery.error,
            },
        )
    return Done(result=dataclasses.asdict(delivery))
