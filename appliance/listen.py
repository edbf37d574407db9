"""The public listening sockets: one ``SO_REUSEPORT`` socket per worker slot and address.

Why one per worker: with one shared socket, whichever worker woke first accepted a whole burst
(libuv accepts until EAGAIN): 41 of 64 wrk connections on one worker, 25 on the other, and the
busier one capped the box's hit rate. With a socket each, the kernel spreads new connections
over the sockets of the group by hash.

The supervisor binds the sockets and workers inherit them by file descriptor; a worker calls
``listen()`` on them itself once it serves (``create_server``), and only then does the kernel
count the socket in the address's group. So a worker that is still starting gets no connections
(they go to the others; before the first worker is up they are refused, as with any server
that is not up yet).

The price of a socket per worker: while a worker is down, the kernel would keep hashing new
connections to its socket, where they would wait for the replacement (at least the 0.2 s
restart back-off plus start-up; seconds while a worker keeps dying, or for ever if its start-up
hangs). So when a worker dies the supervisor closes its sockets (:meth:`release`): new
connections go to the workers that serve, at once, and with ``net.ipv4.tcp_migrate_req = 1``
(set by ``firmware-config/sysctl.d``) the connections already queued on them move to a
sibling's queue too; without it, or with no worker serving, the kernel resets those few. The
replacement gets fresh sockets on the same addresses (:meth:`fds_for`), which join the group
when it listens. So a socket in the group always belongs to a worker that serves; when none
does (every worker down at once), connections are refused until one is back, and players
retry or go to another appliance rather than hang.

The check for a port in use (:meth:`Listeners.open`) catches any socket *listening* on the
port (another server, or an appliance whose workers serve). It cannot see an appliance of the
same user whose workers are still starting (bound, not yet listening, sockets with
``SO_REUSEADDR``/``SO_REUSEPORT`` do not conflict, and a plain bind would also refuse the
``TIME_WAIT`` connections of a just-restarted appliance); systemd runs one instance per box.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterable

log = logging.getLogger("appliance.supervisor")


BACKLOG = 65535
"""Accept queue per socket (the worker's ``listen``); the kernel caps it at net.core.somaxconn,
which the sysctl file raises to the same value."""


def bind(host: str, port: int, reuseport: bool = False) -> socket.socket:
    """A bound TCP socket, not yet listening. IPv6 sockets are IPv6-only so "0.0.0.0:80" and
    "[::]:80" can both be listed. ``reuseport``: one of several sockets on the same address
    (one per worker)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    try:
        if family == socket.AF_INET6:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuseport:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.bind((host, port))
    except BaseException:
        s.close()
        raise
    s.set_inheritable(True)
    return s


class Listeners:
    """The sockets of every worker slot, bound once at start and again for a replacement."""

    def __init__(self, listen: Iterable[tuple[str, int]], workers: int) -> None:
        self._wanted = list(listen)
        self.addresses: list[tuple[str, int]] = []
        """The addresses bound (port 0 in the config, as in tests, resolved by the probe)."""
        self._slots: list[list[socket.socket] | None] = [None] * workers

    def open(self) -> None:
        """Bind every slot's sockets; :class:`OSError` naming the address when one is in use.

        The first bind of each address is a probe without ``SO_REUSEPORT``, so a port another
        socket listens on fails here, plainly: a second appliance (same user) cannot silently
        share a port the first one serves (see the module notes for the one window this does
        not cover).
        """
        try:
            for host, port in self._wanted:
                try:
                    probe = bind(host, port)
                except OSError as e:
                    raise OSError(e.errno, f"{host}:{port}: {e.strerror}") from None
                self.addresses.append((host, probe.getsockname()[1]))
                probe.close()
            for slot in range(len(self._slots)):
                self.fds_for(slot)
        except BaseException:
            self.close()
            raise

    def sockets(self, slot: int) -> list[socket.socket]:
        return list(self._slots[slot] or ())

    def fds_for(self, slot: int) -> list[int]:
        """The slot's socket descriptors, binding fresh sockets if :meth:`release` closed them.
        Raises :class:`OSError` if an address cannot be bound again."""
        got = self._slots[slot]
        if got is None:
            got = []
            try:
                for host, port in self.addresses:
                    got.append(bind(host, port, reuseport=True))
            except BaseException:
                for s in got:
                    s.close()
                raise
            self._slots[slot] = got
        return [s.fileno() for s in got]

    def release(self, slot: int) -> None:
        """Close the slot's sockets (its worker is dead): new connections go to the others."""
        got, self._slots[slot] = self._slots[slot], None
        for s in got or ():
            s.close()

    def close(self) -> None:
        for slot in range(len(self._slots)):
            self.release(slot)
