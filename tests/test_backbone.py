"""Several Event Services over a real redis-server (es --backbone): delivery, order, faults, garbage.

Each test starts its own redis-server on a free loopback port and stops it.
Without redis-server the tests skip, saying so; under CI=true they fail.
"""
from __future__ import annotations

import decimal
import os
import shutil
import signal
import subprocess
import sys
import threading

import pytest
from Pyro5 import errors

import eventservice
from conftest import LOCALHOST, WAIT, flat_stats, free_port, read_line, wait_until
from eventservice.core.config import Settings
from eventservice.pyro import naming

pytest.importorskip("msgpack", reason="the backbone needs msgpack (pip install 'eventservice[redis]')")
redis = pytest.importorskip("redis", reason="the backbone needs redis-py (pip install 'eventservice[redis]')")

from eventservice.server.backbone import codec  # noqa: E402
from test_tls import certificates  # noqa: E402, F401 - the throw-away CA and certificate for 127.0.0.1

REDIS_SERVER = shutil.which("redis-server")
if REDIS_SERVER is None:
    if os.environ.get("CI") == "true":
        raise RuntimeError("redis-server is missing, and CI must run the backbone tests: apt-get install redis-server")
    pytest.skip("redis-server is not installed (apt-get install redis-server); the backbone tests need a real one",
                allow_module_level=True)



class RedisServer:
    """A throw-away redis-server on 127.0.0.1; ``kill()`` is kill -9, ``start()`` restarts it on the same port."""

    def __init__(self, *extra: str, tls: tuple[str, str, str] | None = None) -> None:
        self.port = free_port()
        self.tls = tls
        if tls is not None:  # TLS only: the plain port off
            ca, cert, key = tls
            extra = (*extra, "--tls-port", str(self.port), "--tls-cert-file", cert, "--tls-key-file", key,
                     "--tls-ca-cert-file", ca, "--tls-auth-clients", "no")
        self.extra = extra
        self.process: subprocess.Popen | None = None
        self.password = extra[extra.index("--requirepass") + 1] if "--requirepass" in extra else None
        self.start()

    @property
    def url(self) -> str:
        if self.tls is not None:
            return f"rediss://{LOCALHOST}:{self.port}?ssl_ca_certs={self.tls[0]}"
        return f"redis://{LOCALHOST}:{self.port}"

    def client(self):
        tls = {"ssl": True, "ssl_ca_certs": self.tls[0]} if self.tls is not None else {}
        return redis.Redis(host=LOCALHOST, port=self.port, password=self.password, protocol=2, **tls)

    def start(self) -> None:
        self.process = subprocess.Popen(
            [REDIS_SERVER, "--port", "0" if self.tls else str(self.port), "--bind", LOCALHOST, "--save", "",
             "--appendonly", "no", *self.extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def answers() -> bool:
            try:
                with self.client() as client:
                    return bool(client.ping())
            except redis.RedisError:
                return False
        wait_until(answers, message=f"redis-server on port {self.port}")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(WAIT)

    def publish_raw(self, channel: bytes, data: bytes) -> int:
        with self.client() as client:
            return client.publish(channel, data)


@pytest.fixture
def redis_servers():
    """Factory: ``redis_servers(*extra_args)`` -> a running RedisServer; all are killed afterwards."""
    started: list[RedisServer] = []

    def start(*extra: str, tls: tuple[str, str, str] | None = None) -> RedisServer:
        server = RedisServer(*extra, tls=tls)
        started.append(server)
        return server

    yield start
    for server in started:
        server.kill()


@pytest.fixture
def redis_server(redis_servers):
    return redis_servers()


class Node:
    """An Event Service with a backbone, serving from a thread of this process."""

    def __init__(self, backbone: str, ns_port: int | None, password: str | None = None, **settings) -> None:
        self.starter = eventservice.EventServiceStarter(None, Settings(**settings), backbone=backbone,
                                                        backbone_password=password)
        self.uri = self.starter.initialize(LOCALHOST, 0, useNameServer=ns_port is not None, nsHost=LOCALHOST,
                                           nsPort=ns_port)
        self.service = self.starter.service
        self.thread = threading.Thread(target=self.starter.handleRequests, name="test-node", daemon=True)
        self.thread.start()

    def stats(self) -> dict:
        return flat_stats(self.service)

    def stop(self) -> None:
        self.starter.shutdown()
        self.thread.join(WAIT)


@pytest.fixture
def nodes(pyro_settings, nameserver):
    """Factory: ``nodes(backbone_url, count=1, **settings)`` -> list of Nodes registered in the test name server."""
    started: list[Node] = []

    def start(backbone: str, count: int = 1, use_ns: bool = True, **settings) -> list[Node]:
        made = [Node(backbone, nameserver.port if use_ns else None, **settings) for _ in range(count)]
        started.extend(made)
        for node in made:
            wait_until(lambda node=node: node.stats()["backbone_connected"] == node.stats()["backbone_links"],
                       message="the node to reach Redis")
        return made

    yield start
    for node in reversed(started):
        node.stop()


def settled(*nodes: Node, subjects: int | None = None, catch_all: bool | None = None) -> None:
    """Wait until every node's subscriptions are confirmed by Redis (and, if given, have this shape)."""
    def done() -> bool:
        for node in nodes:
            stats = node.stats()
            if stats["backbone_pending"] or stats["backbone_connected"] != stats["backbone_links"]:
                return False
        return True
    wait_until(done, message="backbone subscriptions to be confirmed")
    for node in nodes:
        stats = node.stats()
        if subjects is not None:
            assert stats["backbone_subjects"] == subjects
        if catch_all is not None:
            assert stats["backbone_catch_all"] is catch_all


def by_publisher(events) -> dict[str, list[int]]:
    sequences: dict[str, list[int]] = {}
    for event in events:
        publisher, number = event.msg
        sequences.setdefault(publisher, []).append(number)
    return sequences


# -- delivery across nodes ---------------------------------------------------


@pytest.mark.parametrize("count", [2, 3])
def test_every_matching_subscriber_on_every_node_gets_each_event_once_in_publisher_order(redis_server, nodes, collectors,
                                                                                         count):
    members = nodes(redis_server.url, count)
    exact, pattern, both = [], [], []
    for node in members:
        subscriber = collectors(esURI=node.uri)
        subscriber.subscribe(["QUOTE.SUN", "QUOTE.IBM"])
        exact.append(subscriber)
        subscriber = collectors(esURI=node.uri)
        subscriber.subscribeMatch(r"^quote\.s")
        pattern.append(subscriber)
        subscriber = collectors(esURI=node.uri)  # exact and pattern both match QUOTE.SUN: still one copy
        subscriber.subscribe("QUOTE.SUN")
        subscriber.subscribeMatch(r"^QUOTE\.")
        both.append(subscriber)
    settled(*members, catch_all=True)
    per_publisher = 150
    publishers = [eventservice.Publisher(esURI=node.uri) for node in members]
    try:
        def run(index: int) -> None:
            for number in range(per_publisher):
                subject = "QUOTE.SUN" if number % 2 else "QUOTE.IBM"
                publishers[index].publish(subject, (f"p{index}", number))
        threads = [threading.Thread(target=run, args=(index,)) for index in range(count)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(WAIT * 3)
    finally:
        for publisher in publishers:
            publisher.close()
    everything = list(range(per_publisher))
    odd = list(range(1, per_publisher, 2))
    for subscriber in exact + both:
        received = by_publisher(subscriber.take(count * per_publisher))
        assert received == {f"p{index}": everything for index in range(count)}
    for subscriber in pattern:
        received = by_publisher(subscriber.take(count * len(odd)))
        assert received == {f"p{index}": odd for index in range(count)}
    for subscriber in exact + pattern + both:
        assert subscriber.nothing_more(), "an event arrived twice"
    for node in members:
        stats = node.stats()
        assert stats["backbone_garbage"] == stats["backbone_lost"] == stats["backbone_dropped"] == 0
        assert stats["backbone_received"] == (count - 1) * per_publisher  # the catch-all takes everything


def test_exact_subjects_travel_only_to_nodes_that_want_them(redis_server, nodes, collectors):
    a, b, c = nodes(redis_server.url, 3)
    on_b = collectors(esURI=b.uri)
    on_b.subscribe("wanted")
    settled(a, b, c, catch_all=False)
    assert b.stats()["backbone_subjects"] == 1 and c.stats()["backbone_subjects"] == 0
    with eventservice.Publisher(esURI=a.uri) as publisher:
        for number in range(20):
            publisher.publish(["wanted", "unwanted"], number)
    assert [event.msg for event in on_b.take(20)] == list(range(20))
    assert b.stats()["backbone_received"] == 20
    assert c.stats()["backbone_received"] == 0  # interest routing: c subscribed to nothing
    assert a.stats()["backbone_sent"] == 40  # one message per subject


def test_case_folding_and_one_time_stamp_across_nodes(redis_server, nodes, collectors):
    a, b = nodes(redis_server.url, 2)
    local = collectors(esURI=a.uri)
    local.subscribe(["STRASSE.news", "ΣΊΣΥΦΟΣ"])
    remote = collectors(esURI=b.uri)
    remote.subscribe(["STRASSE.news", "ΣΊΣΥΦΟΣ"])
    settled(a, b, subjects=2)  # each node: two folded subjects
    with eventservice.Publisher(esURI=a.uri) as publisher:
        publisher.publish(["straße.NEWS", "σίσυφος"], "one publish")
    local_events = local.take(2)
    remote_events = remote.take(2)
    assert [event.subject for event in remote_events] == ["straße.NEWS", "σίσυφος"]  # as published
    assert {event.time for event in local_events + remote_events} == {local_events[0].time}


def test_several_redis_instances_spread_subjects_and_catch_alls_cover_all(redis_servers, nodes, collectors):
    first, second = redis_servers(), redis_servers()
    a, b = nodes(f"{first.url},{second.url}", 2)
    subjects = [f"s.{index}" for index in range(40)]
    exact = collectors(esURI=b.uri)
    exact.subscribe(subjects)
    settled(a, b)
    assert b.stats()["backbone_subjects"] == 40
    with first.client() as one, second.client() as two:
        counts = [len(one.pubsub_channels()), len(two.pubsub_channels())]
    assert sum(counts) == 40 and min(counts) > 5, counts  # spread by hash over both
    pattern = collectors(esURI=b.uri)
    pattern.subscribeMatch(r"^s\.")
    settled(a, b)
    assert b.stats()["backbone_catch_all"] and not a.stats()["backbone_catch_all"]
    with eventservice.Publisher(esURI=a.uri) as publisher:
        for subject in subjects:
            publisher.publish(subject, subject)
    assert sorted(event.msg for event in exact.take(40)) == sorted(subjects)
    assert sorted(event.msg for event in pattern.take(40)) == sorted(subjects)
    assert exact.nothing_more() and pattern.nothing_more()


def test_switching_between_exact_channels_and_the_catch_all_loses_and_doubles_nothing(redis_server, nodes, collectors):
    a, b = nodes(redis_server.url, 2)
    remote = collectors(esURI=b.uri)
    remote.subscribe("steady")
    settled(a, b)
    stop = threading.Event()
    sent = []

    def publish() -> None:
        with eventservice.Publisher(esURI=a.uri) as publisher:
            number = 0
            while not stop.is_set() and number < 5000:
                publisher.publish("steady", number)
                sent.append(number)
                number += 1
    thread = threading.Thread(target=publish)
    thread.start()
    try:
        for _ in range(10):  # the node moves to the catch-all and back while events flow
            flapper = collectors(esURI=b.uri)
            flapper.subscribeMatch("^nothing")
            settled(b, catch_all=True)
            flapper.close()
            settled(b, catch_all=False)
    finally:
        stop.set()
        thread.join(WAIT)
    received = [event.msg for event in remote.take(len(sent), timeout=WAIT * 3)]
    assert received == sent
    assert remote.nothing_more()


# -- faults ------------------------------------------------------------------


def test_redis_kill_9_and_restart(redis_server, nodes, collectors, caplog):
    a, b = nodes(redis_server.url, 2)
    local = collectors(esURI=a.uri)
    local.subscribe("news")
    remote = collectors(esURI=b.uri)
    remote.subscribe("news")
    settled(a, b, subjects=1)
    with eventservice.Publisher(esURI=a.uri) as publisher:
        publisher.publish("news", "before")
        assert local.take()[0].msg == remote.take()[0].msg == "before"

        redis_server.kill()
        wait_until(lambda: a.stats()["backbone_connected"] == 0 and b.stats()["backbone_connected"] == 0,
                   message="both nodes to notice the outage")
        for number in range(5):
            publisher.publish("news", f"during {number}")  # local delivery goes on
        assert [event.msg for event in local.take(5)] == [f"during {number}" for number in range(5)]
        wait_until(lambda: a.stats()["backbone_lost"] == 5, message="the events other nodes miss to be counted")
        assert remote.nothing_more()

        redis_server.start()
        settled(a, b, subjects=1)
        publisher.publish("news", "after")
        assert local.take()[0].msg == remote.take()[0].msg == "after"
        assert local.nothing_more() and remote.nothing_more()  # nothing twice after the recovery
    for node in (a, b):
        stats = node.stats()
        assert stats["backbone_outages"] == 1
        assert stats["backbone_duplicates"] == 0
    assert "connection lost" in caplog.text and "reconnected" in caplog.text
    assert "cannot publish" in caplog.text


def test_garbage_on_the_backbone_channels_is_dropped_and_counted(redis_server, nodes, collectors):
    a, b = nodes(redis_server.url, 2, max_message_size=10000)
    remote = collectors(esURI=b.uri)
    remote.subscribe("target")
    pattern = collectors(esURI=b.uri)
    pattern.subscribeMatch("^other")
    settled(a, b)
    forged = codec.encode(b"attacker", 4, 1.0, ["not.target"], codec.encode_message("x"))
    garbage = [
        b"",
        b"not our format at all",
        bytes([99]) + bytes(40),  # a future version
        codec.HEADER.pack(codec.VERSION, 0, b"attacker", 1, 1.0) + b"\xc1\xc1",  # a header, then junk
        codec.HEADER.pack(codec.VERSION, 0, b"attacker", 2, 1.0) + b"\xdb\xff\xff\xff\xff",  # claims 4 GiB
        codec.encode(b"attacker", 3, float("nan"), ["target"], codec.encode_message("x")),
        forged,  # a subject on the wrong channel
        b"\x80" + b"\x00" * 200000,  # larger than the node accepts
        b"\x80\x04\x95" + b"cos\nsystem\n(S'true'\ntR.",  # a pickle
    ]
    for data in garbage:
        assert redis_server.publish_raw(b"eventservice:target", data) == 1
    assert redis_server.publish_raw(b"eventservice:other", b"junk") == 1  # reaches the catch-all
    wait_until(lambda: b.stats()["backbone_garbage"] == len(garbage) + 1, message="garbage to be counted")
    with eventservice.Publisher(esURI=a.uri) as publisher:
        publisher.publish("target", "still works")
    assert remote.take()[0].msg == "still works"
    assert remote.nothing_more() and pattern.nothing_more()
    assert b.stats()["backbone_received"] == 1


def test_messages_the_backbone_cannot_carry_are_delivered_locally_and_counted(redis_server, nodes, collectors):
    a, b = nodes(redis_server.url, 2)
    local = collectors(esURI=a.uri)
    local.subscribe("x")
    remote = collectors(esURI=b.uri)
    remote.subscribe("x")
    settled(a, b)
    service = a.service
    service.publish("x", {"fine": (1, 2)})
    service.publish("x", decimal.Decimal("1.5"))  # an in-process publish may hold types msgpack lacks
    service.publish("x", "last")
    assert [event.msg for event in remote.take(2)] == [{"fine": (1, 2)}, "last"]
    assert len(local.take(3)) == 3
    assert a.stats()["backbone_unencodable"] == 1


def spawn_node(processes, url: str, ns_port: int, queuesize: int | None = None) -> tuple[subprocess.Popen, str]:
    process = processes.spawn("-m", "eventservice.server", "-n", LOCALHOST, "--ns-host", LOCALHOST,
                              "--ns-port", str(ns_port), "--backbone", url,
                              *(["--queuesize", str(queuesize)] if queuesize else []))
    uri = read_line(process, expect="Event Service URI:").split(":", 1)[1].strip()
    return process, uri


def node_stats(uri: str) -> dict:
    with naming.es_proxy(uri) as es:
        return flat_stats(es.stats())


def test_nodes_register_under_their_own_names_and_clients_find_a_live_one(redis_server, nameserver, processes):
    first, first_uri = spawn_node(processes, redis_server.url, nameserver.port)
    second, second_uri = spawn_node(processes, redis_server.url, nameserver.port)
    assert str(naming.lookup_es(LOCALHOST, nameserver.port)) == first_uri  # the first node holds the well-known name
    found = {str(uri) for uri in naming.find_es_nodes(LOCALHOST, nameserver.port)}
    assert found == {first_uri, second_uri}
    first.send_signal(signal.SIGKILL)
    first.wait(WAIT)
    assert str(naming.lookup_es_node(LOCALHOST, nameserver.port)) == second_uri  # the dead one is passed over
    second.send_signal(signal.SIGTERM)
    assert second.wait(WAIT) == 0
    assert {str(uri) for uri in naming.find_es_nodes(LOCALHOST, nameserver.port)} == {first_uri}  # only the dead one


def test_a_node_killed_with_9_leaves_the_others_working_and_its_clients_move(redis_server, nameserver, processes,
                                                                             collectors):
    doomed, doomed_uri = spawn_node(processes, redis_server.url, nameserver.port)
    # while it is the only node, clients that use the name server land on it
    mover = collectors(listen=False)
    mover.heartbeat = 0.2
    mover.subscribe("news")
    mover.listenInThread()
    publisher = eventservice.Publisher()
    try:
        assert str(mover._es._pyroUri) == str(publisher._es._pyroUri) == doomed_uri
        _, survivor_uri = spawn_node(processes, redis_server.url, nameserver.port)
        on_survivor = collectors(esURI=survivor_uri)
        on_survivor.subscribe("news")
        wait_until(lambda: node_stats(survivor_uri)["backbone_pending"] == node_stats(doomed_uri)["backbone_pending"] == 0,
                   message="both nodes' subscriptions")
        publisher.publish("news", "before")
        assert mover.take()[0].msg == on_survivor.take()[0].msg == "before"

        doomed.send_signal(signal.SIGKILL)
        doomed.wait(WAIT)
        # the mover's heartbeat notices the dead node, finds the survivor and subscribes again there
        wait_until(lambda: str(mover._es._pyroUri) == survivor_uri, message="the subscriber to move")
        wait_until(lambda: node_stats(survivor_uri)["subscribers"] == 2, message="the mover to subscribe again")
        publisher.publish("news", "after")  # the publisher finds the survivor by itself, and publishes once
        assert str(publisher._es._pyroUri) == survivor_uri
        assert mover.take()[0].msg == "after"
        assert on_survivor.take()[0].msg == "after"
    finally:
        publisher.close()
    assert mover.nothing_more() and on_survivor.nothing_more()


# -- configuration -------------------------------------------------------------


def test_password_from_a_file_and_a_wrong_one(redis_servers, nodes, tmp_path, collectors, caplog):
    server = redis_servers("--requirepass", "s3cret")
    password_file = tmp_path / "redis-password"
    password_file.write_text("s3cret\n")
    good = Node(server.url, None, password="s3cret")
    try:
        wait_until(lambda: good.stats()["backbone_connected"] == 1)
        bad = Node(server.url, None, password="wrong")
        try:
            assert bad.stats()["backbone_connected"] == 0
            assert "cannot connect" in caplog.text and "s3cret" not in caplog.text and "wrong" not in caplog.text
        finally:
            bad.stop()
    finally:
        good.stop()


def test_the_backbone_over_tls(redis_servers, nodes, collectors, certificates):  # noqa: F811 - a fixture
    server = redis_servers(tls=certificates)
    a, b = nodes(server.url, 2)
    remote = collectors(esURI=b.uri)
    remote.subscribe("secret")
    settled(a, b)
    with eventservice.Publisher(esURI=a.uri) as publisher:
        publisher.publish("secret", ("over", "tls"))
    assert remote.take()[0].msg == ("over", "tls")
    assert b.stats()["backbone_received"] == 1


def test_es_command_with_a_password_file(redis_servers, tmp_path, processes):
    server = redis_servers("--requirepass", "s3cret")
    password_file = tmp_path / "redis-password"
    password_file.write_text("s3cret\n")
    process = processes.spawn("-m", "eventservice.server", "-N", "-n", LOCALHOST, "--backbone", server.url,
                              "--backbone-password-file", str(password_file))
    uri = read_line(process, expect="Event Service URI:").split(":", 1)[1].strip()
    wait_until(lambda: node_stats(uri)["backbone_connected"] == 1)


@pytest.mark.parametrize("value, problem", [
    ("http://127.0.0.1:1", "must start with redis:// or rediss://"),
    ("redis://127.0.0.1:1,", "one or more comma-separated"),
    ("redis://a:1,redis://a:1", "the same backbone URL is given twice"),
])
def test_es_refuses_a_bad_backbone_url(value, problem):
    result = subprocess.run([sys.executable, "-m", "eventservice.server", "-N", "--backbone", value],
                            capture_output=True, text=True, timeout=WAIT * 3)
    assert result.returncode == 1
    assert problem in result.stderr


def test_without_a_backbone_nothing_imports_redis():
    code = (
        "import sys, eventservice\n"
        "starter = eventservice.EventServiceStarter()\n"
        "starter.initialize('127.0.0.1', 0, useNameServer=False)\n"
        "starter.service.publish('x', 1)\n"
        "starter.shutdown()\n"
        "print('redis' in sys.modules, 'eventservice.server.backbone.link' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=WAIT * 3, check=True)
    assert result.stdout.split() == ["False", "False"]


def test_a_node_starts_without_redis_and_joins_when_it_comes(nodes, collectors, caplog):
    node = Node(f"redis://{LOCALHOST}:{free_port()}", None)
    try:
        assert node.stats()["backbone_connected"] == 0
        local = collectors(esURI=node.uri)
        local.subscribe("x")
        node.service.publish("x", "local only")
        assert local.take()[0].msg == "local only"
        assert "cannot connect" in caplog.text
    finally:
        node.stop()


def test_name_server_lookup_without_nodes_falls_back_to_the_well_known_name(es, nameserver):
    assert naming.find_es_nodes(LOCALHOST, nameserver.port) == []
    assert str(naming.lookup_es_node(LOCALHOST, nameserver.port)) == str(es.uri)


def test_a_live_single_es_still_refuses_a_second_one_without_backbone(es, start_es):
    with pytest.raises(errors.NamingError, match="already running"):
        start_es()


@pytest.mark.parametrize("subscribed", [False, True])
def test_idle_links_are_kept_alive_with_ping_without_reconnecting(redis_server, nodes, collectors, monkeypatch, subscribed):
    from eventservice.server.backbone import link
    monkeypatch.setattr(link, "IDLE_PING", 0.05)
    (node,) = nodes(redis_server.url, use_ns=False)
    if subscribed:  # answered with ["pong", ""] while subscribed, with +PONG otherwise
        collectors(esURI=node.uri).subscribe("x")

    def pings() -> int:
        with redis_server.client() as client:
            return int(client.info("commandstats").get("cmdstat_ping", {}).get("calls", 0))
    wait_until(lambda: pings() >= 10, message="the node's reader to send PINGs")
    wait_until(lambda: node.stats()["backbone_pending"] == 0, message="a PONG to be counted")
    stats = node.stats()
    assert stats["backbone_outages"] == 0 and stats["backbone_connected"] == 1


def test_slow_subscribers_never_get_a_node_cut_off_by_redis_output_buffer_limit(redis_servers, nameserver, processes):
    # Redis drops a pub/sub client whose unread output passes 2 MB (default: 32 MB): the reader must keep reading
    server = redis_servers("--client-output-buffer-limit", "pubsub 2mb 1mb 5")
    _, a_uri = spawn_node(processes, server.url, nameserver.port)
    _, b_uri = spawn_node(processes, server.url, nameserver.port, queuesize=50)  # small queues: the injector waits
    received = []
    release = threading.Event()

    class Stuck(eventservice.Subscriber):
        def event(self, event) -> None:
            release.wait(WAIT * 6)  # holds everything up until the backlog is in place
            received.append(event.msg[0])

    stuck = Stuck(esURI=b_uri)
    try:
        stuck.subscribe("bulk")
        stuck.listenInThread()
        wait_until(lambda: node_stats(b_uri)["backbone_pending"] == 0, message="the subscription to reach Redis")
        # 12 MB, one publish at a time (a steady stream, not one burst): past the limit and past what the
        # kernel's socket buffers hide, so a reader that waited for the subscriber would be cut off
        count, padding = 3000, "x" * 4000
        with eventservice.Publisher(esURI=a_uri) as publisher:
            for number in range(count):
                publisher.publish("bulk", (number, padding))
        wait_until(lambda: node_stats(b_uri)["backbone_handoff_bytes"] > 10_000_000, timeout=WAIT * 3,
                   message="the backlog to pile up in the node, not in Redis")
        release.set()
        wait_until(lambda: len(received) == count, timeout=WAIT * 6, message="the subscriber to get everything")
        assert received == list(range(count))
        stats = node_stats(b_uri)
        assert stats["backbone_outages"] == 0 and stats["backbone_dropped"] == 0
        assert stats["backbone_received"] == count
    finally:
        release.set()
        stuck.close()
