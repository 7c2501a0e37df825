"""One Redis instance of the backbone: a subscribing connection with its reader thread, and a publishing one.

The reader thread does nothing but read: it hands each message to
``on_message`` (which only checks a header and appends to a bounded hand-off)
and sends the subscription commands :class:`~.routing.Interest` asks for, in
batches. So the node reads as fast as Redis writes, and Redis's output-buffer
limit for pub/sub clients never disconnects it. When the connection drops it
reconnects with capped, jittered backoff and resubscribes everything; the
outage is counted and logged. Publishing uses its own connection and never
retries a batch that may have reached Redis (a retry could deliver twice):
what cannot be sent is reported lost.

redis-py does the connecting (TCP or TLS, password, database); its own
retries and health checks are off, because this module decides when to
reconnect. Commands and replies then go over the socket directly (resp.py).
"""
from __future__ import annotations

import collections.abc as c
import logging
import random
import select
import socket
import threading
import time
import typing as t
import urllib.parse

try:
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry
except ImportError as error:  # pragma: no cover - depends on the installation
    raise ImportError(f"es --backbone needs the redis package: pip install 'eventservice[redis]' ({error})") from None

from . import resp
from .routing import Interest

__all__ = ["Link", "describe"]

log = logging.getLogger(__name__)

#: seconds between reconnect attempts: doubled from the first up to the cap, with jitter
BACKOFF_FIRST, BACKOFF_CAP = 0.1, 5.0
#: seconds of silence after which the reader sends PING, and how long it waits for the answer
IDLE_PING, PING_TIMEOUT = 5.0, 5.0
#: seconds a connect, or a publish batch, may take
CONNECT_TIMEOUT, SEND_TIMEOUT = 5.0, 10.0

OnMessage = c.Callable[[int, bytes, bytes], None]
READ_SIZE = 64 * 1024  # below malloc's mmap threshold: a larger recv buffer costs a mmap per call
_PUBLISH = b"PUBLISH"


class _Socket:
    """A connection redis-py set up (TLS, AUTH, SELECT done), used raw from then on, by one thread."""

    def __init__(self, pool: t.Any) -> None:
        self.connection = pool.make_connection()
        self.connection.connect()
        self.sock = self.connection._sock
        self.reader = resp.Reader()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def fill(self) -> None:
        """Read what the socket has (blocking up to its timeout) into the reader."""
        data = self.sock.recv(READ_SIZE)
        if not data:
            raise redis.ConnectionError("connection closed by Redis")
        self.reader.feed(data)

    def has_buffered(self) -> bool:
        pending = getattr(self.sock, "pending", None)  # TLS: decrypted bytes select() cannot see
        return bool(pending is not None and pending())

    def close(self) -> None:
        try:
            self.connection.disconnect()
        except Exception:  # closing a broken connection may fail in many ways; it is gone either way
            pass


def describe(url: str) -> str:
    """``url`` without its password, for logs and errors."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or "localhost"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


class _Backoff:
    def __init__(self) -> None:
        self.delay = 0.0

    def failed(self) -> float:
        """Seconds to wait before the next attempt."""
        self.delay = min(BACKOFF_CAP, self.delay * 2 if self.delay else BACKOFF_FIRST)
        return self.delay * random.uniform(0.5, 1.0)

    def succeeded(self) -> None:
        self.delay = 0.0


class Link:
    """The node's two connections to one Redis instance (shard ``shard`` of ``interest``).

    :param on_message: called in the reader thread as ``f(shard, channel, data)``; must not block
    """

    def __init__(self, url: str, shard: int, interest: Interest, on_message: OnMessage,
                 password: str | None = None) -> None:
        options: dict[str, t.Any] = {
            "socket_connect_timeout": CONNECT_TIMEOUT,
            "socket_timeout": SEND_TIMEOUT,
            "retry": Retry(NoBackoff(), 0),
            "health_check_interval": 0,
            "protocol": 2,  # RESP2: pub/sub messages are plain replies (RESP3 routes them to push handlers)
        }
        if password is not None:
            options["password"] = password
        self._pool = redis.ConnectionPool.from_url(url, **options)
        self.name = describe(url)
        self.shard = shard
        self._interest = interest
        self._on_message = on_message
        self._stopping = threading.Event()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._dirty = True
        self._thread: threading.Thread | None = None
        self._sub: _Socket | None = None
        self._pub: _Socket | None = None
        self._pub_lock = threading.Lock()
        self._pub_backoff = _Backoff()
        self._pub_retry_at = 0.0
        self._pub_down_since: float | None = None
        self._error_logged = False
        self.connected = False
        self.pending = 0  # subscription replies not yet received
        self._syncing = False
        self.outages = 0
        self.down_since: float | None = time.monotonic()
        self.ever_connected = threading.Event()
        self.attempted = threading.Event()  # the reader's first connect attempt is over, either way
        self._unreachable_logged = False

    # -- control ---------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"es-backbone-reader-{self.shard}", daemon=True)
        self._thread.start()

    def interest_changed(self) -> None:
        """Tell the reader to send the subscription changes (any thread)."""
        self._dirty = True
        try:
            self._wake_w.send(b"\0")
        except OSError:  # full of wake-ups already, or closed
            pass

    def unconfirmed(self) -> int:
        """Subscription changes Redis has not confirmed yet (0: what Redis holds is what is wanted)."""
        return self.pending + self._dirty + self._syncing

    def close(self) -> None:
        self._stopping.set()
        self.interest_changed()
        if self._thread is not None:
            self._thread.join(5)
        with self._pub_lock:
            self._drop_pub()
        self._pool.disconnect()
        self._wake_r.close()
        self._wake_w.close()

    # -- publishing ------------------------------------------------------

    def publish(self, messages: list[tuple[bytes, bytes]]) -> bool:
        """PUBLISH each (channel, data) in order, in one round trip; False if they may not have been sent.

        Never retried: Redis may have executed some of a batch whose replies were lost.
        """
        with self._pub_lock:
            if self._pub is None:
                if time.monotonic() < self._pub_retry_at and not self.connected:  # the reader got through: try now
                    return False
                try:
                    self._pub = _Socket(self._pool)
                except (redis.RedisError, OSError) as error:
                    self._pub_failed(error)
                    return False
                if self._pub_down_since is not None:
                    log.warning("backbone %s: publishing again after %.1f s", self.name, time.monotonic() - self._pub_down_since)
                self._pub_down_since = None
                self._pub_backoff.succeeded()
            connection = self._pub
            try:
                connection.send(b"".join([resp.pack(_PUBLISH, name, data) for name, data in messages]))
                reader, answered = connection.reader, 0
                while answered < len(messages):
                    reply = reader.gets()
                    if reply is False:
                        connection.fill()
                        continue
                    answered += 1
                    if isinstance(reply, resp.ReplyError) and not self._error_logged:
                        self._error_logged = True
                        log.warning("backbone %s: Redis refuses PUBLISH: %s", self.name, reply)
            except (redis.RedisError, OSError, resp.ProtocolError) as error:
                self._drop_pub()
                self._pub_failed(error)
                return False
            return True

    def _pub_failed(self, error: BaseException) -> None:
        if self._pub_down_since is None:
            self._pub_down_since = time.monotonic()
            log.warning("backbone %s: cannot publish (%s); events for other nodes are lost until it is back",
                        self.name, error)
        self._pub_retry_at = time.monotonic() + self._pub_backoff.failed()

    def _drop_pub(self) -> None:
        if self._pub is not None:
            self._pub.close()
            self._pub = None

    # -- the reader ------------------------------------------------------

    def _run(self) -> None:
        backoff = _Backoff()
        while not self._stopping.is_set():
            try:
                try:
                    self._connect()
                finally:
                    self.attempted.set()
                backoff.succeeded()
                self._read()
            except (redis.RedisError, OSError, ValueError, resp.ProtocolError) as error:
                if self._stopping.is_set():
                    break
                self._lost(error)
                self._stopping.wait(backoff.failed())
            finally:
                self._close_sub()

    def _connect(self) -> None:
        self._sub = _Socket(self._pool)
        self._interest.reset(self.shard)
        self.pending = 0
        self._dirty = True
        self._unreachable_logged = False
        if self.down_since is not None and self.ever_connected.is_set():
            log.warning("backbone %s: reconnected after %.1f s; resubscribing %d subjects%s", self.name,
                        time.monotonic() - self.down_since, self._interest.subjects(),
                        " and the pattern catch-all" if self._interest.catch_all else "")
        elif not self.ever_connected.is_set():
            log.info("backbone %s: connected", self.name)
        self.down_since = None
        self.connected = True
        self.ever_connected.set()

    def _lost(self, error: BaseException) -> None:
        if self.connected:
            self.outages += 1
            self.down_since = time.monotonic()
            log.warning("backbone %s: connection lost (%s); reconnecting. Events published on other nodes "
                        "meanwhile do not reach this node", self.name, error)
        elif not self._unreachable_logged:
            log.warning("backbone %s: cannot connect (%s); retrying", self.name, error)
        self._unreachable_logged = True
        self.connected = False

    def _close_sub(self) -> None:
        if self._sub is not None:
            self._sub.close()
            self._sub = None

    def _read(self) -> None:
        connection = self._sub
        assert connection is not None
        last_read = time.monotonic()
        ping_sent: float | None = None
        while not self._stopping.is_set():
            if self._dirty:
                self._syncing = True  # so unconfirmed() never reads 0 between these lines
                self._dirty = False
                for command, channels in self._interest.commands(self.shard):
                    self.pending += len(channels)
                    connection.send(resp.pack(command.encode("ascii"), *channels))
                self._syncing = False
            got = False
            reply = connection.reader.gets()
            while reply is not False:
                self._handle(reply)
                got = True
                reply = connection.reader.gets()
            now = time.monotonic()
            if got:
                last_read, ping_sent = now, None
                continue
            if ping_sent is not None and now - ping_sent > PING_TIMEOUT:
                raise redis.ConnectionError(f"no answer to PING within {PING_TIMEOUT} s")
            if ping_sent is None and now - last_read > IDLE_PING:
                connection.send(resp.pack(b"PING"))
                self.pending += 1
                ping_sent = now
            if connection.has_buffered():
                connection.fill()
                continue
            readable, _, _ = select.select([connection.sock, self._wake_r], [], [], IDLE_PING / 2)
            if connection.sock in readable:
                connection.fill()
            if self._wake_r in readable:
                try:
                    while self._wake_r.recv(4096):
                        pass
                except (BlockingIOError, InterruptedError):
                    pass

    def _handle(self, reply: t.Any) -> None:
        if isinstance(reply, resp.ReplyError):
            raise redis.ConnectionError(f"Redis refused a subscription command: {reply}")
        if reply == b"PONG":  # the answer to PING while subscribed to nothing
            self.pending = max(0, self.pending - 1)
            return
        if not isinstance(reply, list) or not reply:
            return
        kind = reply[0]
        if kind == b"message" and len(reply) == 3:
            self._on_message(self.shard, reply[1], reply[2])
        elif kind == b"pmessage" and len(reply) == 4:
            self._on_message(self.shard, reply[2], reply[3])
        elif kind in (b"subscribe", b"unsubscribe", b"psubscribe", b"punsubscribe", b"pong"):
            self.pending = max(0, self.pending - 1)
