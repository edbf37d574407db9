"""The supervisor: the appliance's main process.

It binds the public sockets (:mod:`appliance.listen`) and keeps the worker processes running
(:mod:`appliance.workers`), and it is the only process that talks to the outside about the
box: the admin API (:mod:`appliance.admin`), prefill jobs (:mod:`appliance.prefill_runner`),
the heartbeat to the control plane (:mod:`appliance.heartbeat`) and systemd's notify protocol
(:mod:`vodedge.sdnotify`). It never opens LMDB; it asks the workers over their control
sockets (:mod:`appliance.control`).

Signals: SIGTERM/SIGINT stop gracefully (workers finish in-flight responses within
``server.shutdown_timeout``), exit 0. SIGHUP reloads the config file: the live keys (token keys,
admin token, upstreams and fill timeouts, prefill limits, control plane, log level) apply at
once, keys that need a restart keep their running values and are logged, and a file that does
not validate is rejected whole while the old config keeps running.

Workers always run the *running* config, written to ``{run_dir}/config.json``: a worker that
restarts after the file on disk was edited (or broken) still runs what the others run.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import time
from pathlib import Path
from typing import Any

import psutil
import uvloop
from aiohttp import web

from appliance import metrics as m
from appliance import supmetrics as sm
from appliance.admin.api import make_admin_app
from appliance.config import (
    ApplianceConfig,
    PrefillConfig,
    from_raw,
    merge_reload,
    write_snapshot,
)
from appliance.control import WorkerControl, WorkerUnavailable
from appliance.heartbeat import Heartbeat
from appliance.listen import Listeners
from appliance.prefill_runner import PrefillManager
from appliance.sampler import TrafficWindow, read_totals
from appliance.worker import draining_flag
from appliance.workers import WorkerSet
from vodedge import __version__
from vodedge.configfile import ConfigError, read_toml
from vodedge.files import write_file_atomic
from vodedge.sdnotify import Notifier, ping_watchdog
from vodedge.tasks import TaskSet

log = logging.getLogger("appliance.supervisor")

STATS_INTERVAL = 5.0
ADMIN_STOP_S = 2.0
"""Seconds a stop waits for admin API calls still running."""
HUNG_AFTER_S = 30.0
"""A ready worker whose control socket stays unanswered this long is killed and restarted."""


def overlay_path(state_dir: Path) -> Path:
    """The control plane's last config (token keys, fill window), kept across restarts."""
    return state_dir / "control-plane.json"


class Supervisor:
    def __init__(
        self,
        cfg: ApplianceConfig,
        config_path: Path,
        metrics_dir: Path,
        shutdown_grace: float | None = None,
    ) -> None:
        self.cfg = cfg
        self.config_path = config_path
        self.metrics_dir = metrics_dir
        self.shutdown_grace = (
            cfg.server.shutdown_timeout if shutdown_grace is None else shutdown_grace
        )
        self.started_at = time.time()
        self.notifier = Notifier()
        self.snapshot = cfg.run_dir / "config.json"
        self.listeners = Listeners(cfg.server.listen, cfg.server.workers)
        self.workers = WorkerSet(
            cfg.server.workers,
            self.listeners,
            cfg.run_dir,
            self.snapshot,
            self.shutdown_grace,
            metrics_dir,
        )
        self.control = WorkerControl(cfg.run_dir, cfg.server.workers, timeout=STATS_INTERVAL)
        self.prefill = PrefillManager(cfg.state_dir, cfg.run_dir, self.control, self.prefill_config)
        self.heartbeat = Heartbeat(
            lambda: self.cfg.control_plane, self._collect_beat, self._apply_control_plane
        )
        self.window = TrafficWindow()
        self.draining = draining_flag(cfg.state_dir).exists()
        self.worker_stats: list[dict[str, Any] | None] = [None] * cfg.server.workers
        self._unanswered_since: list[float | None] = [None] * cfg.server.workers
        self.tasks = TaskSet(log)
        self._stop = asyncio.Event()
        self._admin_runner: web.AppRunner | None = None
        self._config_lock = asyncio.Lock()
        """One config change at a time: a reload and a control-plane push each build the new
        config from the running one and switch; interleaved, one would undo the other."""

    # -- process entry --------------------------------------------------------------------

    def run(self) -> int:
        return uvloop.run(self._main())

    async def _main(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        loop.add_signal_handler(signal.SIGHUP, lambda: self.tasks.spawn(self.reload()))
        await asyncio.to_thread(self._prepare)
        sm.START_TIME.set(self.started_at)
        sm.DRAINING.set(1 if self.draining else 0)
        try:
            self.listeners.open()
        except OSError as e:
            log.error("cannot listen", extra={"error": str(e)})
            return 1
        self.workers.start_all()
        await self._start_admin()
        await self.prefill.load()
        self.tasks.spawn(self.prefill.run())
        self.tasks.spawn(self.heartbeat.run())
        self.tasks.spawn(self._watch_workers())
        self.tasks.spawn(self._stats_loop())
        self.tasks.spawn(ping_watchdog(self.notifier))
        await self._stop.wait()
        return await self._shutdown()

    def _prepare(self) -> None:
        self.cfg.run_dir.mkdir(parents=True, exist_ok=True)
        self.cfg.state_dir.mkdir(parents=True, exist_ok=True)
        ov = overlay_path(self.cfg.state_dir)
        if ov.exists():
            try:
                self.cfg = from_raw(self.cfg.raw, self.cfg.base_dir, json.loads(ov.read_text()))
            except (ConfigError, ValueError) as e:
                log.error("ignoring saved control-plane config", extra={"error": str(e)})
        write_snapshot(self.snapshot, self.cfg)

    async def _start_admin(self) -> None:
        if self.cfg.admin.listen is None:
            return
        host, port = self.cfg.admin.listen
        # Stopping waits this long for admin calls in flight (a purge can take minutes): the
        # workers' graceful stop must fit in systemd's TimeoutStopSec after it.
        self._admin_runner = web.AppRunner(
            make_admin_app(self), access_log=None, shutdown_timeout=ADMIN_STOP_S
        )
        await self._admin_runner.setup()
        site = web.TCPSite(self._admin_runner, host, port, backlog=128)
        await site.start()
        addrs = self._admin_runner.addresses
        bound = f"{addrs[0][0]}:{addrs[0][1]}" if addrs else f"{host}:{port}"
        (self.cfg.run_dir / "admin.addr").write_text(bound + "\n")
        log.info("admin API listening", extra={"listen": bound})

    async def _watch_workers(self) -> None:
        announced = False
        while True:
            await asyncio.sleep(0.1)
            self.workers.poll()
            if not announced and self.workers.all_ready():
                announced = True
                listen = ", ".join(f"{h}:{p}" for h, p in self.cfg.server.listen)
                self.notifier.ready(f"serving on {listen} with {len(self.workers)} workers")
                log.info(
                    "appliance ready",
                    extra={"workers": len(self.workers), "listen": self.cfg.server.listen},
                )

    async def _sample_traffic(self) -> None:
        try:
            self.window.add(
                await asyncio.to_thread(read_totals, str(self.metrics_dir), time.time())
            )
        except OSError as e:
            log.warning("cannot read metrics", extra={"error": str(e)})

    async def _stats_loop(self) -> None:
        while True:
            await self._sample_traffic()
            await self._poll_workers()
            await asyncio.sleep(STATS_INTERVAL)

    async def _poll_workers(self) -> None:
        answers = await self.control.each("GET", "/ctl/stats")
        for i, a in enumerate(answers):
            if isinstance(a, dict):
                self.worker_stats[i] = a
                self._unanswered_since[i] = None
                await self._converge(i, a)
                continue
            self.worker_stats[i] = None
            if isinstance(a, asyncio.CancelledError):
                raise a
            # A worker that stays unreachable after it was ready is hung: restart it.
            if not self.workers.workers[i].ready_file.exists():
                self._unanswered_since[i] = None
                continue
            now = time.monotonic()
            since = self._unanswered_since[i]
            if since is None:
                self._unanswered_since[i] = now
            elif now - since >= HUNG_AFTER_S:
                self._unanswered_since[i] = None
                self.workers.kill(i, str(a))

    async def _converge(self, index: int, stats: dict[str, Any]) -> None:
        """A worker that missed a reload or a drain switch (it was starting, or the call timed
        out) is told again: every worker runs the running config and drain state."""
        try:
            if stats.get("config_digest") != self.cfg.digest:
                log.warning("worker on an old config; reloading it", extra={"worker": index})
                await self.control.call(index, "POST", "/ctl/reload", {})
            if stats.get("draining") is not None and stats["draining"] != self.draining:
                await self.control.call(index, "POST", "/ctl/drain", {"draining": self.draining})
        except WorkerUnavailable as e:
            log.warning("worker not converged yet", extra={"worker": index, "error": str(e)})

    async def _shutdown(self) -> int:
        self.notifier.stopping()
        log.info("stopping")
        if self._admin_runner is not None:
            await self._admin_runner.cleanup()
        await self.tasks.cancel_all()
        self.listeners.close()
        await asyncio.to_thread(self.workers.stop, self.shutdown_grace)
        await self.control.close()
        self.notifier.close()
        log.info("stopped")
        return 0

    # -- the admin backend ----------------------------------------------------------------

    def admin_token(self) -> str:
        return self.cfg.admin.token

    def prefill_config(self) -> PrefillConfig:
        return self.cfg.prefill

    def state(self) -> tuple[str, str]:
        if self.workers.running() == 0:
            return "failed", "no worker running"
        known = [s for s in self.worker_stats if s is not None]
        if known and not any(d["healthy"] for d in known[0]["disks"]):
            return "failed", "no disk in service"
        if self.draining:
            return "draining", "drained by an operator"
        return "serving", "ok"

    def health(self) -> tuple[bool, str]:
        state, reason = self.state()
        return state == "serving", state if state == "serving" else f"{state}: {reason}"

    def render_metrics(self) -> bytes:
        return m.render(os.getpid())

    def _disks(self, stats: list[dict[str, Any]]) -> list[dict[str, Any]]:
        disks = []
        for d in self.cfg.storage.disks:
            rows = [r for s in stats for r in s["disks"] if r["path"] == str(d.path)]
            errors = [r["error"] for r in rows if r["error"]]
            disks.append(
                {
                    "path": str(d.path),
                    "capacity_bytes": d.size,
                    "used_bytes": sum(r["bytes"] for r in rows),
                    "objects": sum(r["objects"] for r in rows),
                    "healthy": bool(rows) and not errors,
                    "error": errors[0] if errors else (None if rows else "no worker answered"),
                }
            )
        return disks

    async def status(self) -> dict[str, Any]:
        await self._sample_traffic()
        await self._poll_workers()
        stats = [s for s in self.worker_stats if s is not None]
        state, reason = self.state()
        req1, byt1 = self.window.hit_ratios(60)
        req5, byt5 = self.window.hit_ratios(300)
        jobs = sorted(self.prefill.jobs.values(), key=lambda j: j.created_at)
        return {
            "version": __version__,
            "started_at": self.started_at,
            "uptime_s": time.time() - self.started_at,
            "state": state,
            "state_reason": reason,
            "config_digest": self.cfg.digest,
            "workers": {
                "configured": len(self.workers),
                "running": self.workers.running(),
                "restarts": self.workers.total_restarts,
            },
            "disks": self._disks(stats),
            "hit_ratio": {"requests": {"1m": req1, "5m": req5}, "bytes": {"1m": byt1, "5m": byt5}},
            "egress_bytes_per_s": self.window.egress_rate(),
            "open_connections": sum(s["connections"] for s in stats),
            "fills_in_flight": sum(s["fills"]["total"] for s in stats),
            "prefill": {"active": self.prefill.active(), "jobs": [j.summary() for j in jobs]},
            "control_plane": self.heartbeat.status(),
        }

    async def set_draining(self, draining: bool) -> str:
        flag = draining_flag(self.cfg.state_dir)
        await asyncio.to_thread(flag.touch if draining else lambda: flag.unlink(missing_ok=True))
        self.draining = draining
        sm.DRAINING.set(1 if draining else 0)
        await self.control.each("POST", "/ctl/drain", {"draining": draining})
        log.info("drained" if draining else "undrained")
        return self.state()[0]

    async def purge(self, keys: list[str], prefixes: list[str]) -> dict[str, int]:
        answers = await self.control.each(
            "POST", "/ctl/purge", {"paths": keys, "prefixes": prefixes}, total_s=300.0
        )
        failed = [str(a) for a in answers if not isinstance(a, dict)]
        if failed:
            raise web.HTTPServiceUnavailable(reason=f"purge incomplete, retry: {'; '.join(failed)}")
        return {
            "purged_objects": sum(int(a["objects"]) for a in answers),
            "purged_bytes": sum(int(a["bytes"]) for a in answers),
        }

    async def contents(self, prefix: str, after: str | None, limit: int) -> list[dict[str, Any]]:
        params = {"prefix": prefix, "limit": str(limit)}
        if after is not None:
            params["after"] = after
        last: Exception | None = None
        for i in range(len(self.workers)):  # any worker can read every disk
            try:
                got: list[dict[str, Any]] = await self.control.call(
                    i, "GET", "/ctl/contents", params=params
                )
                return got
            except WorkerUnavailable as e:
                last = e
        raise web.HTTPServiceUnavailable(reason=f"no worker answered: {last}")

    async def _titles(
        self, reset_requests: bool
    ) -> tuple[dict[str, tuple[int, int]], dict[str, int]]:
        params = {"reset_requests": "1" if reset_requests else "0"}
        held: dict[str, tuple[int, int]] = {}
        requests: dict[str, int] = {}
        for a in await self.control.each("GET", "/ctl/titles", params=params):
            if not isinstance(a, dict):
                continue
            for vid, (b, n) in a["held"].items():
                ob, on = held.get(vid, (0, 0))
                held[vid] = (ob + int(b), on + int(n))
            for vid, n in a["requests"].items():
                requests[vid] = requests.get(vid, 0) + int(n)
        return held, requests

    async def titles(self) -> dict[str, tuple[int, int]]:
        return (await self._titles(False))[0]

    # -- heartbeat ------------------------------------------------------------------------

    async def _collect_beat(self) -> tuple[dict[str, Any], dict[str, int]]:
        await self._poll_workers()
        stats = [s for s in self.worker_stats if s is not None]
        held, requests = await self._titles(True)
        state, _reason = self.state()
        cp = self.cfg.control_plane

        body = {
            "appliance_id": cp.appliance_id,
            "state": state,
            "public_url": cp.public_url,
            "site": cp.site,
            "version": __version__,
            "interval_s": cp.interval,
            "disks": self._disks(stats),
            "load": {
                "egress_bytes_per_s": self.window.egress_rate(),
                "open_connections": sum(s["connections"] for s in stats),
                "cpu_ratio": psutil.cpu_percent(interval=None) / 100.0,
            },
            "contents": {vid: {"bytes": b, "files": n} for vid, (b, n) in held.items()},
        }
        return body, requests

    async def _apply_control_plane(self, config: dict[str, Any]) -> None:
        async with self._config_lock:
            await self._apply_control_plane_locked(config)

    async def _apply_control_plane_locked(self, config: dict[str, Any]) -> None:
        overlay = dict(self.cfg.overlay)
        for k in ("token_keys", "fill_window"):
            if k in config:
                overlay[k] = config[k]
        if overlay == self.cfg.overlay:
            return
        try:
            new = from_raw(self.cfg.raw, self.cfg.base_dir, overlay)
        except ConfigError as e:
            log.error("control plane sent an unusable config; ignored", extra={"error": str(e)})
            return
        path = overlay_path(self.cfg.state_dir)
        await asyncio.to_thread(write_file_atomic, path, json.dumps(overlay).encode())
        changed = sorted(k for k in overlay if overlay.get(k) != self.cfg.overlay.get(k))
        await self._switch(new)
        log.info("applied control plane config", extra={"changed": changed, "digest": new.digest})

    async def _switch(self, new: ApplianceConfig) -> None:
        self.cfg = new
        await asyncio.to_thread(write_snapshot, self.snapshot, new)
        logging.getLogger().setLevel(new.log_level.upper())
        for i, a in enumerate(await self.control.each("POST", "/ctl/reload", {})):
            if not isinstance(a, dict):
                # It is restarting and will read the snapshot when it starts.
                log.warning("worker did not take the reload", extra={"worker": i, "error": str(a)})

    # -- reload ---------------------------------------------------------------------------

    async def reload(self) -> bool:
        """SIGHUP: re-read the config file; apply what can change live (see module doc)."""
        async with self._config_lock:
            return await self._reload_locked()

    async def _reload_locked(self) -> bool:
        self.notifier.reloading()
        try:
            new_raw = await asyncio.to_thread(read_toml, self.config_path)
            from_raw(new_raw, self.cfg.base_dir)  # the file alone must be valid
            effective, live, restart = merge_reload(self.cfg.raw, new_raw)
            new = from_raw(effective, self.cfg.base_dir, self.cfg.overlay)
        except ConfigError as e:
            sm.RELOADS.labels("rejected").inc()
            log.error("reload rejected; the running config stays", extra={"error": str(e)})
            self.notifier.ready("reload rejected; running the previous config")
            return False
        except BaseException:
            self.notifier.ready("reload failed; running the previous config")
            raise
        if restart:
            log.warning(
                "these changes need a restart; running values kept", extra={"keys": restart}
            )
        try:
            await self._switch(new)
        except BaseException:  # systemd waits for READY=1 after RELOADING=1, whatever happened
            self.notifier.ready("reload failed part-way; see the log")
            raise
        self.notifier.ready("config reloaded")
        sm.RELOADS.labels("ok").inc()
        log.info("config reloaded", extra={"changed": live, "digest": new.digest})
        return True
