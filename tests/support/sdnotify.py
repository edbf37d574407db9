"""A stand-in for systemd's notify socket: a unix datagram socket a test binds and passes to a
daemon as ``NOTIFY_SOCKET``, then reads the daemon's messages from.

```python
with notify_socket(tmp_path) as notify:
    proc = start(env=notify.env(watchdog_s=0.4))
    ready = notify.wait_for("READY=1")
```
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class NotifySocket:
    def __init__(self, directory: Path) -> None:
        self.path = directory / "notify.sock"
        self.messages: list[str] = []
        """Every message received so far, in order."""
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(str(self.path))

    def env(self, watchdog_s: float | None = None) -> dict[str, str]:
        """The environment systemd gives a ``Type=notify`` service (with ``WatchdogSec=``)."""
        env = {"NOTIFY_SOCKET": str(self.path)}
        if watchdog_s is not None:
            env["WATCHDOG_USEC"] = str(int(watchdog_s * 1e6))
        return env

    def wait_for(self, field: str, timeout: float = 20.0) -> str:
        """The first message from now on that holds the line ``field`` (e.g. ``READY=1``)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {field} within {timeout:g} s: {self.messages}")
            self._sock.settimeout(left)
            try:
                message = self._sock.recv(4096).decode()
            except TimeoutError:
                continue
            self.messages.append(message)
            if field in message.split("\n"):
                return message

    def close(self) -> None:
        self._sock.close()


@contextmanager
def notify_socket(directory: Path) -> Iterator[NotifySocket]:
    """A :class:`NotifySocket` in ``directory``, closed at the end."""
    notify = NotifySocket(directory)
    try:
        yield notify
    finally:
        notify.close()
