"""The backbone's pure parts: message format, interest routing, shards. No sockets, no Redis."""
from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("msgpack", reason="the backbone needs msgpack (pip install 'eventservice[redis]')")

from eventservice.core.subjects import fold
from eventservice.server.backbone import codec, routing
from eventservice.server.backbone.routing import CATCH_ALL, Interest, channel, shard_of

NODE = b"node0001"


def roundtrip(message, subjects=("A",), stamp=1.5):
    data = codec.encode(NODE, 7, stamp, list(subjects), codec.encode_message(message))
    header = codec.read_header(data)
    assert (header.version, header.node, header.seq, header.time) == (codec.VERSION, NODE, 7, stamp)
    assert header.flags == (codec.TUPLES if codec._sequences(message) == 1 else 0)
    return codec.decode_body(data, 1000, 1000)


@pytest.mark.parametrize("message", [
    None, True, 0, -1, 2 ** 63 - 1, -(2 ** 63), 2 ** 64 - 1, 2 ** 200, -(2 ** 100), 1.25, math.inf, "straße", b"\x00\xff",
    ("SUN", 22.44), (("a", 1), ("b", (2.0, None))), [[1], [2, [3]]], [1, (2, 3)], ((1,), [2]), [{"k": (1,)}],
    {"a": (1,), 2: [None]}, {(1, 2): "tuple key"}, {1, 2}, frozenset({"x"}), 1 + 2j,
    {"nested": [{"deep": ({"x": {1}},)}]},
])
def test_messages_arrive_as_the_types_they_left(message):
    subjects, decoded = roundtrip(message, ["STOCKQUOTE.SUN", "straße"])
    assert subjects == ["STOCKQUOTE.SUN", "straße"]
    assert decoded == message
    assert type(decoded) is type(message)


def test_tuples_inside_containers_stay_tuples():
    _, decoded = roundtrip({"quote": ("SUN", 1.0), "list": [("a",)]})
    assert type(decoded["quote"]) is tuple and type(decoded["list"][0]) is tuple


def test_a_type_msgpack_cannot_carry_is_unencodable():
    class Custom:
        pass
    with pytest.raises(codec.UnencodableError, match="Custom"):
        codec.encode_message([Custom()])


@pytest.mark.parametrize("data, problem", [
    (b"", "too short"),
    (b"\x01short", "too short"),
    (bytes([2]) + bytes(30), "unknown backbone format version 2"),
    (bytes([0x80]) + bytes(30), "unknown backbone format version 128"),
    (bytes([1, 2]) + bytes(30), "unknown flags 0x2"),
])
def test_bad_headers_are_refused_by_name(data, problem):
    with pytest.raises(codec.BadMessageError, match=problem):
        codec.read_header(data)


def header(seq=1):
    return codec.HEADER.pack(codec.VERSION, 0, NODE, seq, 1.0)


@pytest.mark.parametrize("body, problem", [
    (b"", "undecodable"),
    (b"\xc1", "undecodable"),  # a byte msgpack never uses
    (b"\x91\x91\xa1A", "an array of two"),  # subjects, then no message
    (b"\x92\x91\xa1A", "undecodable"),  # the message is missing
    (b"\x92\x91\xa1A\xc0\xc0", "undecodable body: ExtraData"),  # trailing bytes
    (b"\x92\x90\xc0", "non-empty list"),  # no subjects
    (b"\x92\xa1A\xc0", "non-empty list"),  # subjects not a list
    (b"\x92\x91\x01\xc0", "non-empty str"),  # a subject that is not a str
    (b"\x92\x91\xa0\xc0", "non-empty str"),  # an empty subject
    (b"\x92\x91\xa1A\xd4\x63\x00", "unknown extension type 99"),
    (b"\x92\x91\xa1A\xdb\xff\xff\xff\xff", "undecodable"),  # a 4 GiB string in a few bytes
    (b"\x92\x91\xa1A" + b"\x91" * 100000 + b"\xc0", "undecodable"),  # nesting deeper than anything sane
])
def test_garbage_bodies_are_refused_by_name(body, problem):
    with pytest.raises(codec.BadMessageError, match=problem):
        codec.decode_body(header() + body, 1000, 1000)


def test_limits_on_subjects_apply_to_remote_messages():
    data = codec.encode(NODE, 1, 1.0, ["x" * 11], codec.encode_message(None))
    with pytest.raises(codec.BadMessageError, match="max_subject_length"):
        codec.decode_body(data, 1000, 10)
    data = codec.encode(NODE, 1, 1.0, ["a", "b", "c"], codec.encode_message(None))
    with pytest.raises(codec.BadMessageError, match="max_subjects_per_publish"):
        codec.decode_body(data, 2, 10)


def test_decoding_never_unpickles_or_runs_code():
    import pickle
    evil = pickle.dumps(os.system)
    with pytest.raises(codec.BadMessageError):
        codec.decode_body(header() + evil, 1000, 1000)
    with pytest.raises(codec.BadMessageError):
        codec.read_header(evil)


def test_random_bytes_never_escape_as_anything_but_bad_message():
    import random
    rng = random.Random(13)
    for _ in range(3000):
        body = bytes(rng.randrange(256) for _ in range(rng.randrange(40)))
        try:
            codec.decode_body(header() + body, 1000, 1000)
        except codec.BadMessageError:
            pass


# -- routing -----------------------------------------------------------------


def test_channels_are_per_folded_subject():
    assert channel(fold("STRASSE.news")) == channel(fold("straße.NEWS")) == b"eventservice:strasse.news"


def test_shards_are_stable_across_processes_and_spread():
    subjects = [f"subject.{i}" for i in range(2000)]
    here = [shard_of(fold(s), 4) for s in subjects]
    code = textwrap.dedent("""
        import sys
        from eventservice.server.backbone.routing import shard_of
        print(",".join(str(shard_of(f"subject.{i}", 4)) for i in range(2000)))
    """)
    there = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={**os.environ, "PYTHONHASHSEED": "123"}).stdout.strip()
    assert there == ",".join(map(str, here))
    counts = [here.count(shard) for shard in range(4)]
    assert min(counts) > 400, counts  # about 500 each
    assert all(shard_of(s, 1) == 0 for s in subjects[:10])


def test_adding_a_shard_moves_only_a_fraction_of_the_subjects():
    subjects = [f"s{i}" for i in range(4000)]
    moved = sum(shard_of(s, 4) != shard_of(s, 5) for s in subjects)
    assert moved < 4000 * 0.3  # jump hash: about 1/5 move; a modulo would move about 4/5


def test_interest_is_reference_counted_and_batched():
    interest = Interest(1, batch=2)
    assert interest.changed(added=["a", "b", "c"]) == {0}
    assert interest.commands(0) == [("SUBSCRIBE", [channel("a"), channel("b")]), ("SUBSCRIBE", [channel("c")])]
    assert interest.commands(0) == []  # nothing new
    assert interest.changed(added=["a"]) == set()  # a second subscriber of "a": no command
    assert interest.changed(removed=["a"]) == set()
    assert interest.changed(removed=["a", "b"]) == {0}
    assert interest.commands(0) == [("UNSUBSCRIBE", [channel("a"), channel("b")])]
    assert interest.subjects() == 1


def test_flapping_subscriptions_coalesce_before_they_are_sent():
    interest = Interest(1)
    for _ in range(100):
        interest.changed(added=["x"])
        interest.changed(removed=["x"])
    assert interest.commands(0) == []


def test_patterns_switch_to_the_catch_all_without_a_gap():
    interest = Interest(1)
    interest.changed(added=["a", "b"])
    interest.commands(0)
    assert interest.changed(patterns=1) == {0}
    # the catch-all first, then the exact channels go: the node never holds neither
    assert interest.commands(0) == [("PSUBSCRIBE", [CATCH_ALL]), ("UNSUBSCRIBE", [channel("a"), channel("b")])]
    interest.changed(added=["c"], patterns=2)
    assert interest.commands(0) == []  # covered by the catch-all
    interest.changed(patterns=-3)
    assert not interest.catch_all
    assert interest.commands(0) == [("SUBSCRIBE", [channel("a"), channel("b"), channel("c")]),
                                    ("PUNSUBSCRIBE", [CATCH_ALL])]


def test_reset_resubscribes_everything_after_a_reconnect():
    interest = Interest(2)
    subjects = [f"s{i}" for i in range(50)]
    interest.changed(added=subjects)
    first = [interest.commands(0), interest.commands(1)]
    interest.reset(1)
    assert interest.commands(0) == []
    assert interest.commands(1) == first[1]
    assert sorted(c for _, chans in first[0] + first[1] for c in chans) == sorted(channel(s) for s in subjects)


def test_catch_all_goes_to_every_shard():
    interest = Interest(3)
    assert interest.changed(patterns=1) == {0, 1, 2}
    assert all(interest.commands(shard) == [("PSUBSCRIBE", [CATCH_ALL])] for shard in range(3))


def test_a_publish_is_routed_once_per_folded_subject():
    interest = Interest(4)
    routes = interest.route(["STRASSE", "straße", "other"])
    assert sorted(routes.values()) == [["STRASSE", "straße"], ["other"]]
    for (shard, name), _ in routes.items():
        assert name in (channel("strasse"), channel("other"))
        assert shard == routing.shard_of(name[len(routing.CHANNEL_PREFIX):].decode(), 4)


# -- RESP ----------------------------------------------------------------------

from eventservice.server.backbone import resp  # noqa: E402

REPLIES = (b"*3\r\n$7\r\nmessage\r\n$4\r\nchan\r\n$5\r\n\x00\r\n\xff!\r\n:7\r\n+PONG\r\n-ERR wrong\r\n$-1\r\n"
           b"*4\r\n$8\r\npmessage\r\n$1\r\n*\r\n$1\r\nc\r\n$0\r\n\r\n")
EXPECTED = [[b"message", b"chan", b"\x00\r\n\xff!"], 7, b"PONG", "ERR wrong", None, [b"pmessage", b"*", b"c", b""]]


def read_all(reader, data: bytes, step: int) -> list:
    replies = []
    for start in range(0, len(data), step):
        reader.feed(data[start:start + step])
        reply = reader.gets()
        while reply is not False:
            replies.append(str(reply) if isinstance(reply, resp.ReplyError) else reply)
            reply = reader.gets()
    return replies


@pytest.mark.parametrize("step", [1, 3, 7, 1000])
def test_the_python_reader_reads_what_redis_sends_in_any_pieces(step):
    assert read_all(resp.PyReader(), REPLIES, step) == EXPECTED


@pytest.mark.parametrize("step", [1, 1000])
def test_the_reader_in_use_reads_the_same(step):
    assert read_all(resp.Reader(), REPLIES, step) == EXPECTED


def test_the_python_reader_refuses_what_is_not_resp():
    reader = resp.PyReader()
    reader.feed(b"hello\r\n")
    with pytest.raises(resp.ProtocolError):
        reader.gets()
    reader = resp.PyReader()
    reader.feed(b"$99999999999\r\n")
    with pytest.raises(resp.ProtocolError, match="too large"):
        reader.gets()


def test_pack_makes_a_resp_array_of_bulk_strings():
    assert resp.pack(b"PUBLISH", b"c", b"\r\n") == b"*3\r\n$7\r\nPUBLISH\r\n$1\r\nc\r\n$2\r\n\r\n\r\n"
    reader = resp.PyReader()
    reader.feed(resp.pack(b"SUBSCRIBE", b"a", b"b"))
    assert reader.gets() == [b"SUBSCRIBE", b"a", b"b"]
