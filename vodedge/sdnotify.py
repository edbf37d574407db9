"""systemd's notify protocol (``Type=notify``), without a libsystemd dependency.

Messages are datagrams to the unix socket named by ``$NOTIFY_SOCKET`` (a leading ``@`` names
an abstract socket). Without that variable (not under systemd, or in tests that do not set
it) every call is a no-op, so the daemon runs the same everywhere.

Used by the appliance's supervisor and by the origin's ``serve`` and ``worker``.
:func:`ping_watchdog` sends ``WATCHDOG=1`` from the event loop, so a loop that hangs stops the
pings and systemd restarts the service.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket

log = logging.getLogger("vodedge.sdnotify")


class Notifier:
    def __init__(self, env: dict[str, str] | None = None) -> None:
        env = dict(os.environ) if env is None else env
        addr = env.get("NOTIFY_SOCKET", "")
        self._addr: str | bytes | None = None
        if addr.startswith("@"):
            self._addr = b"\0" + addr[1:].encode()
        elif addr.startswith("/"):
            self._addr = addr
        self.watchdog_interval: float | None = None
        """Seconds between WATCHDOG=1 pings (half of WATCHDOG_USEC), None when not asked."""
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        if usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid())):
            self.watchdog_interval = int(usec) / 2e6
        self._sock: socket.socket | None = None

    @property
    def enabled(self) -> bool:
        return self._addr is not None

    def send(self, *fields: str) -> bool:
        """Send ``KEY=value`` fields as one message; False if it could not be delivered."""
        if self._addr is None:
            return False
        if self._sock is None:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        try:
            self._sock.sendto("\n".join(fields).encode(), self._addr)
            return True
        except OSError as e:
            log.warning("sd_notify failed", extra={"error": str(e)})
            return False

    def ready(self, status: str) -> bool:
        return self.send("READY=1", f"STATUS={status}", f"MAINPID={os.getpid()}")

    def reloading(self) -> bool:
        return self.send("RELOADING=1", "STATUS=reloading configuration")

    def stopping(self, status: str = "stopping: finishing in-flight responses") -> bool:
        return self.send("STOPPING=1", f"STATUS={status}")

    def watchdog(self) -> bool:
        return self.send("WATCHDOG=1")

    def status(self, text: str) -> bool:
        return self.send(f"STATUS={text}")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


async def ping_watchdog(notifier: Notifier) -> None:
    """Send ``WATCHDOG=1`` every ``watchdog_interval`` seconds until cancelled; return at once
    when systemd asked for no watchdog."""
    interval = notifier.watchdog_interval
    if interval is None:
        return
    while True:
        notifier.watchdog()
        await asyncio.sleep(interval)
