"""Pyro5 calls on a connection a proxy opened: encode a request, read its reply as bytes arrive.

The dispatcher keeps one call in flight per subscriber and many subscribers in
flight at once, from one thread; a Pyro5 ``Proxy`` call would hold a thread
until its reply came. The skeletons' calls to the ES (:func:`call`) skip the
proxy's per-call bookkeeping and read a small reply in one system call
instead of three: a publish round trip is the ES's unit of work. On the
serving side, :func:`receive_request`, :func:`marshalled_call` and
:func:`encode_result` let a daemon answer such calls directly
(``daemon.DirectCallsMixin``). All of it is Pyro5's wire protocol
(``Pyro5.protocol``); connecting and the handshake stay Pyro5's.
"""
from __future__ import annotations

import marshal
import typing as t

from Pyro5 import config, errors, protocol, serializers
from Pyro5.callcontext import current_context

from ..core.event import Event
from . import compat

__all__ = ["BATCH", "HEADER_SIZE", "MARSHALLED_BATCH", "PLAIN_CALLBACK", "Reply", "ReplyReader", "call",
           "delivery_method", "encode_call", "encode_delivery", "encode_marshal_call", "encode_result",
           "marshal_call_tail", "marshalled_call", "receive_request"]

#: bytes in a Pyro5 message header (fixed by the protocol)
HEADER_SIZE: int = compat.HEADER_SIZE
#: bytes asked of a socket per read (replies are small)
READ_SIZE = 65536

# marshal format version 2 has no back-references, so separately marshalled values concatenate into the
# marshalled tuple of them: b"(" + 4-byte little-endian length + each item (a unit test holds this)
_MARSHAL_VERSION = 2
_MARSHAL_CALL_TUPLE = b"(" + (4).to_bytes(4, "little")
_MARSHAL_NO_KWARGS = marshal.dumps({}, _MARSHAL_VERSION)
_MARSHAL_ID = serializers.serializers["marshal"].serializer_id
_MARSHAL_NONE = marshal.dumps(None)


def encode_call(object_id: str, method: str, args: t.Sequence[t.Any], serializer_name: str, seq: int,
                batch: bool = False) -> bytes:
    """The wire bytes of a call of ``method(*args)`` on ``object_id`` (a Pyro5 batch call if ``batch``).

    Raises TypeError/ValueError when ``serializer_name`` cannot carry the arguments, and
    ``Pyro5.errors.ProtocolError`` when the message exceeds Pyro5's MAX_MESSAGE_SIZE.
    """
    serializer = serializers.serializers[serializer_name]
    data = serializer.dumpsCall(object_id, method, args, {})
    flags = protocol.FLAGS_BATCH if batch else 0
    if config.COMPRESSION or current_context.correlation_id:  # Pyro5's own framing does these
        return protocol.SendingMessage(protocol.MSG_INVOKE, flags, seq, serializer.serializer_id, data).data
    return compat.frame(protocol.MSG_INVOKE, flags, seq, serializer.serializer_id, data)


def marshal_call_tail(method: str, args: list[t.Any]) -> bytes:
    """The marshal bytes of a call's method, arguments and (no) keyword arguments.

    The same for every object the call goes to, so a batch sent to many
    subscribers is marshalled once. Raises ValueError for values marshal cannot carry.
    """
    return marshal.dumps(method, _MARSHAL_VERSION) + marshal.dumps(args, _MARSHAL_VERSION) + _MARSHAL_NO_KWARGS


def encode_marshal_call(object_id: str, tail: bytes, seq: int) -> bytes:
    """The wire bytes of the call ``tail`` (from :func:`marshal_call_tail`) on ``object_id``, as marshal."""
    payload = _MARSHAL_CALL_TUPLE + marshal.dumps(object_id, _MARSHAL_VERSION) + tail
    return compat.frame(protocol.MSG_INVOKE, 0, seq, _MARSHAL_ID, payload)


#: how a subscriber takes events, best first: one marshalled batch (bytes), a batch, one event per call
MARSHALLED_BATCH, BATCH, PLAIN_CALLBACK = "marshalled_events", "events", "event"


def delivery_method(exposed: t.Container[str]) -> str:
    """The best way to deliver to an object exposing ``exposed`` methods."""
    return next((name for name in (MARSHALLED_BATCH, BATCH) if name in exposed), PLAIN_CALLBACK)


def encode_delivery(object_id: str, method: str, batch: list[tuple[str, t.Any, float]], seq: int,
                    shared: dict[tuple[t.Any, ...], bytes]) -> bytes:
    """The request delivering ``batch`` of (subject, msg, time) to a subscriber taking events by ``method``.

    Batch-aware subscribers get marshal (it keeps tuples tuples and is Pyro5's
    fastest serializer); subscribers of the same events share one marshalled
    body through ``shared`` (keyed by the events' ids: valid only while the
    caller holds the batches). Sent as bytes (to the Subscriber skeleton) it
    also spares the receiver Pyro5's walk through the batch. A message that
    marshal cannot carry (it holds a Pyro object), and plain callback objects,
    get the configured serializer: plain ones one Pyro5 batch of event() calls.
    Raises ``Pyro5.errors.ProtocolError`` when the request exceeds MAX_MESSAGE_SIZE.
    """
    if method != PLAIN_CALLBACK:
        try:
            key = (method, *map(id, batch))
            tail = shared.get(key)
            if tail is None:
                args = [marshal.dumps(batch)] if method == MARSHALLED_BATCH else [batch]
                tail = shared[key] = marshal_call_tail(method, args)
            return encode_marshal_call(object_id, tail, seq)
        except (TypeError, ValueError):
            return encode_call(object_id, BATCH, (batch,), config.SERIALIZER, seq)
    calls: list[tuple[str, tuple[Event], dict[str, t.Any]]] = [
        ("event", (Event(subject, msg, stamp),), {}) for subject, msg, stamp in batch]
    return encode_call(object_id, "<batch>", calls, config.SERIALIZER, seq, batch=True)


class Reply(t.NamedTuple):
    """A decoded reply: the call's result, or the exception the remote call raised."""

    seq: int
    value: t.Any
    raised: bool


class ReplyReader:
    """Collects the bytes of one reply until it is complete."""

    __slots__ = ("_buffer", "_header")

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._header: compat.Header | None = None  # parsed once its bytes are in

    @property
    def started(self) -> bool:
        """True once any byte of the reply arrived."""
        return bool(self._buffer) or self._header is not None

    def feed(self, chunk: bytes) -> Reply | None:
        """Add received bytes; the decoded reply once complete, else None.

        Raises ``Pyro5.errors.ProtocolError`` for anything that is not a valid
        Pyro5 result message (bad header, oversized, trailing bytes).
        """
        buffer = self._buffer
        buffer += chunk
        header = self._header
        if header is None:
            if len(buffer) < HEADER_SIZE:
                if len(buffer) >= 4:
                    protocol.ReceivingMessage.validate(bytes(buffer))
                return None
            header = self._header = compat.parse_header(buffer)  # checks the size limit
            if header.type != protocol.MSG_RESULT:
                raise errors.ProtocolError(f"invalid message type {header.type} in reply (expected a result)")
            del buffer[:HEADER_SIZE]
        size = header.annotations_size + header.data_size
        if len(buffer) < size:
            return None
        if len(buffer) > size:
            raise errors.ProtocolError("unexpected bytes after a reply")
        data = bytes(buffer[header.annotations_size:])
        if header.flags & protocol.FLAGS_COMPRESSED:  # rare: a daemon with Pyro5's COMPRESSION on
            data = compat.inflate(data, config.MAX_MESSAGE_SIZE)
        serializer = serializers.serializers_by_id.get(header.serializer_id)
        if serializer is None:
            raise errors.ProtocolError(f"unknown serializer {header.serializer_id} in reply")
        return Reply(header.seq, serializer.loads(data), bool(header.flags & protocol.FLAGS_EXCEPTION))


def call(connection: t.Any, method: str, args: tuple[t.Any, ...], serializer_name: str, seq: int) -> t.Any:
    """Call ``method(*args)`` over a proxy's open ``connection`` and wait for the result.

    Does what ``Proxy._pyroInvoke`` does for a plain call: returns the result,
    raises the exception the remote method raised, and raises Pyro5's
    ``TimeoutError`` or ``ConnectionClosedError`` when the connection fails
    (the caller must then drop it: a late reply would answer the next call).
    """
    connection.send(encode_call(connection.objectId, method, args, serializer_name, seq))  # Pyro5's errors
    sock = connection.sock
    reader = ReplyReader()
    while True:
        try:
            chunk = sock.recv(READ_SIZE)
        except TimeoutError:
            raise errors.TimeoutError("receiving: timeout") from None
        except OSError as error:
            raise errors.ConnectionClosedError(f"receiving: connection lost: {error}") from None
        if not chunk:
            raise errors.ConnectionClosedError("receiving: connection lost")
        reply = reader.feed(chunk)
        if reply is not None:
            break
    if reply.seq != seq:
        raise errors.ProtocolError(f"reply sequence out of sync: got {reply.seq}, expected {seq}")
    if reply.raised:
        raise reply.value
    return reply.value


def receive_request(connection: t.Any) -> tuple[protocol.ReceivingMessage, bytes]:
    """The next request on a daemon's client connection, parsed, and its bytes as they came.

    Reads as Pyro5's daemon does (a bad start is refused before more is read)
    and raises what it raises.
    """
    start = connection.recv(6)
    protocol.ReceivingMessage.validate(start)
    header = start + connection.recv(HEADER_SIZE - 6)
    message = protocol.ReceivingMessage(header)
    payload = connection.recv(message.annotations_size + message.data_size)
    if not compat.inflated_size_ok(message, payload, config.MAX_MESSAGE_SIZE):
        raise errors.ProtocolError(f"compressed message inflates beyond MAX_MESSAGE_SIZE ({config.MAX_MESSAGE_SIZE})")
    raw = header + payload
    message.add_payload(payload)
    return message, raw


def marshalled_call(message: protocol.ReceivingMessage) -> tuple[str, str, list[t.Any]] | None:
    """(object id, method, arguments) of a plain, marshalled two-way call without keyword arguments; else None."""
    if message.type != protocol.MSG_INVOKE or message.flags or message.serializer_id != _MARSHAL_ID:
        return None
    try:
        object_id, method, args, kwargs = marshal.loads(message.data)
    except (ValueError, EOFError, TypeError):
        return None  # Pyro5 reports it
    if kwargs or not isinstance(args, (list, tuple)):
        return None
    return object_id, method, list(args)


def encode_result(seq: int, value: t.Any) -> bytes:
    """The wire bytes of the marshalled result ``value`` of call ``seq`` (ValueError if marshal cannot carry it)."""
    data = _MARSHAL_NONE if value is None else marshal.dumps(value)
    return compat.frame(protocol.MSG_RESULT, 0, seq, _MARSHAL_ID, data)
