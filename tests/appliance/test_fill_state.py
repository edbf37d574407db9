"""A fill's own state: who decides its end, what happens to a listener that breaks, which fills a
cancelled prefill job stops, and a commit undone by a purge. Real event loop, real LMDB; the
end-to-end miss path is covered through worker processes elsewhere."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any, cast

import aiohttp

from appliance.cache import CacheManager
from appliance.config import DiskConfig, FillConfig, StorageConfig
from appliance.fill import CompletedBody, Fill, FillAborted, Filler
from appliance.peer import PeerClient, PeerFills
from appliance.respond import ObjectFacts
from appliance.store import Store

KEY = "/v/fs/r/seg-00001.m4s"


def test_the_first_end_of_a_fill_decides_it() -> None:
    async def go() -> None:
        fill = Fill(KEY)
        fill.finish()
        fill.finish(FillAborted("a cancellation that reached it late"))
        assert fill.done and fill.error is None

    asyncio.run(go())


class _Listener:
    def __init__(self, broken: bool) -> None:
        self.broken = broken
        self.calls = 0
        self.abandoned = 0

    def fill_changed(self, fill: Fill) -> None:
        self.calls += 1
        if self.broken:
            raise RuntimeError("a bug in one waiter")

    def abandon(self) -> None:
        self.abandoned += 1


def test_a_listener_that_raises_is_abandoned_and_the_others_still_hear() -> None:
    async def go() -> None:
        fill = Fill(KEY)
        bad, good = _Listener(broken=True), _Listener(broken=False)
        fill.listen(bad)
        fill.listen(good)
        fill.append(b"x")
        fill.append(b"y")
        assert (bad.calls, bad.abandoned) == (1, 1)  # its client is answered, then left out
        assert good.calls == 2

    asyncio.run(go())


def test_cancelling_a_prefill_job_spares_fills_that_ended_or_that_others_want() -> None:
    async def go() -> None:
        filler = Filler(
            FillConfig(origins=("http://127.0.0.1:9",), parent=None),
            cast(aiohttp.ClientSession, None),
            _never_called,
        )
        fills = {}
        for name in ("only", "committing", "two_jobs", "player"):
            f = Fill(f"/v/fs/{name}/seg-00001.m4s")
            f.prefill_jobs.add("j")
            f.task = asyncio.create_task(asyncio.sleep(30))
            filler.fills[f.key] = fills[name] = f
        fills["committing"].finish()  # fetched; its commit is under way
        fills["two_jobs"].prefill_jobs.add("k")
        fills["player"].players = 1
        assert filler.cancel_prefill("j") == 1
        await asyncio.sleep(0)
        cancelled = {n for n, f in fills.items() if f.task is not None and f.task.cancelled()}
        assert cancelled == {"only"}
        assert fills["two_jobs"].prefill_jobs == {"k"}
        for f in fills.values():
            assert f.task is not None
            f.task.cancel()

    asyncio.run(go())


async def _never_called(_: CompletedBody) -> None:
    raise AssertionError("no commit expected")


def test_a_commit_purged_while_it_was_written_is_undone(tmp_path: Path) -> None:
    async def go() -> None:
        cfg = StorageConfig(disks=(DiskConfig(tmp_path / "d0", 64 * 2**20),), sync=False)
        store = Store(cfg)
        store.open()
        cache = CacheManager(store, 0, 1, cfg.chunk_size)
        policy = cache.policies[0]
        body = os.urandom(100_000)
        facts = ObjectFacts(len(body), "video/iso.segment", '"e"', 0.0, "public", 0.0)
        purged = {"now": False, "during_put": True}

        def still_wanted() -> bool:
            return not purged["now"]

        put = store.put

        async def put_then_purge(*args: Any) -> Any:
            got = await put(*args)
            if purged["during_put"]:
                purged["now"] = True  # the purge ran while the writer thread committed
            return got

        store.put = put_then_purge  # type: ignore[method-assign,assignment]
        try:
            await cache.store_completed(CompletedBody(KEY, facts, body, False, still_wanted))
            assert store.open_view(KEY) is None  # the commit was undone
            assert KEY not in policy
            purged["now"] = purged["during_put"] = False
            await cache.store_completed(CompletedBody(KEY, facts, body, False, still_wanted))
            view = store.open_view(KEY)
            assert view is not None and KEY in policy  # the same commit, not purged: kept
            view.release()
        finally:
            store.close()

    asyncio.run(go())


class _BrokenOwner:
    """A peer client whose answer cannot be read (a fault forced on purpose)."""

    async def fill(self, *_: Any) -> Any:
        raise ValueError("malformed X-Fill-Head from the owner")


def test_a_relay_that_fails_unexpectedly_ends_its_fill_so_waiters_do_not_hang() -> None:
    async def go() -> None:
        relays = PeerFills(cast(PeerClient, _BrokenOwner()))
        fill, joined = relays.join(1, KEY)
        assert not joined and fill.task is not None
        await asyncio.wait_for(fill.task, 5)
        assert fill.done and isinstance(fill.error, FillAborted)
        assert KEY not in relays.fills  # the next request starts afresh

    asyncio.run(go())
