"""The backbone's message format: a fixed header with a version byte, then msgpack.

Anyone who can write to the Redis can put bytes on the backbone channels, so
decoding must never run code (no pickle, no marshal), must bound what it
allocates, and must turn anything unexpected into :class:`BadMessageError`, which
the node drops and counts.

Format version 1 (all integers big-endian)::

    offset 0   1 byte   version (1)
    offset 1   1 byte   flags: bit 0 set = the message's msgpack arrays are tuples, else lists
    offset 2   8 bytes  node id of the sender (random per node process)
    offset 10  8 bytes  sequence number, per sender and Redis instance, increasing
    offset 18  8 bytes  time stamp (IEEE double, the accepting node's time.time())
    offset 26  msgpack  an array of two: the subjects (a non-empty array of str), the message

msgpack carries None, bool, int, float, str, bytes, lists and dicts as they
are. A message whose sequences are all tuples (or all lists) travels as plain
msgpack arrays, flagged (the fast path: most messages); in a message that
mixes them, tuples travel as an extension type. Sets, frozensets, complex
numbers and ints beyond 64 bits are extension types too. So a message arrives
on every node as the types the accepting node held. Other types cannot cross
the backbone (:class:`UnencodableError`): the accepting node still delivers
them locally.
"""
from __future__ import annotations

import struct
import threading
import typing as t

try:
    import msgpack
except ImportError as error:  # pragma: no cover - depends on the installation
    raise ImportError(f"es --backbone needs the msgpack package: pip install 'eventservice[redis]' ({error})") from None

__all__ = [
    "HEADER",
    "VERSION",
    "BadMessageError",
    "Header",
    "UnencodableError",
    "decode_body",
    "encode",
    "encode_message",
    "read_header",
]

#: the format version this module writes and reads
VERSION = 1
HEADER = struct.Struct(">BB8sQd")
TUPLES = 1  # flag: plain arrays in the message are tuples
NODE_ID_SIZE = 8

_TUPLE, _SET, _FROZENSET, _COMPLEX, _BIGINT = 1, 2, 3, 4, 5
_INT64_MIN, _UINT64_MAX = -(2 ** 63), 2 ** 64 - 1


class BadMessageError(ValueError):
    """Bytes on a backbone channel that are not a message this node can accept."""


class UnencodableError(TypeError):
    """A message holding a type the backbone format cannot carry."""


class Header(t.NamedTuple):
    version: int
    flags: int
    node: bytes
    seq: int
    time: float


def _sequences(value: t.Any, depth: int = 0) -> int:
    """Which sequences ``value`` holds: bit 0 tuples, bit 1 lists (3: both, or too deep to tell cheaply)."""
    kind = type(value)
    if kind is tuple or kind is list:
        found = 1 if kind is tuple else 2
        items: t.Iterable[t.Any] = value
    elif kind is dict:
        found = 0
        items = [*value.keys(), *value.values()]
    elif kind is set or kind is frozenset:
        found = 0
        items = value
    else:
        return 0
    if depth > 50:
        return 3
    for item in items:
        if found == 3:
            break
        if type(item) in _CONTAINERS:
            found |= _sequences(item, depth + 1)
    return found


_CONTAINERS = frozenset((tuple, list, dict, set, frozenset))


def _default(value: t.Any) -> t.Any:
    if isinstance(value, tuple):
        return msgpack.ExtType(_TUPLE, _pack(list(value)))
    if isinstance(value, frozenset):
        return msgpack.ExtType(_FROZENSET, _pack(list(value)))
    if isinstance(value, set):
        return msgpack.ExtType(_SET, _pack(list(value)))
    if isinstance(value, complex):
        return msgpack.ExtType(_COMPLEX, struct.pack(">dd", value.real, value.imag))
    if isinstance(value, int) and not isinstance(value, bool):
        return msgpack.ExtType(_BIGINT, str(value).encode("ascii"))
    if isinstance(value, bytearray):
        return bytes(value)
    raise UnencodableError(f"a {type(value).__name__} cannot cross the backbone")


def _pack(value: t.Any, strict: bool = True) -> bytes:
    try:
        return msgpack.packb(value, default=_default, strict_types=strict, use_bin_type=True)
    except UnencodableError:
        raise
    except (TypeError, ValueError, OverflowError) as error:
        raise UnencodableError(str(error)) from None


def _ext_hook(code: int, data: bytes) -> t.Any:
    if code == _TUPLE:
        return tuple(_unpack(data))
    if code == _SET:
        return set(_unpack(data))
    if code == _FROZENSET:
        return frozenset(_unpack(data))
    if code == _COMPLEX:
        real, imag = struct.unpack(">dd", data)
        return complex(real, imag)
    if code == _BIGINT:
        if len(data) > 400:  # int() of a long digit string is quadratic; no sane message needs more
            raise BadMessageError("integer too long")
        return int(data.decode("ascii"))
    raise BadMessageError(f"unknown extension type {code}")


_packers = threading.local()  # a Packer is not thread-safe (its default hook may let another thread in)


def _packer(fresh: bool = False) -> t.Any:
    """This thread's Packer for plain messages; ``fresh`` replaces it (after an error mid-pack)."""
    packer = None if fresh else getattr(_packers, "packer", None)
    if packer is None:
        packer = _packers.packer = msgpack.Packer(default=_default, use_bin_type=True, strict_types=False)
    return packer


def _unpack(data: bytes) -> t.Any:
    return msgpack.unpackb(data, ext_hook=_ext_hook, raw=False, strict_map_key=False, use_list=True)


def encode_message(message: t.Any) -> tuple[int, bytes]:
    """(flags, the message's part of the body), shared by every channel one publish goes to."""
    sequences = _sequences(message)
    if sequences == 3:  # tuples and lists: tuples as an extension type
        return 0, _pack(message)
    # one kind of sequence (or none): plain arrays, and the flag says which kind; only sets, complex
    # numbers and big ints go through _default (which packs with packb, not with this packer)
    try:
        return (TUPLES if sequences == 1 else 0), _packer().pack(message)
    except UnencodableError:
        _packer(fresh=True)  # the old one may hold a partial pack
        raise
    except (TypeError, ValueError, OverflowError) as error:
        _packer(fresh=True)
        raise UnencodableError(str(error)) from None


def encode(node: bytes, seq: int, stamp: float, subjects: list[str], packed_message: tuple[int, bytes]) -> bytes:
    """One backbone message: header, subjects, and a message from :func:`encode_message`."""
    flags, body = packed_message
    return HEADER.pack(VERSION, flags, node, seq, stamp) + _PAIR + _packer().pack(subjects) + body


_PAIR = b"\x92"  # msgpack: an array of two elements follows


def read_header(data: bytes) -> Header:
    """The header, checked; BadMessageError for too short data or an unknown version."""
    if len(data) < HEADER.size:
        raise BadMessageError(f"{len(data)} bytes is too short for a backbone message")
    header = Header._make(HEADER.unpack_from(data))
    if header.version != VERSION:
        raise BadMessageError(f"unknown backbone format version {header.version} (this node reads {VERSION})")
    if header.flags & ~TUPLES:
        raise BadMessageError(f"unknown flags {header.flags:#x} in a version {VERSION} message")
    return header


def decode_body(data: bytes, max_subjects: int, max_subject_length: int) -> tuple[list[str], t.Any]:
    """(subjects, message) of a message whose header was read; BadMessageError for anything else.

    The size of ``data`` must have been checked by the caller: decoding
    allocates at most in proportion to it.
    """
    tuples = bool(data[1] & TUPLES)
    try:
        body = msgpack.unpackb(memoryview(data)[HEADER.size:], ext_hook=_ext_hook, raw=False, strict_map_key=False,
                               use_list=not tuples)
    except BadMessageError:
        raise
    except Exception as error:  # msgpack raises many kinds on garbage (and RecursionError on deep nesting)
        raise BadMessageError(f"undecodable body: {type(error).__name__}: {error}") from None
    if not isinstance(body, (list, tuple)) or len(body) != 2:
        raise BadMessageError("the body must be an array of two: subjects and message")
    subjects, message = body
    if tuples and isinstance(subjects, tuple):
        subjects = list(subjects)
    if not isinstance(subjects, list) or not subjects or len(subjects) > max_subjects:
        raise BadMessageError("subjects must be a non-empty list within max_subjects_per_publish")
    for subject in subjects:
        if not isinstance(subject, str) or not subject or len(subject) > max_subject_length:
            raise BadMessageError("each subject must be a non-empty str within max_subject_length")
    return subjects, message
