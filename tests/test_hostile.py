"""Hostile and careless input: the Event Service stays up, bounded and fair.

The acceptance rule of the "hostile input" issue: whatever a hostile script
sends, a well-behaved subscriber still receives a publish within 2 s, the ES
answers ping() and its stats stay sane. Most tests therefore end with
``guard.check()``. The ES mostly runs in the test process (conftest's
``start_es``), so its threads are counted with ``threading.active_count()``;
input that may stall the whole process (the GIL) or crash it runs against an
``es`` subprocess instead. Raw sockets speak (broken) Pyro5 wire protocol to
the ES port on 127.0.0.1 only. Every wait is bounded.
"""
from __future__ import annotations

import contextlib
import gc
import itertools
import queue
import select
import socket
import struct
import sys
import threading
import time
import types

import Pyro5.api
import pytest
import regex
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from Pyro5 import errors, protocol, serializers, socketutil

import eventservice
from conftest import LOCALHOST, WAIT, Collector, flat_stats, read_line, wait_until
from eventservice.core.subscriptions import PATTERN_FLAGS

pytestmark = pytest.mark.network

ACCEPTANCE = 2.0  # seconds from the start of a publish to its receipt, whatever a hostile script does
GOOD = "WELL.BEHAVED"
SERPENT = serializers.serializers["serpent"]
CATASTROPHIC = r"(a|aa)+$"  # exponential backtracking on 'aaaa...!'
CATASTROPHIC_SUBJECT = "a" * 60 + "!"
BIG_PROGRAM = r"(?:a{1000}){2000}"  # 17 characters, 2 million nodes: seconds of compiling with the GIL held


# -- the well-behaved side ------------------------------------------------------


class Guard:
    """A running ES watched by a well-behaved subscriber (on GOOD) and a well-behaved publisher."""

    def __init__(self, running, good: Collector, publisher: eventservice.Publisher) -> None:
        self.running = running
        self.good = good
        self.publisher = publisher
        self._markers = itertools.count()

    def stats(self) -> dict:
        service = getattr(self.running, "service", None)
        if service is not None:
            return flat_stats(service)
        with Pyro5.api.Proxy(self.running.uri) as es:
            es._pyroTimeout = WAIT
            return flat_stats(es.stats())

    def ping(self, timeout: float = WAIT) -> None:
        with Pyro5.api.Proxy(self.running.uri) as es:
            es._pyroTimeout = timeout
            assert es.ping() is True

    def latency(self, skip_other: bool = False) -> None:
        """Publish the next marker on GOOD; fail unless the good subscriber has it within ACCEPTANCE (a bounded wait)."""
        marker = ["marker", next(self._markers)]
        start = time.monotonic()
        self.publisher.publish(GOOD, marker)
        while True:
            event = receive_by(self.good, start + ACCEPTANCE, f"marker {marker}")
            if event.msg == marker:
                return
            assert skip_other and not (isinstance(event.msg, list) and event.msg[:1] == ["marker"]), (
                f"expected {marker}, received {event.msg!r}")

    def check(self, skip_other: bool = False) -> None:
        """The acceptance rule: ping() answers, a publish arrives within ACCEPTANCE, stats look sane."""
        self.ping()
        self.latency(skip_other)
        stats = self.stats()
        assert stats["subscribers"] >= 1 and stats["mailboxes"] >= 1, stats
        service = getattr(self.running, "service", None)
        assert stats["connectors"] <= (service.settings.connectors if service else 64), stats


def receive_by(collector: Collector, deadline: float, what: str):
    """The collector's next event, or fail the test once ``deadline`` (monotonic) has passed."""
    try:
        return collector.received.get(timeout=max(0.0, deadline - time.monotonic()))
    except queue.Empty:
        pytest.fail(f"{what} did not arrive within {ACCEPTANCE}s of its publish")


@pytest.fixture
def guarded(start_es, collectors):
    """Factory: ``guarded(**settings)`` starts an ES and a Guard, checked once before the hostile part."""
    made: list[Guard] = []

    def make(**settings) -> Guard:
        running = start_es(**settings)
        good = collectors()
        good.subscribe(GOOD)
        guard = Guard(running, good, eventservice.Publisher())
        made.append(guard)
        guard.check()
        return guard

    yield make
    for guard in made:
        guard.publisher.close()


@pytest.fixture
def guarded_process(processes, collectors):
    """Factory: ``guarded_process(*es_options)``: a Guard on an ES run by the ``es`` command in its own process.

    For input that may stall (the GIL) or crash the ES's process: the test process keeps honest time.
    """
    made: list[Guard] = []

    def make(*options: str) -> Guard:
        server = processes.spawn("-m", "eventservice.server", "-N", "-n", LOCALHOST, *options)
        line = read_line(server, expect="Event Service URI:")
        uri = Pyro5.api.URI(line.split("Event Service URI:", 1)[1].strip())
        good = collectors(esURI=uri)
        good.subscribe(GOOD)
        guard = Guard(types.SimpleNamespace(uri=uri, process=server), good, eventservice.Publisher(esURI=uri))
        made.append(guard)
        guard.check()
        return guard

    yield make
    for guard in made:
        guard.publisher.close()


class Stuck(Collector):
    """A subscriber whose event() does not return until ``release`` is set (bounded)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.inside = threading.Event()
        self.release = threading.Event()

    def event(self, event) -> None:
        self.inside.set()
        self.release.wait(6 * WAIT)
        super().event(event)


@pytest.fixture
def subscribers(start_es):
    """Factory: ``subscribers(cls)`` makes a listening subscriber; Stuck ones are released, all closed first."""
    made: list[Collector] = []

    def make(cls: type = Collector) -> Collector:
        subscriber = cls()
        made.append(subscriber)
        subscriber.listenInThread()
        return subscriber

    yield make
    for subscriber in made:
        if isinstance(subscriber, Stuck):
            subscriber.release.set()
    for subscriber in made:
        subscriber.close()


@pytest.fixture
def blackhole(start_es):
    """A socket on 127.0.0.1 that listens but never accepts: calls to it hang; closed before the ES stops."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((LOCALHOST, 0))
    sock.listen(128)
    yield sock
    sock.close()  # resets the connections waiting in its backlog, so stuck deliveries end now


@pytest.fixture
def raw_es(start_es):
    """Factory: a plain Pyro5 proxy to the ES of a RunningES (no skeleton), released afterwards."""
    made = []

    def make(running):
        proxy = Pyro5.api.Proxy(running.uri)
        proxy._pyroTimeout = WAIT
        made.append(proxy)
        return proxy

    yield make
    for proxy in made:
        proxy._pyroClaimOwnership()
        proxy._pyroRelease()


def callback_object():
    """A Pyro object that exposes hello() but neither event() nor events()."""

    class NotASubscriber:
        @Pyro5.api.expose
        def hello(self) -> str:
            return "hello"

    return NotASubscriber()


# -- raw sockets ----------------------------------------------------------------


@contextlib.contextmanager
def raw_connection(running, timeout: float = WAIT):
    """A plain TCP connection to the ES port."""
    sock = socket.create_connection((running.uri.host, running.uri.port), timeout=timeout)
    try:
        yield sock
    finally:
        sock.close()


def header(msgtype: int = protocol.MSG_CONNECT, data_size: int = 0, annotations_size: int = 0,
           serializer_id: int = SERPENT.serializer_id, flags: int = 0, seq: int = 0) -> bytes:
    """A well-formed 40-byte Pyro5 message header (see Pyro5/protocol.py)."""
    return struct.pack(protocol._header_format, b"PYRO", protocol.PROTOCOL_VERSION, msgtype, serializer_id,
                       flags, seq, data_size, annotations_size, b"\0" * 16, 0, protocol._magic_number)


def closed_by_es_within(sock: socket.socket, seconds: float) -> float:
    """Read (and drop) until the ES closes the connection; returns when (monotonic). Fails after ``seconds``."""
    start = time.monotonic()
    deadline = start + seconds
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            pytest.fail(f"the ES kept the connection open for more than {seconds}s")
        sock.settimeout(remaining)
        try:
            data = sock.recv(65536)
        except TimeoutError:
            pytest.fail(f"the ES kept the connection open for more than {seconds}s")
        except (ConnectionResetError, BrokenPipeError):
            return time.monotonic()
        if not data:
            return time.monotonic()


def closed_by_peer(sock: socket.socket) -> bool:
    """True if the other end closed ``sock`` (readable with nothing to read); never blocks."""
    readable, _, _ = select.select([sock], [], [], 0)
    if not readable:
        return False
    try:
        return sock.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


def handshake(sock: socket.socket, running) -> socketutil.SocketConnection:
    """Do a valid Pyro5 connect handshake by hand; returns the connection, ready for requests."""
    conn = socketutil.SocketConnection(sock, keep_open=True)
    payload = SERPENT.dumps({"handshake": "hello", "object": running.uri.object})
    conn.send(protocol.SendingMessage(protocol.MSG_CONNECT, 0, 0, SERPENT.serializer_id, payload).data)
    assert protocol.recv_stub(conn, [protocol.MSG_CONNECTOK]).type == protocol.MSG_CONNECTOK
    return conn


def peak_memory_mb(process) -> float:
    """The peak resident memory of a child process (VmHWM), in MB."""
    with open(f"/proc/{process.pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    pytest.skip("no VmHWM in /proc/<pid>/status")


# -- patterns: bounded in time ----------------------------------------------------


@pytest.mark.parametrize("pattern_timeout", [None, 0.05], ids=["default-timeout", "timeout-0.05"])
def test_catastrophic_pattern_is_timed_out_and_removed(guarded, collectors, pattern_timeout):
    """A backtracking pattern costs one bounded match: publish stays fast and the pattern is dropped."""
    guard = guarded(**({} if pattern_timeout is None else {"pattern_timeout": pattern_timeout}))
    guard.good.subscribe(CATASTROPHIC_SUBJECT)
    hostile = collectors()
    hostile.subscribeMatch(CATASTROPHIC)
    before = guard.stats()
    assert (before["subscriptions_pattern"], before["subscribers"], before["pattern_timeouts"]) == (1, 2, 0)

    # unbounded, the match would run for ages (2**60 ways to split the a's): the receipt's deadline, which
    # counts from before the publish, tells a timed-out pattern from a hung publish
    start = time.monotonic()
    assert guard.publisher.publish(CATASTROPHIC_SUBJECT, "boom") == 1
    assert receive_by(guard.good, start + ACCEPTANCE, "the exact subscriber's event").msg == "boom"

    after = guard.stats()
    assert (after["subscriptions_pattern"], after["pattern_timeouts"]) == (0, 1), after
    assert after["subscribers"] == 1, "the hostile subscriber had nothing left and should be gone"
    for number in range(5):
        start = time.monotonic()
        assert guard.publisher.publish(CATASTROPHIC_SUBJECT + str(number % 2), number) == 0
        assert guard.publisher.publish(CATASTROPHIC_SUBJECT, number) == 1
        assert receive_by(guard.good, start + ACCEPTANCE, f"event {number}").msg == number
    assert guard.stats()["pattern_timeouts"] == 1
    assert hostile.nothing_more(0.1)
    guard.check()


def test_many_slow_patterns_cannot_stall_a_publish(guarded, collectors):
    """pattern_timeout bounds the whole publish, not each pattern: 30 slow patterns do not cost 30 timeouts.

    With a 1 s budget, one budget for all is about 1 s, a budget per pattern 30 s: the bounded wait (WAIT)
    lies far from both, so the test needs no stopwatch.
    """
    guard = guarded(pattern_timeout=1.0)
    guard.good.subscribe(CATASTROPHIC_SUBJECT)
    hostile = collectors()
    # accepted: compiling them is cheap, only matching them is slow (a cap refusing them would be a defence
    # too, but then this test would prove nothing: it insists on the matching)
    hostile.subscribeMatch([f"{CATASTROPHIC}(?#{number})" for number in range(30)])  # 30 texts, one meaning
    assert guard.stats()["subscriptions_pattern"] == 30

    start = time.monotonic()
    guard.publisher.publish(CATASTROPHIC_SUBJECT, "boom")
    assert receive_by(guard.good, start + WAIT, "the exact subscriber's event").msg == "boom"
    after = guard.stats()
    assert (after["subscriptions_pattern"], after["pattern_timeouts"]) == (0, 30), after  # every one ran out of time
    guard.check()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/<pid>/status")
def test_pattern_with_huge_compiled_program_is_bounded(guarded_process, collectors):
    """A 17-character pattern that compiles to 2 million nodes: neither stalls delivery nor costs 100s of MB."""
    guard = guarded_process()
    hostile = collectors(esURI=guard.running.uri)
    peak_before = peak_memory_mb(guard.running.process)
    outcome: queue.Queue = queue.Queue()

    def attack() -> None:
        try:
            hostile.subscribeMatch(BIG_PROGRAM)
            outcome.put("accepted")
        except (ValueError, TypeError, errors.PyroError) as error:
            outcome.put(error)

    attacker = threading.Thread(target=attack, name="hostile-compile", daemon=True)
    attacker.start()
    deadline = time.monotonic() + 3 * WAIT
    checks = 0
    while (attacker.is_alive() or not checks) and time.monotonic() < deadline and checks < 1000:
        guard.latency()  # fails once a publish takes longer than ACCEPTANCE
        checks += 1
    attacker.join(3 * WAIT)
    assert not attacker.is_alive(), "subscribeMatch of the pattern did not finish"
    result = outcome.get_nowait()
    assert not isinstance(result, errors.PyroError), result
    if isinstance(result, Exception):
        assert BIG_PROGRAM in str(result)
    assert guard.running.process.poll() is None
    grown = peak_memory_mb(guard.running.process) - peak_before
    assert grown < 100, f"one {len(BIG_PROGRAM)}-character pattern raised the ES's peak memory by {grown:.0f} MB"
    guard.check()


def test_pattern_that_crashes_the_regex_compiler_does_not_kill_the_es(guarded_process, collectors):
    """'ß{300000}' (9 characters) segfaults regex.compile under IGNORECASE|FULLCASE: the ES must survive it."""
    guard = guarded_process()
    hostile = collectors(esURI=guard.running.uri)
    for pattern in ("ß{300000}", "(?:ß{1000}){300}"):
        try:
            hostile.subscribeMatch(pattern)
        except ValueError as error:  # refused: the helper process that compiled it first crashed or ran out
            assert f"pattern {pattern!r} refused" in str(error), error
        except errors.PyroError as error:
            pytest.fail(f"the ES process died (exit code {guard.running.process.poll()}) on "
                        f"subscribeMatch({pattern!r}): {error}")
        else:
            pytest.fail(f"{pattern!r} was accepted: if regex no longer crashes on it, pick one that does")
        assert guard.running.process.poll() is None
        guard.check()
    assert guard.stats()["subscriptions_pattern"] == 0


@pytest.mark.parametrize("how", ["generic publish", "skeleton publish", "generic publishBatch"])
def test_one_huge_publish_cannot_hold_up_other_publishers(guarded, collectors, raw_es, how):
    """One publish to 10 000 distinct subjects against 100 cheap patterns (seconds of matching): others get through
    meanwhile, whether it comes from a generic Pyro5 client or the Publisher skeleton, as one publish or a batch."""
    subjects = [f"s{number}" for number in range(10_000)]
    guard = guarded(max_subjects_per_publish=len(subjects))  # the default cap (1000) would refuse it at once
    hostile = collectors()
    hostile.subscribeMatch([rf"^x{number}\d" for number in range(50)] + [f"(?:y{number})+$" for number in range(50)])
    assert guard.stats()["subscriptions_pattern"] == 100
    es = raw_es(guard.running)
    misses = guard.stats()["cache_misses"]
    outcome: queue.Queue = queue.Queue()

    def attack() -> None:
        es._pyroClaimOwnership()
        es._pyroTimeout = 6 * WAIT
        try:
            if how == "generic publish":
                outcome.put(es.publish(subjects, "flood"))
            elif how == "generic publishBatch":
                outcome.put(es.publishBatch([[subject, "flood"] for subject in subjects]))
            else:
                with eventservice.Publisher(esURI=guard.running.uri) as publisher:
                    outcome.put(publisher.publish(subjects, "flood"))
        except (ValueError, TypeError, errors.PyroError) as error:
            outcome.put(error)

    attacker = threading.Thread(target=attack, name="hostile-publish", daemon=True)
    attacker.start()
    wait_until(lambda: guard.stats()["cache_misses"] > misses + 1000, message="the ES to start matching the huge publish")
    try:
        guard.check()
        assert attacker.is_alive(), "the huge publish was over before the good one: it proves nothing, make it bigger"
    finally:
        attacker.join(6 * WAIT)
    assert not attacker.is_alive()
    # accepted and matched against every pattern: no subscriber for s0..s9999
    assert outcome.get_nowait() == ([] if how == "generic publishBatch" else 0)
    assert guard.stats()["cache_misses"] >= misses + len(subjects)
    guard.check()


def test_invalid_pattern_is_refused_with_its_regex_error(guarded, collectors):
    """subscribeMatch of a pattern that does not compile: ValueError naming it and the regex error; nothing kept."""
    guard = guarded()
    hostile = collectors()
    before = guard.stats()
    for pattern in ["(unclosed", "a)", "*star", "a**", "[z-a]", "a{2,1}", "\\", "\\p{NoSuch}", "(?z)", "(?P<1x>a)"]:
        try:
            regex.compile(pattern, PATTERN_FLAGS)
        except regex.error as error:
            expected = str(error)
        else:
            pytest.fail(f"{pattern!r} compiles; pick another invalid pattern")
        with pytest.raises(ValueError) as refused:
            hostile.subscribeMatch(pattern)
        assert repr(pattern) in str(refused.value) and expected in str(refused.value), str(refused.value)
    with pytest.raises(ValueError, match="unclosed"):
        hostile.subscribeMatch([r"^ok\.", "(unclosed"])  # all or nothing
    after = guard.stats()
    for name in ("subscribers", "subscriptions_exact", "subscriptions_pattern", "mailboxes"):
        assert after[name] == before[name], (name, before, after)
    assert guard.publisher.publish("ok.then", 1) == 0
    guard.check()


# -- limits ---------------------------------------------------------------------------


def test_subject_and_pattern_length_limits(guarded, collectors, raw_es):
    """Subjects and patterns past their length limit: ValueError naming the limit, nothing registered."""
    guard = guarded(max_subject_length=50, max_pattern_length=50)
    hostile = collectors()
    es = raw_es(guard.running)
    before = guard.stats()
    long_subject, long_pattern = "S" * 51, "^" + "P" * 50
    attempts = [
        ("subscribe", lambda: hostile.subscribe(long_subject)),
        ("subscribe list", lambda: hostile.subscribe(["FINE", long_subject])),
        ("subscribeMatch", lambda: hostile.subscribeMatch(long_pattern)),
        ("subscribeMatch list", lambda: hostile.subscribeMatch(["^fine", long_pattern])),
        ("publish", lambda: guard.publisher.publish(long_subject, 1)),
        ("publish list", lambda: guard.publisher.publish([GOOD, long_subject], 1)),
        ("unsubscribe", lambda: hostile.unsubscribe("U" * 51)),
    ]
    for name, attempt in attempts:
        with pytest.raises(ValueError) as refused:
            attempt()
        assert "limit is 50" in str(refused.value), (name, str(refused.value))
    refused = es.publishBatch([[long_subject, 1], [GOOD, "batched"]])
    assert [entry[:2] for entry in refused] == [[0, "ValueError"]] and "limit is 50" in refused[0][2], refused
    assert receive_by(guard.good, time.monotonic() + ACCEPTANCE, "the valid batched publish").msg == "batched"
    after = guard.stats()
    for name in ("subscribers", "subscriptions_exact", "subscriptions_pattern", "mailboxes"):
        assert after[name] == before[name], (name, before, after)
    assert after["published"] == before["published"] + 1

    hostile.subscribe("S" * 50)  # exactly at the limit is fine
    hostile.subscribeMatch("^" + "S" * 49)
    assert guard.publisher.publish("S" * 50, "edge") == 1
    assert [event.msg for event in hostile.take(1)] == ["edge"]
    guard.check()


def test_subscription_cap_per_subscriber(guarded, collectors):
    """The 6th subject or pattern of one subscriber (max_subscriptions=5): ValueError naming the limit."""
    guard = guarded(max_subscriptions=5)
    capped = collectors()
    capped.subscribe(["CAP.0", "CAP.1", "CAP.2"])
    capped.subscribeMatch([r"^CAP\.3$", r"^CAP\.4$"])
    before = guard.stats()
    for attempt in (lambda: capped.subscribe("CAP.5"), lambda: capped.subscribeMatch(r"^CAP\.5$"),
                    lambda: capped.subscribe(["CAP.0", "CAP.5"])):
        with pytest.raises(ValueError, match="max_subscriptions") as refused:
            attempt()
        assert "limit is 5" in str(refused.value)
    capped.subscribe(["cap.0", "CAP.1"])  # already held (case-insensitive): no new subscription, no error
    for name in ("subscribers", "subscriptions_exact", "subscriptions_pattern"):
        assert guard.stats()[name] == before[name]
    for number in range(6):
        assert guard.publisher.publish(f"CAP.{number}", number) == (1 if number < 5 else 0)
    assert [event.msg for event in capped.take(5)] == [0, 1, 2, 3, 4]
    assert capped.nothing_more(0.1)
    other = collectors()
    other.subscribe([f"OTHER.{number}" for number in range(5)])  # the cap is per subscriber
    guard.check()


# -- bad calls ----------------------------------------------------------------------


def test_bad_calls_through_a_raw_proxy_are_refused_cleanly(guarded, collectors, raw_es):
    """Wrong types and shapes through a plain Pyro5 proxy: TypeError/ValueError naming the problem, no change."""
    guard = guarded()
    spare = collectors()
    callback = spare._callback_proxy()
    es = raw_es(guard.running)
    with Pyro5.api.Daemon(host=LOCALHOST) as daemon:
        other = callback_object()
        daemon.register(other)
        not_a_subscriber = daemon.proxyFor(other)
        cases = [
            ("publish", (None, 1), TypeError, "subjects must be a str"),
            ("publish", (123, 1), TypeError, "not int"),
            ("publish", ([1, 2], 1), TypeError, "each of subjects must be a str"),
            ("publish", ({"A": 1}, 1), TypeError, "not dict"),
            ("publish", ([], 1), ValueError, "must not be empty"),
            ("publish", ([""], 1), ValueError, "empty string"),
            ("publish", ("A",), TypeError, "message"),
            ("subscribe", ("X", "not a proxy"), TypeError, "subscriber must be a Pyro callback object"),
            ("subscribe", ("X", 42), TypeError, "not int"),
            ("subscribe", (["A", None], callback), TypeError, "not NoneType"),
            ("subscribeMatch", (["ok", 5], callback), TypeError, "each of subjectPatterns must be a str"),
            ("subscribe", ("X", not_a_subscriber), TypeError, "does not expose an event"),
            ("subscribeMatch", ("^X", not_a_subscriber), TypeError, "does not expose an event"),
            ("unsubscribe", (None, callback), TypeError, "subjects must be a str"),
            ("unsubscribeAll", ("nope",), TypeError, "subscriber must be a Pyro callback object"),
            ("hasSubscriptions", (None,), TypeError, "subscriber must be a Pyro callback object"),
            ("publishBatch", ("nope",), TypeError, "items must be a list"),
            ("publishBatch", (None,), TypeError, "items must be a list"),
        ]
        before = guard.stats()
        problems = []
        for method, args, kind, words in cases:
            try:
                result = getattr(es, method)(*args)
            except (TypeError, ValueError) as error:
                if type(error) is not kind or words not in str(error):
                    problems.append(f"{method}{args!r}: {type(error).__name__}: {error}")
            else:
                problems.append(f"{method}{args!r} returned {result!r} instead of raising {kind.__name__}")
        assert problems == []
    # a malformed batch item is reported per item (the documented publishBatch contract), never raised
    refused = es.publishBatch([["A"], "junk", [None, 2], [GOOD, "valid"]])
    assert [entry[:2] for entry in refused] == [[0, "TypeError"], [1, "TypeError"], [2, "TypeError"]], refused
    assert "pair" in refused[0][2] and "pair" in refused[1][2] and "subjects" in refused[2][2]
    assert receive_by(guard.good, time.monotonic() + ACCEPTANCE, "the valid batched publish").msg == "valid"
    after = guard.stats()
    for name in ("subscribers", "subscriptions_exact", "subscriptions_pattern", "mailboxes", "queued"):
        assert after[name] == before[name], (name, before, after)
    assert after["published"] == before["published"] + 1
    assert es.ping() is True
    guard.check()


def test_unexposed_internals_cannot_be_invoked(guarded, raw_es):
    """A hand-made request for close(), _drop() or _accept() is refused; the ES keeps serving."""
    guard = guarded()
    es = raw_es(guard.running)
    es._pyroBind()
    good_key = str(guard.good._callback._pyroUri)
    for method, args in [("close", ()), ("_drop", (good_key,)), ("_accept", ([[[GOOD], "forged"]],)),
                         ("__init__", ()), ("settings", ())]:
        with pytest.raises((AttributeError, errors.SecurityError, errors.PyroError)):
            es._pyroInvoke(method, args, {})
    assert guard.good.nothing_more(0.1)
    guard.check()


def test_unserializable_message_is_refused_by_the_publisher(guarded):
    """A message the serializer cannot carry: TypeError saying so; the same Publisher and the ES carry on."""
    guard = guarded()
    published = guard.stats()["published"]
    for message in (threading.Lock(), {"nested": [1, threading.Event()]}):
        with pytest.raises(TypeError, match=r"cannot be sent with the \w+ serializer") as refused:
            guard.publisher.publish(GOOD, message)
        assert "serialize" in str(refused.value)
    assert guard.stats()["published"] == published
    assert guard.good.nothing_more(0.1)
    guard.check()


def test_unserializable_message_in_a_pipelined_publisher(guarded):
    """Pipelined: an unsendable message raises TypeError once; no valid publish queued around it is lost."""
    guard = guarded()
    accepted, refusals = [], []
    with eventservice.Publisher(pipeline=8) as publisher:
        for message in ("a", threading.Lock(), "b"):
            try:
                publisher.publish(GOOD, message)
            except TypeError as error:
                refusals.append(error)
            else:
                accepted.append(message)
        try:
            publisher.flush(WAIT)
        except TypeError as error:
            refusals.append(error)
        publisher.publish(GOOD, "c")
        publisher.flush(WAIT)
        accepted.append("c")
    assert len(refusals) == 1 and "serializ" in str(refusals[0]), refusals
    expected = [message for message in accepted if isinstance(message, str)]
    received = [event.msg for event in guard.good.take(len(expected), timeout=ACCEPTANCE + 1)]
    assert received == expected, f"publishes accepted by publish() were lost: sent {expected}, got {received}"
    guard.check()


@pytest.mark.parametrize("kind", ["uri", "exception", "event"])
def test_message_holding_pyro_objects_is_delivered_with_its_neighbours(guarded, kind):
    """A message with a nested URI, exception or Event (all carried by serpent) reaches the subscriber; none lost."""
    guard = guarded()
    inner = {"uri": Pyro5.api.URI(f"PYRO:reply@{LOCALHOST}:9"), "exception": ValueError("careless"),
             "event": eventservice.Event("INNER", 1, 0.0)}[kind]
    sent = ["before", {"nested": [inner]}, "after"]
    start = time.monotonic()
    for message in sent:
        assert guard.publisher.publish(GOOD, message) == 1
    received = [receive_by(guard.good, start + ACCEPTANCE, f"event {number} of 3").msg for number in range(3)]
    assert received[0] == "before" and received[2] == "after", received
    assert isinstance(received[1], dict) and len(received[1]["nested"]) == 1, received[1]
    guard.check()


def test_oversized_message_is_refused_naming_the_limit(guarded):
    """max_message_size=100_000: a 200 kB message -> ValueError naming max_message_size; 50 kB goes through."""
    guard = guarded(max_message_size=100_000)
    published = guard.stats()["published"]
    with pytest.raises(ValueError, match="max_message_size"):
        guard.publisher.publish(GOOD, "x" * 200_000)
    assert guard.stats()["published"] == published
    guard.check()
    start = time.monotonic()
    guard.publisher.publish(GOOD, "y" * 50_000)
    assert receive_by(guard.good, start + ACCEPTANCE, "the 50 kB message").msg == "y" * 50_000
    guard.check()


def test_oversized_message_to_an_es_process_is_refused_at_once_not_retried(guarded_process):
    """Across processes the ES drops the connection on a too-large publish; the Publisher, which reconnects at
    once, must not take that for an outage and retry for reconnectTimeout: ValueError naming the limit, then on."""
    guard = guarded_process("--max-message-size", "100000")
    outcome: queue.Queue = queue.Queue()

    def publish_too_much() -> None:
        with eventservice.Publisher(esURI=guard.running.uri, reconnectTimeout=600) as publisher:
            for size in (200_000, 2_000_000):  # refused from the header; refused while still sending
                try:
                    publisher.publish(GOOD, "x" * size)
                except Exception as error:
                    outcome.put(error)
            outcome.put(publisher.publish("nobody.listens", "small"))  # the same Publisher goes on

    sender = threading.Thread(target=publish_too_much, name="too-large", daemon=True)
    sender.start()
    sender.join(6 * WAIT)  # far less than the 600 s a retried publish would wait
    assert not sender.is_alive(), "the too-large publish was retried as if the ES were down"
    for _ in range(2):
        error = outcome.get_nowait()
        assert isinstance(error, ValueError) and "max_message_size" in str(error), repr(error)
    assert outcome.get_nowait() == 0
    guard.check()


def test_oversized_frame_is_refused_from_its_header(guarded):
    """A frame announcing more than the limit is refused at once, not read (or waited for) first."""
    guard = guarded(max_message_size=100_000)  # idle_timeout stays 60 s: only the size check can end it
    for msgtype in (protocol.MSG_CONNECT, protocol.MSG_INVOKE):
        with raw_connection(guard.running) as sock:
            if msgtype == protocol.MSG_INVOKE:
                handshake(sock, guard.running)
            sock.sendall(header(msgtype, data_size=200_000) + b"x" * 1000)
            closed_by_es_within(sock, 5.0)
    guard.check()


def test_compressed_request_cannot_bypass_max_message_size(guarded, raw_es, pyro_settings):
    """A compressed publish that inflates past max_message_size is refused too (no zip bomb)."""
    guard = guarded(max_message_size=100_000)
    es = raw_es(guard.running)
    pyro_settings.COMPRESSION = True  # 1 MB of 'z' travels as about 1 kB
    try:
        with pytest.raises((ValueError, errors.CommunicationError)) as refused:
            es.publish(GOOD, "z" * 1_000_000)
        if isinstance(refused.value, ValueError):
            assert "max_message_size" in str(refused.value)
    finally:
        pyro_settings.COMPRESSION = False
    assert guard.good.nothing_more(0.2), "the inflated 1 MB message was delivered"
    guard.check()


# -- raw-socket abuse -------------------------------------------------------------------


def test_garbage_bytes_are_refused_and_the_connection_closed(guarded):
    """Non-Pyro bytes (HTTP, zeros, a wrong version, a bad magic, unknown serializer) end that connection only."""
    guard = guarded(idle_timeout=0.5)
    bad_magic = bytearray(header(data_size=0))
    bad_magic[38:40] = b"\0\0"
    garbage = [
        b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        b"\0" * 1000,
        b"PYRO\xff\xff" + b"\0" * 34,
        bytes(bad_magic),
        header(data_size=4, serializer_id=99) + b"junk",
        header(data_size=10, flags=protocol.FLAGS_COMPRESSED) + b"not zlib!!",
        header(data_size=0, annotations_size=8) + b"ANNO\xff\xff\xff\xff",
        header(msgtype=99, data_size=0),
    ]
    for data in garbage:
        with raw_connection(guard.running) as sock:
            sock.sendall(data)
            closed_by_es_within(sock, 5.0)
        guard.check()


@pytest.mark.parametrize("sent", ["nothing", "half-header", "header-only", "truncated-frame",
                                  "handshake-then-half-request"])
def test_silent_and_half_open_connections_are_closed_after_idle_timeout(guarded, sent):
    """With idle_timeout=0.5 the ES closes a connection that stops sending, before or after the handshake."""
    guard = guarded(idle_timeout=0.5)
    with raw_connection(guard.running) as sock:
        last_sent = time.monotonic()
        if sent == "half-header":
            sock.sendall(header(data_size=100)[:20])
        elif sent == "header-only":
            sock.sendall(header(data_size=100))
        elif sent == "truncated-frame":
            sock.sendall(header(data_size=100) + b"x" * 50)
        elif sent == "handshake-then-half-request":
            handshake(sock, guard.running)
            last_sent = time.monotonic()
            sock.sendall(header(protocol.MSG_INVOKE, data_size=100)[:20])
        guard.check()  # served while the half-open connection hangs
        took = closed_by_es_within(sock, 5.0) - last_sent
    assert took >= 0.4, f"closed {took:.2f}s after the last bytes: sooner than the idle timeout"
    guard.check()


def test_idle_client_is_closed_and_a_well_behaved_publisher_reconnects(guarded):
    """An idle Publisher's connection is reaped after idle_timeout; its next publish reconnects transparently."""
    guard = guarded(idle_timeout=0.5)
    publisher_socket = guard.publisher._es._pyroConnection.sock
    with raw_connection(guard.running) as sock:
        handshake(sock, guard.running)
        closed_by_es_within(sock, 5.0)
    wait_until(lambda: closed_by_peer(publisher_socket), timeout=5.0,
               message="the ES to close the idle publisher's connection")
    guard.check()


def test_many_silent_connections_are_reaped_and_cost_no_thread(guarded):
    """50 silent or half-frame connections at once: served meanwhile, no thread each, all closed."""
    guard = guarded(idle_timeout=0.5)
    guard.check()
    baseline = threading.active_count()
    connections = guard.stats()["connections"]
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(raw_connection(guard.running)) for _ in range(50)]
        for number, sock in enumerate(sockets):
            if number % 2:
                sock.sendall(header(data_size=1000) + b"x" * 10)
        wait_until(lambda: guard.stats()["connections"] >= connections + 50, timeout=5.0,
                   message="the ES to take the 50 connections")
        assert threading.active_count() <= baseline + 2, "a thread per connection"
        guard.check()
        for sock in sockets:
            closed_by_es_within(sock, 5.0)
    wait_until(lambda: guard.stats()["connections"] <= connections + 3, timeout=WAIT,
               message="the ES to forget the closed connections")
    guard.check()


def live_connections() -> int:
    """Pyro5 SocketConnection objects alive in this process (the in-process ES holds its own)."""
    gc.collect()
    return sum(1 for thing in gc.get_objects() if isinstance(thing, socketutil.SocketConnection))


def test_refused_and_reaped_connections_leave_nothing_behind(guarded):
    """100 refused and 10 reaped connections: the ES keeps no trace of them (no per-connection leak)."""
    guard = guarded(idle_timeout=0.5)
    baseline = live_connections()
    for _ in range(100):
        with raw_connection(guard.running) as sock:
            sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
            closed_by_es_within(sock, 5.0)
    with contextlib.ExitStack() as stack:
        silent = [stack.enter_context(raw_connection(guard.running)) for _ in range(10)]
        for sock in silent:
            closed_by_es_within(sock, 5.0)
    wait_until(lambda: live_connections() <= baseline + 5, timeout=3.0,
               message=f"the ES to drop the closed connections (baseline {baseline}, now {live_connections()})")
    guard.check()


def test_connection_flood_beyond_the_pool_does_not_lock_out_clients(guarded, pyro_settings):
    """More silent connections than worker threads: the connected publisher keeps working, new clients get in soon."""
    pyro_settings.THREADPOOL_SIZE = 10
    guard = guarded(max_connections=10, idle_timeout=0.5)
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(raw_connection(guard.running)) for _ in range(25)]
        guard.latency()  # the publisher's own connection holds a worker already

        def new_client_served() -> bool:
            try:
                guard.ping(timeout=1.0)
            except errors.CommunicationError:
                return False
            return True

        wait_until(new_client_served, timeout=5.0, interval=0.05, message="a new client to get in after the flood")
        for sock in sockets:
            closed_by_es_within(sock, 10.0)
    guard.check()


@settings(max_examples=60, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.one_of(
    st.binary(max_size=300),
    st.builds(lambda head, tail: head + tail,
              st.builds(header, st.integers(0, 255), st.integers(0, 400), st.integers(0, 40),
                        st.integers(0, 255), st.integers(0, 0xFFFF), st.integers(0, 0xFFFF)),
              st.binary(max_size=300)),
))
def test_random_bytes_never_hurt_the_es(guarded_once, data):
    """Random bytes (sometimes behind a valid-looking header), then EOF: that connection ends, the ES serves."""
    guard = guarded_once
    with raw_connection(guard.running) as sock:
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the ES already refused it and closed the connection
        closed_by_es_within(sock, 5.0)
    guard.check()


@pytest.fixture
def guarded_once(guarded):
    """One guarded ES (idle_timeout 2 s) shared by every example of a hypothesis test."""
    return guarded(idle_timeout=2.0)


# -- random API use ------------------------------------------------------------------------

SUBJECTS = st.one_of(
    st.text(max_size=30),
    st.builds(lambda char, count: char * count, st.characters(), st.integers(990, 1010)),
    st.lists(st.text(max_size=12), max_size=4),
    st.tuples(st.text(max_size=8)),
    st.sampled_from(["", None, 0, 1.5, b"bytes", {"a": 1}, [None], GOOD.lower()]),
)
PATTERNS = st.one_of(
    st.text(alphabet="ab.*+?()[]{}|^$\\-,0123:=!<>#P", max_size=12),
    st.text(max_size=10),
    st.lists(st.text(alphabet="ab.*+?()[]|^$\\", max_size=8), max_size=3),
    st.sampled_from(["", None, 7, [r"^ok", 3], CATASTROPHIC]),
)
MESSAGES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (st.lists(children, max_size=4) | st.tuples(children, children)
                      | st.dictionaries(st.text(max_size=5), children, max_size=4)),
    max_leaves=20,
) | st.sampled_from([threading.Lock(), object(), "x" * 100_000])
OPERATIONS = ["raw publish", "raw publishBatch", "raw subscribe", "raw subscribeMatch", "raw unsubscribe",
              "publisher publish", "subscriber subscribe", "subscriber subscribeMatch", "subscriber unsubscribe"]


@pytest.fixture
def api_fuzz(start_es, collectors, raw_es, guarded):
    """A guarded ES, a raw proxy, a hostile Collector and its callback, shared by every example."""
    guard = guarded()
    hostile = collectors()
    return guard, raw_es(guard.running), hostile, hostile._callback_proxy()


@settings(max_examples=80, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large])
@given(operation=st.sampled_from(OPERATIONS), subjects=SUBJECTS, pattern=PATTERNS, message=MESSAGES)
def test_random_api_use_never_hurts_a_well_behaved_subscriber(api_fuzz, operation, subjects, pattern, message):
    """Random subjects, patterns and messages via a raw proxy and the skeletons: only TypeError/ValueError."""
    guard, es, hostile, callback = api_fuzz
    calls = {
        "raw publish": lambda: es.publish(subjects, message),
        "raw publishBatch": lambda: es.publishBatch([[subjects, message], [pattern, message]]),
        "raw subscribe": lambda: es.subscribe(subjects, callback),
        "raw subscribeMatch": lambda: es.subscribeMatch(pattern, callback),
        "raw unsubscribe": lambda: es.unsubscribe(pattern, callback),
        "publisher publish": lambda: guard.publisher.publish(subjects, message),
        "subscriber subscribe": lambda: hostile.subscribe(subjects),
        "subscriber subscribeMatch": lambda: hostile.subscribeMatch(pattern),
        "subscriber unsubscribe": lambda: hostile.unsubscribe(subjects),
    }
    try:
        calls[operation]()
    except (TypeError, ValueError):
        pass
    guard.check(skip_other=True)  # a random publish may have hit GOOD itself; markers stay in order
    stats = guard.stats()
    assert stats["subscribers"] <= 2 and stats["mailboxes"] <= 2, stats


# -- fairness -----------------------------------------------------------------------------


@pytest.mark.parametrize("stuck_count", [1, 3], ids=["one-stuck", "three-stuck"])
def test_stuck_subscriber_does_not_block_publisher_or_others(start_es, subscribers, stuck_count):
    """Subscribers stuck in event() (queuesize 3, drop policy): publishes never block, others get all in 2 s.

    Blocking would hold a publish until --delivery-timeout (30 s); each receipt's deadline counts from before
    its publishes, so it catches that without timing the publishes themselves.
    """
    running = start_es(queuesize=3, blockqueue=False)
    stuck = [subscribers(Stuck) for _ in range(stuck_count)]
    for subscriber in stuck:
        subscriber.subscribe("FLOOD")
    good = subscribers()
    good.subscribe("FLOOD")
    with eventservice.Publisher() as publisher:
        start = time.monotonic()
        assert publisher.publish("FLOOD", -1) >= 1
        assert receive_by(good, start + ACCEPTANCE, "event -1").msg == -1
        for burst in range(40):  # bursts of queuesize: a subscriber that keeps up never overflows
            start = time.monotonic()
            numbers = range(3 * burst, 3 * burst + 3)
            for number in numbers:
                assert publisher.publish("FLOOD", number) >= 1
            for number in numbers:
                assert receive_by(good, start + ACCEPTANCE, f"event {number}").msg == number
    stats = flat_stats(running.service)
    assert stats["dropped"] >= 110 * stuck_count, stats  # about all but the 3 each stuck queue holds
    assert stats["queued"] <= 3 * stuck_count, stats
    assert stats["subscribers"] == stuck_count + 1, stats
    assert stats["connectors"] <= running.service.settings.connectors, stats
    assert all(subscriber.received.empty() for subscriber in stuck)


def test_subscribers_that_never_answer_cannot_starve_a_good_one(guarded, raw_es, blackhole, collectors):
    """20 'subscribers' whose port accepts but never answers hold up neither old nor new good subscribers."""
    guard = guarded()
    es = raw_es(guard.running)
    port = blackhole.getsockname()[1]
    for number in range(20):  # more than the ES's delivery (and connecting) threads
        es.subscribe("JAM", Pyro5.api.Proxy(f"PYRO:silent{number}@{LOCALHOST}:{port}"))
    assert es.publish("JAM", "hello?") == 20
    guard.check()
    newcomer = collectors()
    newcomer.subscribe("NEWCOMER")
    start = time.monotonic()
    assert guard.publisher.publish("NEWCOMER", "welcome") == 1
    assert receive_by(newcomer, start + ACCEPTANCE, "the newcomer's first event").msg == "welcome"
    guard.check()


class Hung:
    """A callback object whose events()/event() do not return until ``release`` is set (bounded)."""

    def __init__(self, release: threading.Event) -> None:
        self.release = release

    @Pyro5.api.expose
    def events(self, batch) -> None:
        self.release.wait(6 * WAIT)

    @Pyro5.api.expose
    def event(self, event) -> None:
        self.release.wait(6 * WAIT)


@pytest.fixture
def hung_daemon(start_es):
    """Factory: a proxy to a new Hung object in one shared daemon (own thread); released and shut before the ES."""
    release = threading.Event()
    daemon = Pyro5.api.Daemon(host=LOCALHOST)
    thread = threading.Thread(target=daemon.requestLoop, name="hostile-daemon", daemon=True)
    thread.start()

    def make():
        hung = Hung(release)
        daemon.register(hung)
        return daemon.proxyFor(hung)

    yield make
    release.set()
    daemon.shutdown()
    thread.join(WAIT)


def test_subscribers_hung_in_event_cannot_starve_a_good_one(guarded, raw_es, hung_daemon):
    """20 subscribers (one hostile daemon) that never return from events(): others still receive within 2 s."""
    guard = guarded(queuesize=3, blockqueue=False)
    es = raw_es(guard.running)
    for _ in range(20):  # each holds a call in flight until released
        es.subscribe("JAM", hung_daemon())
    for number in range(3):
        es.publish("JAM", number)
        guard.check()
    stats = guard.stats()
    assert stats["connectors"] <= guard.running.service.settings.connectors, stats


def test_oneway_publish_flood_does_not_grow_threads_without_bound(guarded, raw_es, subscribers):
    """300 oneway publishes into a full queue (block policy) must not cost the ES one thread each."""
    guard = guarded(queuesize=2, blockqueue=True)
    stuck = subscribers(Stuck)
    stuck.subscribe("JAM")
    es = raw_es(guard.running)
    es._pyroBind()  # binding replaces _pyroOneway with the server's metadata
    es._pyroOneway.add("publish")
    baseline = threading.active_count()
    for number in range(300):
        es.publish("JAM", number)
    es._pyroOneway.discard("publish")
    assert es.ping() is True  # all 300 requests were read by now
    grown = threading.active_count() - baseline
    guard.check()
    assert grown <= 50, f"the ES runs {grown} more threads after 300 oneway publishes"
