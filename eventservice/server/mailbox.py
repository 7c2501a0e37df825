"""A subscriber's mailbox: its queue (with the full-queue policy) plus its connection and the call in flight.

The call's bytes go out and its reply comes in without blocking
(``send``/``receive``); what to do next (retry, give up, deliver more) is
the dispatcher's decision (:mod:`.delivery`).
"""
from __future__ import annotations

import socket
import ssl
import typing as t

from Pyro5 import errors

from ..core.queues import SubscriberQueue
from ..pyro.wire import PLAIN_CALLBACK, READ_SIZE, Reply, ReplyReader

__all__ = ["Mailbox", "WireEvent"]

_WOULD_BLOCK = (BlockingIOError, InterruptedError, ssl.SSLWantReadError, ssl.SSLWantWriteError)

#: an accepted event as queued and sent to batch-aware subscribers: (subject, msg, time)
WireEvent = tuple[str, t.Any, float]


class Mailbox(SubscriberQueue):
    """One subscriber's queue, plus its connection and the call in flight."""

    __slots__ = (
        "batch",
        "deadline",
        "method",
        "outgoing",
        "proxy",
        "reconnected",
        "reply",
        "round",
        "scheduled",
        "seq",
        "sock",
        "uri",
        "writing",
    )

    def __init__(self, key: str, uri: t.Any, queuesize: int, policy: str) -> None:
        super().__init__(key, queuesize, policy)
        self.uri = uri
        self.method = PLAIN_CALLBACK  # how the subscriber takes events: learnt from its metadata when connecting
        self.scheduled = False  # waiting for, or held by, the delivery loop or a connector
        self.proxy: t.Any = None  # connected and handshaken; its socket then belongs to the loop
        self.reconnected = False  # the call in flight is a retry on a fresh connection
        # the call in flight (touched by the delivery loop only)
        self.seq = 0
        self.batch: list[WireEvent] = []
        self.sock: socket.socket | None = None  # the connection, while the delivery loop watches it
        self.outgoing = memoryview(b"")
        self.writing = False  # registered for writability: the request did not fit in the socket buffer
        self.reply: ReplyReader | None = None
        self.deadline = 0.0
        self.round = 0

    def send(self) -> bool:
        """Send what is left of the request without blocking; True once all of it went (OSError: it failed)."""
        sock = t.cast(socket.socket, self.sock)
        try:
            while self.outgoing:
                sent = sock.send(self.outgoing)
                self.outgoing = self.outgoing[sent:]
        except _WOULD_BLOCK:
            return False
        return True

    def receive(self) -> Reply | None:
        """Read what came without blocking; the reply once complete, else None.

        Raises ``ConnectionClosedError`` when the connection ended or failed, and
        ``ProtocolError`` (or the serializer's error) for what is not a valid reply.
        """
        sock = t.cast(socket.socket, self.sock)
        reader = t.cast(ReplyReader, self.reply)
        while True:
            try:
                chunk = sock.recv(READ_SIZE)
            except _WOULD_BLOCK:
                return None
            except OSError as error:
                raise errors.ConnectionClosedError(f"receiving: {error}") from None
            if not chunk:
                raise errors.ConnectionClosedError("receiving: connection closed by the subscriber")
            reply = reader.feed(chunk)
            if reply is not None:
                return reply

    def unasked_input(self) -> bool:
        """True if the subscriber closed the connection, or sent something, while no call was in flight."""
        try:
            t.cast(socket.socket, self.sock).recv(READ_SIZE)
        except _WOULD_BLOCK:
            return False
        except OSError:
            pass
        return True
