"""The supervisor's client for the workers' ``/ctl/*`` routes (see :mod:`appliance.control_api`).

Every call has a timeout (``timeout`` seconds, counted in ``vodedge_timeouts_total{kind=
"control"}``) except a prefill fetch, which lasts as long as its fill and has only a connect
timeout. A worker that cannot be reached (restarting) raises :class:`WorkerUnavailable`.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import aiohttp

from appliance import metrics as m
from appliance.peer import socket_path


class WorkerUnavailable(Exception):
    """A worker's control socket did not answer (it is starting, restarting or hung)."""


class WorkerControl:
    def __init__(self, run_dir: Path, nworkers: int, timeout: float = 10.0) -> None:
        self.run_dir = run_dir
        self.nworkers = nworkers
        self.timeout = timeout
        self._sessions: dict[int, aiohttp.ClientSession] = {}

    def _session(self, index: int) -> aiohttp.ClientSession:
        s = self._sessions.get(index)
        if s is None or s.closed:
            conn = aiohttp.UnixConnector(path=str(socket_path(self.run_dir, index)), limit=0)
            s = self._sessions[index] = aiohttp.ClientSession(connector=conn)
        return s

    async def call(
        self,
        index: int,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
        total_s: float | None = -1.0,
    ) -> Any:
        """One control call; ``total_s`` None = no total limit (connect limit still applies)."""
        total = self.timeout if total_s == -1.0 else total_s
        ct = aiohttp.ClientTimeout(total=total, sock_connect=2.0)
        try:
            async with self._session(index).request(
                method, f"http://worker{path}", json=body, params=params, timeout=ct
            ) as resp:
                if resp.status != 200:
                    raise WorkerUnavailable(
                        f"worker {index}: {path}: {resp.status} {await resp.text()}"
                    )
                return await resp.json()
        except TimeoutError:
            m.TIMEOUTS.labels("control").inc()
            raise WorkerUnavailable(f"worker {index}: {path}: no answer in {total}s") from None
        except (aiohttp.ClientError, OSError) as e:
            raise WorkerUnavailable(f"worker {index}: {path}: {e}") from e

    async def each(
        self, method: str, path: str, body: dict[str, Any] | None = None, **kw: Any
    ) -> list[Any]:
        """The same call on every worker; an unavailable worker's answer is the exception."""
        return await asyncio.gather(
            *(self.call(i, method, path, body, **kw) for i in range(self.nworkers)),
            return_exceptions=True,
        )

    async def close(self) -> None:
        for s in self._sessions.values():
            with contextlib.suppress(Exception):
                await s.close()
        self._sessions.clear()
