"""The Pyro5 daemon the Event Service and the subscribers serve from.

On top of Pyro5's daemon: the passphrase check (``auth.AuthDaemonMixin``), a
silence limit per client connection, and a ``close()`` that really closes:
Pyro5's thread-pool server keeps serving established connections after its
daemon is closed.
"""
from __future__ import annotations

import threading
import typing as t

from Pyro5.server import Daemon

from .auth import AuthDaemonMixin, Authenticator

__all__ = ["ConnectionGuardMixin", "GuardedDaemon"]


class ConnectionGuardMixin:
    """Close client connections that stay silent longer than ``idle_timeout``, and all of them at close().

    The timeout is set per accepted connection (before the handshake), so it
    bounds silent and half-open connections without touching Pyro5's
    process-wide COMMTIMEOUT. Pyro5's thread-pool server keeps serving
    established connections after its daemon is closed; closing them here
    makes a stopped service really stopped.
    """

    def __init__(self, *args: t.Any, idle_timeout: float | None = None, **kwargs: t.Any) -> None:
        self.idle_timeout = idle_timeout
        self._connections: set[t.Any] = set()
        self._connections_lock = threading.Lock()
        super().__init__(*args, **kwargs)

    def _handshake(self, conn: t.Any, denied_reason: str | None = None) -> bool:
        if self.idle_timeout:
            conn.sock.settimeout(self.idle_timeout)
        with self._connections_lock:
            self._connections.add(conn)
        return super()._handshake(conn, denied_reason)  # type: ignore[misc]

    def clientDisconnect(self, conn: t.Any) -> None:
        with self._connections_lock:
            self._connections.discard(conn)
        super().clientDisconnect(conn)  # type: ignore[misc]

    def close(self) -> None:
        super().close()  # type: ignore[misc]
        with self._connections_lock:
            connections, self._connections = list(self._connections), set()
        for conn in connections:
            conn.close()


class GuardedDaemon(ConnectionGuardMixin, AuthDaemonMixin, Daemon):
    """A Pyro5 daemon with the passphrase check, an idle limit per connection, and a closing close()."""

    def __init__(self, host: str, port: int = 0, *, authenticator: Authenticator | None = None,
                 idle_timeout: float | None = None) -> None:
        self.authenticator = authenticator
        super().__init__(host, port, idle_timeout=idle_timeout)
