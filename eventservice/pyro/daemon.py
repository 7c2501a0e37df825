"""The Pyro5 daemon the subscribers (and the embedded name server) serve from.

On top of Pyro5's daemon: the passphrase check (``auth.AuthDaemonMixin``), a
silence limit per client connection that also bounds the TLS handshake (run
in the connection's thread, not in Pyro5's accepting one), a bound on what a
compressed request inflates to, a ``close()`` that really closes (Pyro5's
thread-pool server keeps serving established connections after its daemon is
closed), and a short path for the few calls that are the service's unit of
work (``serve_directly``). All of it applies to these daemons only: Pyro5
itself is not changed. (The Event Service serves from its own event loop,
``server.loop``.)
"""
from __future__ import annotations

import contextlib
import logging
import ssl
import threading
import typing as t

from Pyro5 import config as pyro_config
from Pyro5 import errors
from Pyro5.server import Daemon

from . import compat, wire
from .auth import AuthDaemonMixin, Authenticator

__all__ = ["BoundedRequestsMixin", "ConnectionGuardMixin", "DirectCallsMixin", "GuardedDaemon"]

_log = logging.getLogger(__name__)

#: seconds a client may take for its TLS and connect handshakes when the daemon has no idle limit
HANDSHAKE_TIMEOUT = 10.0


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
        compat.defer_tls_handshake(self)

    def _handshake(self, conn: t.Any, denied_reason: str | None = None) -> bool:
        # the handshakes are bounded even without an idle limit: a client that never sends them holds a thread
        conn.sock.settimeout(self.idle_timeout or HANDSHAKE_TIMEOUT)
        if isinstance(conn.sock, ssl.SSLSocket):
            try:
                conn.sock.do_handshake()  # deferred from accept() (compat.defer_tls_handshake)
            except (OSError, ValueError) as error:
                _log.info("TLS handshake failed: %s", error)
                return False
        if not self.idle_timeout:
            conn.sock.settimeout(pyro_config.COMMTIMEOUT or None)
        accepted = super()._handshake(conn, denied_reason)  # type: ignore[misc]
        if accepted:
            with self._connections_lock:
                self._connections.add(conn)
        return accepted

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


class BoundedRequestsMixin:
    """Read each request here, refusing a compressed one that inflates beyond MAX_MESSAGE_SIZE (Pyro5 checks
    only the compressed size, so a kilobyte could otherwise become gigabytes, before any passphrase is checked);
    then hand it to Pyro5, or to ``_serve_request`` of a subclass."""

    def handleRequest(self, conn: t.Any) -> None:
        message, raw = wire.receive_request(conn)
        self._serve_request(conn, message, raw)

    def _serve_request(self, conn: t.Any, message: t.Any, raw: bytes) -> None:
        super().handleRequest(_Replayed(conn, raw))  # type: ignore[misc]  # Pyro5 reads it again from here


class DirectCallsMixin(BoundedRequestsMixin):
    """Serve chosen methods of registered objects without Pyro5's general request handling.

    A publish or a delivery is the service's unit of work, and Pyro5's general
    handling of a call (correlation ids, peer lookup, walking the arguments for
    classes to rebuild, stream checks) costs about as much as the work itself.
    Plain two-way calls of a chosen method made with marshal (what the
    skeletons send) go straight to it; every other request, and every other
    serializer, is Pyro5's as usual. The passphrase is checked at connect
    time, before any request, either way.
    """

    def __init__(self, *args: t.Any, **kwargs: t.Any) -> None:
        self._direct_calls: dict[tuple[str, str], t.Callable[..., t.Any]] = {}
        super().__init__(*args, **kwargs)

    def serve_directly(self, object_id: str, method: str, function: t.Callable[..., t.Any]) -> None:
        """Answer marshalled calls of ``method`` on ``object_id`` with ``function(*args)``."""
        self._direct_calls[(object_id, method)] = function

    def _serve_request(self, conn: t.Any, message: t.Any, raw: bytes) -> None:
        call = wire.marshalled_call(message) if self._direct_calls else None
        function = self._direct_calls.get(call[:2]) if call is not None else None
        if function is None:
            super()._serve_request(conn, message, raw)
            return
        try:
            reply = wire.encode_result(message.seq, function(*call[2]))  # type: ignore[index]
        except Exception as error:  # answered as Pyro5 answers it
            compat.send_exception(self, conn, message.seq, message.serializer_id, error)
            if isinstance(error, (errors.CommunicationError, errors.SecurityError)):
                raise  # as Pyro5 does: the connection ends
            return
        conn.send(reply)


class _Replayed:
    """A client connection whose next request was read already: reads return those bytes first."""

    def __init__(self, connection: t.Any, data: bytes) -> None:
        self._connection = connection
        self._pending = data

    def recv(self, size: int) -> bytes:
        if not self._pending:
            return self._connection.recv(size)
        chunk, self._pending = self._pending[:size], self._pending[size:]
        return chunk if len(chunk) == size else chunk + self._connection.recv(size - len(chunk))

    def __getattr__(self, name: str) -> t.Any:
        return getattr(self._connection, name)


class GuardedDaemon(ConnectionGuardMixin, DirectCallsMixin, AuthDaemonMixin, Daemon):
    """A Pyro5 daemon with the passphrase check, an idle limit per connection, a closing close(),
    and direct calls."""

    def __init__(self, host: str, port: int = 0, *, authenticator: Authenticator | None = None,
                 idle_timeout: float | None = None) -> None:
        self.authenticator = authenticator
        super().__init__(host, port, idle_timeout=idle_timeout)

    def wakeup(self) -> None:
        """Make a running requestLoop check its loop condition now, not at its next poll timeout."""
        server = self.transportServer
        if server is not None:
            with contextlib.suppress(OSError):
                server.wakeup()
