"""The few bits of Redis's wire protocol (RESP2) the backbone speaks on its hot paths.

redis-py connects (TCP or TLS, AUTH, SELECT); after that the backbone writes
PUBLISH and SUBSCRIBE commands and reads replies and pub/sub messages on the
socket itself: redis-py's per-call machinery costs more than the rest of a
message's way through a node. Replies are parsed by hiredis's C reader when it
is installed (the ``redis`` extra installs it), else by :class:`PyReader`,
which reads the same.
"""
from __future__ import annotations

import typing as t

__all__ = ["ProtocolError", "PyReader", "Reader", "ReplyError", "pack"]

#: the largest bulk string or array a reply may announce (Redis's own proto-max-bulk-len is 512 MB)
MAX_LENGTH = 512 * 1024 * 1024


class ReplyError(Exception):
    """An error reply from Redis (returned by ``gets``, not raised, as hiredis does)."""


class ProtocolError(Exception):
    """Bytes that are not RESP: the connection cannot be trusted any more."""


def pack(*parts: bytes) -> bytes:
    """One command as a RESP array of bulk strings."""
    out = [b"*%d\r\n" % len(parts)]
    for part in parts:
        out.append(b"$%d\r\n" % len(part))
        out.append(part)
        out.append(b"\r\n")
    return b"".join(out)


class PyReader:
    """An incremental RESP2 reader: ``feed(bytes)``, then ``gets()`` until it returns False."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._position = 0

    def feed(self, data: bytes) -> None:
        if self._position:
            del self._buffer[:self._position]
            self._position = 0
        self._buffer += data

    def gets(self) -> t.Any:
        """The next complete reply, or False when more bytes are needed."""
        parsed = self._parse(self._position)
        if parsed is None:
            return False
        value, self._position = parsed
        return value

    def _line(self, position: int) -> tuple[bytes, int] | None:
        end = self._buffer.find(b"\r\n", position)
        if end < 0:
            return None
        return bytes(self._buffer[position:end]), end + 2

    def _parse(self, position: int) -> tuple[t.Any, int] | None:
        line = self._line(position)
        if line is None:
            return None
        text, position = line
        kind, rest = text[:1], text[1:]
        if kind == b"+":
            return rest, position
        if kind == b"-":
            return ReplyError(rest.decode("utf-8", "replace")), position
        if kind == b":":
            return self._int(rest), position
        if kind == b"$":
            length = self._int(rest)
            if length < 0:
                return None, position
            if len(self._buffer) < position + length + 2:
                return None
            return bytes(self._buffer[position:position + length]), position + length + 2
        if kind == b"*":
            count = self._int(rest)
            if count < 0:
                return None, position
            items = []
            for _ in range(count):
                parsed = self._parse(position)
                if parsed is None:
                    return None
                item, position = parsed
                items.append(item)
            return items, position
        raise ProtocolError(f"not a RESP reply: {text[:40]!r}")

    @staticmethod
    def _int(text: bytes) -> int:
        try:
            value = int(text)
        except ValueError:
            raise ProtocolError(f"not a RESP length: {text[:40]!r}") from None
        if value > MAX_LENGTH:
            raise ProtocolError(f"RESP length {value} is too large")
        return value


def _hiredis_reader() -> t.Any:
    try:
        import hiredis
    except ImportError:
        return None

    def make() -> t.Any:
        return hiredis.Reader(replyError=ReplyError, protocolError=ProtocolError)
    return make


#: makes a reader: hiredis's when installed, else PyReader
Reader: t.Callable[[], t.Any] = _hiredis_reader() or PyReader
