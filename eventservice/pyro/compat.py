"""Every use of a Pyro5 internal, in one place, checked when it is imported.

Pyro5 has no public API for a few things the Event Service needs: the size
of its message header, a daemon's connection handshake driven from our own
event loop, the thread it runs oneway calls in, the exception wrapper in a
batch call's results, and the SSL contexts it caches per process. They are
used only here. At import this module checks that each still exists with the
shape we rely on, and raises ImportError naming the Pyro5 version found if
one does not, instead of letting the idle limit, the inflation bound or TLS
switch off silently. tests/test_compat.py holds a test per hook that fails if
Pyro5 stops calling it.

Nothing here changes Pyro5 for daemons that are not ours: no monkeypatching.
"""
from __future__ import annotations

import inspect
import socket
import ssl
import struct
import threading
import typing as t
import zlib

import Pyro5
from Pyro5 import config, core, errors, protocol, server, socketutil

__all__ = [
    "HEADER_SIZE",
    "PYRO5_TESTED",
    "Header",
    "batch_exception",
    "daemon_handshake",
    "defer_tls_handshake",
    "frame",
    "in_oneway_call",
    "inflate",
    "inflated_size_ok",
    "is_batch_exception",
    "new_daemon_shell",
    "parse_header",
    "reset_ssl_contexts",
    "send_exception",
]

#: the Pyro5 versions this package was tested with (setup.py declares the same range)
PYRO5_TESTED = ">=5.16,<5.18"

_SSL_CONTEXT_NAMES = ("__ssl_client_context", "__ssl_server_context")


def _check() -> None:
    problems = []
    if not isinstance(getattr(protocol, "_header_size", None), int):
        problems.append("Pyro5.protocol._header_size (the message header size)")
    if getattr(protocol, "_header_format", None) != "!4sHBBHHII16sHH" or \
            not isinstance(getattr(protocol, "_magic_number", None), int):
        problems.append("Pyro5.protocol._header_format '!4sHBBHHII16sHH' and _magic_number (the message header)")
    if not callable(getattr(server.Daemon, "_handshake", None)) or \
            list(inspect.signature(server.Daemon._handshake).parameters)[:2] != ["self", "conn"]:
        problems.append("Pyro5.server.Daemon._handshake(conn) (the connection handshake)")
    if not inspect.isclass(getattr(server, "_OnewayCallThread", None)):
        problems.append("Pyro5.server._OnewayCallThread (the thread of a oneway call)")
    if not inspect.isclass(getattr(core, "_ExceptionWrapper", None)):
        problems.append("Pyro5.core._ExceptionWrapper (an exception in a batch call's results)")
    for name in _SSL_CONTEXT_NAMES:
        if not hasattr(socketutil, name):
            problems.append(f"Pyro5.socketutil.{name} (the cached SSL context)")
    if not callable(getattr(server.Daemon, "_sendExceptionResponse", None)):
        problems.append("Pyro5.server.Daemon._sendExceptionResponse (the answer to a call that raised)")
    if "connected_socket" not in inspect.signature(server.Daemon.__init__).parameters:
        problems.append("Pyro5.server.Daemon(connected_socket=...)")
    if problems:
        raise ImportError(f"eventservice needs Pyro5 {PYRO5_TESTED}; Pyro5 {Pyro5.__version__} (at {Pyro5.__file__}) "
                          f"lacks: {'; '.join(problems)}")


_check()

#: bytes in a Pyro5 message header
HEADER_SIZE: int = protocol._header_size
_HEADER = struct.Struct(protocol._header_format)
_MAGIC = protocol._magic_number
_VERSION = protocol.PROTOCOL_VERSION
_NO_CORRELATION = b"\0" * 16


class Header(t.NamedTuple):
    """The fields of a Pyro5 message header the Event Service uses."""

    type: int
    serializer_id: int
    flags: int
    seq: int
    data_size: int
    annotations_size: int


def parse_header(data: bytes | bytearray) -> Header:
    """The header at the start of ``data`` (HEADER_SIZE bytes or more), checked as Pyro5 checks it
    (``Pyro5.errors.ProtocolError`` for a bad tag, version or magic number, or a message over MAX_MESSAGE_SIZE).
    Faster than building a ``Pyro5.protocol.ReceivingMessage``: this runs for every request."""
    tag, version, msgtype, serializer_id, flags, seq, data_size, annotations_size, _, _, magic = \
        _HEADER.unpack_from(data)
    if tag != b"PYRO" or version != _VERSION or magic != _MAGIC:
        raise errors.ProtocolError("invalid message or protocol version")
    if data_size + annotations_size > config.MAX_MESSAGE_SIZE:
        raise errors.ProtocolError(f"message too large ({data_size + annotations_size:d}, "
                                   f"max={config.MAX_MESSAGE_SIZE:d})")
    return Header(msgtype, serializer_id, flags, seq, data_size, annotations_size)


def frame(msgtype: int, flags: int, seq: int, serializer_id: int, payload: bytes) -> bytes:
    """A whole Pyro5 message: header and ``payload``, no annotations, not compressed, no correlation id
    (what ``Pyro5.protocol.SendingMessage`` makes then, faster). ProtocolError over MAX_MESSAGE_SIZE."""
    if len(payload) > config.MAX_MESSAGE_SIZE:
        raise errors.ProtocolError(f"message too large ({len(payload):d}, max={config.MAX_MESSAGE_SIZE:d})")
    return _HEADER.pack(b"PYRO", _VERSION, msgtype, serializer_id, flags & ~protocol.FLAGS_CORR_ID, seq,
                        len(payload), 0, _NO_CORRELATION, 0, _MAGIC) + payload


def in_oneway_call() -> bool:
    """True in the thread Pyro5 runs a oneway call in."""
    return isinstance(threading.current_thread(), server._OnewayCallThread)


def is_batch_exception(value: t.Any) -> bool:
    """True if ``value``, an item of a Pyro5 batch call's results, is the exception that stopped the batch."""
    return isinstance(value, core._ExceptionWrapper)


def batch_exception(value: t.Any) -> BaseException:
    """The exception a batch result item wraps."""
    return t.cast(BaseException, value.exception)


def daemon_handshake(daemon: t.Any, conn: t.Any) -> bool:
    """Run Pyro5's connection handshake of ``daemon`` on ``conn`` (whose next message is the connect request).

    Pyro5 answers with the metadata and calls ``daemon.validateHandshake``
    (the passphrase check) on the way. True if the connection is accepted.
    """
    return bool(daemon._handshake(conn))


def reset_ssl_contexts() -> None:
    """Make Pyro5 build its client and server SSL contexts again (it caches one of each per process)."""
    for name in _SSL_CONTEXT_NAMES:
        setattr(socketutil, name, None)


def inflated_size_ok(header: t.Any, payload: bytes, limit: int) -> bool:
    """False if a compressed message's payload inflates beyond ``limit`` bytes (Pyro5 checks only the
    compressed size, so a kilobyte could otherwise become gigabytes, before any passphrase is checked).
    ``header``: a ``Header`` or a ``Pyro5.protocol.ReceivingMessage``."""
    if not header.flags & protocol.FLAGS_COMPRESSED:
        return True
    inflater = zlib.decompressobj()
    try:
        data = inflater.decompress(payload[header.annotations_size:], limit + 1)
    except zlib.error:
        return True  # not ours to judge: Pyro5 reports the bad data
    return len(data) <= limit and not inflater.unconsumed_tail


def inflate(data: bytes, limit: int) -> bytes:
    """The payload (without annotations) of a compressed message, inflated; ProtocolError beyond ``limit``."""
    inflater = zlib.decompressobj()
    try:
        inflated = inflater.decompress(data, limit + 1)
    except zlib.error as error:
        raise errors.ProtocolError(f"compressed message does not inflate: {error}") from None
    if len(inflated) > limit or inflater.unconsumed_tail:
        raise errors.ProtocolError(f"compressed message inflates beyond MAX_MESSAGE_SIZE ({limit})")
    return inflated


def defer_tls_handshake(daemon: t.Any) -> None:
    """Make a Pyro5 thread-pool daemon's TLS handshakes run in the connection's worker thread, not in accept().

    Python's ``SSLSocket.accept()`` runs the handshake in the one accepting
    thread with no timeout: one silent client would lock every new client
    out. Deferred, the handshake runs under the connection's idle limit
    (``GuardedDaemon`` does it first thing in its handshake).
    """
    listener = getattr(daemon.transportServer, "sock", None)
    if isinstance(listener, ssl.SSLSocket):
        listener.do_handshake_on_connect = False  # type: ignore[attr-defined]  # read by SSLSocket.accept()


def new_daemon_shell(daemon: t.Any, init: t.Callable[..., None]) -> None:
    """Initialise ``daemon`` (a Pyro5 Daemon subclass instance) without a transport server of Pyro5's.

    Pyro5 builds its daemon around a thread-pool or multiplex server; the
    Event Service brings its own event loop. Pyro5's constructor is given a
    placeholder connected socket (its one way to skip building a server);
    the caller then sets ``transportServer`` and ``locationStr``.
    """
    placeholder, other = socket.socketpair()
    try:
        if config.SSL:  # Pyro5 insists on an SSL socket then; never used for I/O
            placeholder = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).wrap_socket(
                placeholder, server_hostname="placeholder", do_handshake_on_connect=False)
        init(connected_socket=placeholder)
    finally:
        placeholder.close()
        other.close()


def send_exception(daemon: t.Any, conn: t.Any, seq: int, serializer_id: int, error: Exception) -> None:
    """Answer call ``seq`` on ``conn`` with ``error``, as Pyro5's daemon answers a call that raised.

    Call it in the ``except`` block (the traceback is taken from there).
    """
    traceback = errors.format_traceback(detailed=config.DETAILED_TRACEBACK)
    daemon._sendExceptionResponse(conn, seq, serializer_id, error, traceback)
