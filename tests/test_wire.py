"""Unit tests for eventservice.pyro.wire: requests Pyro5 daemons understand, replies read in pieces."""
from __future__ import annotations

import marshal
import struct

import pytest
from Pyro5 import config as pyro_config
from Pyro5 import errors, protocol, serializers

from eventservice.pyro.wire import (
    HEADER_SIZE,
    Reply,
    ReplyReader,
    encode_call,
    encode_marshal_call,
    encode_result,
    marshal_call_tail,
    marshalled_call,
    receive_request,
)


def reply_bytes(value, seq: int = 7, flags: int = 0, serializer: str = "marshal",
                msgtype: int = protocol.MSG_RESULT) -> bytes:
    chosen = serializers.serializers[serializer]
    return protocol.SendingMessage(msgtype, flags, seq, chosen.serializer_id, chosen.dumps(value)).data


@pytest.mark.parametrize("serializer", ["marshal", "serpent", "json", "msgpack"])
def test_encoded_call_is_what_a_pyro5_daemon_reads(serializer):
    batch = [("STOCKQUOTE.SUN", [1, 2.5, "x"], 1700000000.25)]
    data = encode_call("obj_42", "events", (batch,), serializer, seq=9)
    message = protocol.ReceivingMessage(data[:HEADER_SIZE], data[HEADER_SIZE:])
    assert (message.type, message.seq, message.flags) == (protocol.MSG_INVOKE, 9, 0)
    object_id, method, args, kwargs = serializers.serializers_by_id[message.serializer_id].loadsCall(message.data)
    assert (object_id, method, kwargs) == ("obj_42", "events", {})
    assert [list(item) for item in args[0]] == [list(item) for item in batch]


BATCHES = [
    [],
    [("STOCKQUOTE.SUN", (1, 2.5, "SUN", 123.45), 1700000000.25)],
    [("straße.NEWS", {"k": [None, True, b"raw", 1j, frozenset({1})]}, 1.0)] * 3,
    [("S", "x" * 70000, 2.0), ("S\ud800", (), 3.0)],  # long string; a lone surrogate
]


@pytest.mark.parametrize("batch", BATCHES)
def test_shared_marshal_tail_is_the_call_pyro5_would_read(batch):
    """One marshalled tail, prefixed per object, decodes exactly as Pyro5's own marshal call would."""
    data = encode_marshal_call("obj_7", marshal_call_tail("events", [batch]), seq=65535)
    message = protocol.ReceivingMessage(data[:HEADER_SIZE], data[HEADER_SIZE:])
    assert (message.seq, message.serializer_id) == (65535, serializers.serializers["marshal"].serializer_id)
    assert serializers.serializers["marshal"].loadsCall(message.data) == ("obj_7", "events", [batch], {})
    # the concatenation is marshal's own encoding of the tuple (format version 2 has no back-references)
    assert message.data == marshal.dumps(("obj_7", "events", [batch], {}), 2)


def test_marshal_tail_refuses_what_marshal_cannot_carry():
    with pytest.raises(ValueError):
        marshal_call_tail("events", [[("S", object(), 1.0)]])


def test_batch_call_sets_the_batch_flag():
    calls = [("event", ("one",), {}), ("event", ("two",), {})]
    data = encode_call("obj", "<batch>", calls, "serpent", seq=1, batch=True)
    assert protocol.ReceivingMessage(data[:HEADER_SIZE]).flags & protocol.FLAGS_BATCH


def test_oversized_call_is_refused_before_sending(monkeypatch):
    monkeypatch.setattr(pyro_config, "MAX_MESSAGE_SIZE", 1000)
    with pytest.raises(errors.ProtocolError, match="too large"):
        encode_call("obj", "events", (["x" * 2000],), "marshal", seq=1)


def test_reply_read_one_byte_at_a_time():
    data = reply_bytes({"ok": [1, 2]}, seq=513)
    reader = ReplyReader()
    assert not reader.started
    for index in range(len(data) - 1):
        assert reader.feed(data[index:index + 1]) is None
        assert reader.started
    assert reader.feed(data[-1:]) == Reply(513, {"ok": [1, 2]}, False)


def test_reply_in_one_chunk_with_annotations():
    chosen = serializers.serializers["serpent"]
    data = protocol.SendingMessage(protocol.MSG_RESULT, 0, 3, chosen.serializer_id, chosen.dumps(None),
                                   annotations={"TEST": b"abc"}).data
    assert ReplyReader().feed(data) == Reply(3, None, False)


def test_exception_reply_is_marked_raised():
    reply = ReplyReader().feed(reply_bytes(ValueError("bad event"), flags=protocol.FLAGS_EXCEPTION,
                                           serializer="serpent"))
    assert reply.raised and isinstance(reply.value, ValueError) and str(reply.value) == "bad event"


@pytest.mark.parametrize("junk", [b"HTTP/1.1 200 OK\r\n\r\n", b"PYRO\x00\x01" + b"\0" * 40])
def test_junk_is_refused_as_soon_as_it_shows(junk):
    with pytest.raises(errors.ProtocolError):
        ReplyReader().feed(junk)


def test_a_request_instead_of_a_reply_is_refused():
    with pytest.raises(errors.ProtocolError, match="message type"):
        ReplyReader().feed(reply_bytes(None, msgtype=protocol.MSG_INVOKE))


def test_bytes_after_the_reply_are_refused():
    with pytest.raises(errors.ProtocolError, match="after a reply"):
        ReplyReader().feed(reply_bytes(None) + b"X")


def test_huge_announced_size_is_refused_from_the_header_alone():
    header = bytearray(reply_bytes(None)[:HEADER_SIZE])
    struct.pack_into("!I", header, 0x0C, pyro_config.MAX_MESSAGE_SIZE + 1)  # the data length field
    with pytest.raises(errors.ProtocolError, match="too large"):
        ReplyReader().feed(bytes(header))


class Chunks:
    """A stand-in for Pyro5's SocketConnection: recv(n) hands out exactly n bytes of a prepared stream."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def recv(self, size: int) -> bytes:
        if len(self.data) < size:
            raise errors.ConnectionClosedError("receiving: not enough data")
        chunk, self.data = self.data[:size], self.data[size:]
        return chunk


def test_request_read_as_pyro5_reads_it_and_its_bytes_kept():
    request = encode_call("obj", "publish", ("S", (1, 2)), "marshal", seq=5)
    connection = Chunks(request + b"NEXT")
    message, raw = receive_request(connection)
    assert raw == request and connection.data == b"NEXT"  # exactly one request consumed
    assert marshalled_call(message) == ("obj", "publish", ["S", (1, 2)])


def test_request_with_a_bad_start_is_refused_before_reading_on():
    connection = Chunks(b"GET / HTTP/1.1\r\n\r\n" + b"x" * 100)
    with pytest.raises(errors.ProtocolError):
        receive_request(connection)
    assert len(connection.data) > 50  # it read no further than the first 6 bytes


@pytest.mark.parametrize("request_bytes", [
    encode_call("obj", "publish", ("S", 1), "serpent", seq=1),  # another serializer
    encode_call("obj", "<batch>", [("publish", ("S", 1), {})], "marshal", seq=1, batch=True),  # a batch
    protocol.SendingMessage(protocol.MSG_INVOKE, 0, 1, serializers.serializers["marshal"].serializer_id,
                            marshal.dumps(("obj", "publish", ["S"], {"msg": 1}))).data,  # keyword arguments
    protocol.SendingMessage(protocol.MSG_PING, 0, 1, 42, b"ping").data,  # not a call
], ids=["serpent", "batch", "kwargs", "ping"])
def test_only_plain_marshalled_calls_are_direct(request_bytes):
    message, _ = receive_request(Chunks(request_bytes))
    assert marshalled_call(message) is None


def test_result_reads_back_as_the_value():
    assert ReplyReader().feed(encode_result(77, [[0, "ValueError", "bad"]])) == Reply(77, [[0, "ValueError", "bad"]], False)
    assert ReplyReader().feed(encode_result(78, None)) == Reply(78, None, False)
