"""Clients heal by themselves after an Event Service restart (issue 9, point 2), with real processes:
a listening Subscriber notices the lost ES at once and subscribes again on the new one, a Publisher
reconnects, and gives up with a clear error only after its reconnectTimeout."""
from __future__ import annotations

import logging
import queue
import threading

import pytest
from Pyro5 import errors

import eventservice
from conftest import LOCALHOST, WAIT, flat_stats, free_port, read_line, wait_until

pytestmark = pytest.mark.network

ES = "bin/es"
#: the promise: subscriptions are back within this many seconds of the new ES being registered
RECOVERY_BOUND = 5.0



def start_es_process(processes, port: int):
    """An ``es`` process on 127.0.0.1:port, registered in the test's name server once this returns."""
    process = processes.spawn(ES, "-n", LOCALHOST, "-p", str(port))
    read_line(process, expect="Event Service URI:")
    return process


def kill(process) -> None:
    process.kill()  # SIGKILL: no unregistering, no goodbye to anyone
    process.wait(WAIT)


class Recorder(eventservice.Subscriber):
    """Queues what it receives and notes when esReconnected() ran."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.received: queue.Queue = queue.Queue()
        self.reconnected = threading.Event()

    def event(self, event) -> None:
        self.received.put(event)

    def esReconnected(self) -> None:
        self.reconnected.set()

    def take(self, count: int) -> list:
        try:
            return [self.received.get(timeout=WAIT) for _ in range(count)]
        except queue.Empty:
            pytest.fail(f"fewer than {count} events arrived within {WAIT}s")


@pytest.fixture
def recorders():
    made: list[Recorder] = []

    def make(*args, **kwargs) -> Recorder:
        recorder = Recorder(*args, **kwargs)
        made.append(recorder)
        return recorder

    yield make
    for recorder in made:
        recorder.close()


def test_subscriber_resubscribes_within_the_bound_after_es_kill_and_restart(nameserver, processes, recorders,
                                                                            caplog):
    """ES kill -9, a new ES on the same port: the listening subscriber (heartbeat off, so only the lost
    connection can tell it) has its exact and pattern subscriptions back within RECOVERY_BOUND seconds
    of the new ES's registration, logs the outage and the recovery, and runs esReconnected()."""
    caplog.set_level(logging.INFO, logger="eventservice")
    port = free_port()
    first = start_es_process(processes, port)
    subscriber = recorders()
    subscriber.heartbeat = 0
    subscriber.listenInThread()
    subscriber.subscribe("RESTART.EXACT")
    subscriber.subscribeMatch(r"^RESTART\.P")
    with eventservice.Publisher() as publisher:
        assert publisher.publish(["RESTART.EXACT", "RESTART.PATTERN"], "before") == 2
    assert [event.subject for event in subscriber.take(2)] == ["RESTART.EXACT", "RESTART.PATTERN"]

    kill(first)
    wait_until(lambda: any("Event Service unreachable" in record.getMessage() for record in caplog.records),
               message="the subscriber to notice that its ES is gone")
    assert not subscriber.reconnected.is_set()
    start_es_process(processes, port)
    assert subscriber.reconnected.wait(RECOVERY_BOUND), "subscriptions not re-established within the bound"
    assert any("subscriptions re-established" in record.getMessage() for record in caplog.records)

    with eventservice.Publisher() as publisher:
        assert publisher.publish(["RESTART.EXACT", "RESTART.OTHER", "RESTART.PATTERN"], "after") == 2
    assert [(event.subject, event.msg) for event in subscriber.take(2)] == [
        ("RESTART.EXACT", "after"), ("RESTART.PATTERN", "after")]


def test_subscriber_dropped_on_purpose_by_a_live_es_is_left_to_the_heartbeat(es, recorders, caplog):
    """A live ES that drops a subscriber (here: someone calls unsubscribeAll for it) closes its connection;
    the subscriber notices but does not push its subscriptions straight back (a pattern the ES removed
    for running out of time would come back again and again); its heartbeat subscribes again later."""
    caplog.set_level(logging.WARNING, logger="eventservice.client.subscriber")
    subscriber = recorders()
    subscriber.heartbeat = 0
    subscriber.listenInThread()
    subscriber.subscribe("DROPPED")
    wait_until(lambda: flat_stats(es.service)["connected"] == 1, message="the ES to connect to the subscriber")
    with subscriber.getES() as service:
        service.unsubscribeAll(subscriber.getProxy())
    wait_until(lambda: any("dropped this subscriber" in record.getMessage() for record in caplog.records),
               message="the subscriber to notice")
    with subscriber.getES() as service:
        assert not service.hasSubscriptions(subscriber.getProxy())
    assert not subscriber.reconnected.is_set()
    subscriber.heartbeat = 0.05  # the next periodic check subscribes again
    subscriber._check_now.set()  # wake the keeper so it picks up the new heartbeat
    wait_until(lambda: any("subscriptions re-established" in record.getMessage() for record in caplog.records),
               message="the heartbeat to subscribe again")
    assert subscriber.reconnected.wait(WAIT)


def test_subscriber_follows_an_es_replaced_on_another_port(start_es, recorders):
    """The ES stops and a new one registers elsewhere: the subscriber finds it through the name server."""
    first = start_es()
    subscriber = recorders()
    subscriber.heartbeat = 0
    subscriber.listenInThread()
    subscriber.subscribe("MOVED")
    subscriber.subscribeMatch("^WANDER")
    first.stop()
    second = start_es()
    assert second.uri != first.uri
    assert subscriber.reconnected.wait(RECOVERY_BOUND)
    assert str(subscriber.ES_uri) == str(second.uri)
    with eventservice.Publisher() as publisher:
        assert publisher.publish(["MOVED", "WANDERING"], 1) == 2
    assert [event.subject for event in subscriber.take(2)] == ["MOVED", "WANDERING"]


def test_subscriber_served_from_own_loop_recovers_too(start_es, recorders):
    """A subscriber whose daemon the program serves (no listen()) keeps its subscriptions across a restart."""
    import select

    first = start_es()
    subscriber = recorders()
    subscriber.heartbeat = 0
    daemon = subscriber.getDaemon()
    running = True

    def own_loop() -> None:
        while running:
            ready = select.select(list(daemon.sockets), [], [], 0.05)[0]
            if running:
                daemon.events(ready)

    loop = threading.Thread(target=own_loop, daemon=True)
    loop.start()
    try:
        subscriber.subscribe("OWN.RECOVER")
        first.stop()
        start_es()
        assert subscriber.reconnected.wait(RECOVERY_BOUND)
        with eventservice.Publisher() as publisher:
            assert publisher.publish("OWN.RECOVER", "back") == 1
        assert subscriber.take(1)[0].msg == "back"
    finally:
        running = False
        loop.join(WAIT)


def test_publisher_reconnects_by_itself_while_the_es_restarts(nameserver, processes, recorders, caplog):
    """A publish made while no ES runs keeps trying (capped backoff) and goes through once a new ES is up."""
    caplog.set_level(logging.WARNING, logger="eventservice.client.base")
    port = free_port()
    first = start_es_process(processes, port)
    publisher = eventservice.Publisher(reconnectTimeout=3 * WAIT)
    try:
        assert publisher.publish("GAP", "before") == 0
        kill(first)
        outcome: list = []

        def publish_during_the_gap() -> None:
            try:
                outcome.append(publisher.publish("GAP", "during"))
            except Exception as error:  # recorded for the assertion below
                outcome.append(error)

        worker = threading.Thread(target=publish_during_the_gap, daemon=True)
        worker.start()
        wait_until(lambda: any("trying again" in record.getMessage() for record in caplog.records),
                   message="the publish to find no ES and wait for one")
        assert worker.is_alive() and not outcome
        start_es_process(processes, port)
        worker.join(3 * WAIT)
        assert outcome == [0]  # reached the new ES (which has no subscribers yet)
        assert any("reachable again" in record.getMessage() for record in caplog.records)
    finally:
        publisher.close()


def test_publisher_raises_a_clear_error_after_its_reconnect_timeout(nameserver, processes):
    """ES gone for good: publish raises CommunicationError naming the timeout after reconnectTimeout, and
    later publishes fail at once (one attempt) instead of waiting again."""
    port = free_port()
    first = start_es_process(processes, port)
    publisher = eventservice.Publisher(reconnectTimeout=0.5)
    try:
        assert publisher.publish("LOST", 1) == 0
        kill(first)
        with pytest.raises(errors.CommunicationError, match=r"no Event Service reachable for 0.5 s \(reconnectTimeout\)"):
            publisher.publish("LOST", 2)
        with pytest.raises(errors.CommunicationError, match="reconnectTimeout"):
            publisher.publish("LOST", 3)
    finally:
        publisher.close()


def test_publisher_reconnect_timeout_is_checked(es):
    with pytest.raises(ValueError, match="reconnectTimeout"):
        eventservice.Publisher(reconnectTimeout=-1)


# -- per-subscriber queue policy (the ES side is contract 3) -----------------------------------------

HAS_QUEUE_POLICY = hasattr(eventservice.EventService, "setQueuePolicy")


def test_queue_policy_arguments_are_checked_before_anything_is_sent(es):
    with pytest.raises(ValueError, match="queue policy must be one of block, drop, drop-oldest"):
        eventservice.Subscriber(queuePolicy="newest")
    with pytest.raises(ValueError, match="queuesize"):
        eventservice.Subscriber(queuePolicy="drop", queueSize=0)
    with pytest.raises(ValueError, match="queueSize needs a queuePolicy"):
        eventservice.Subscriber(queueSize=10)


@pytest.mark.skipif(HAS_QUEUE_POLICY, reason="this Event Service offers setQueuePolicy")
def test_queue_policy_on_an_es_without_it_is_a_clear_error(es, recorders):
    subscriber = recorders()
    subscriber.subscribe("NO.POLICY")
    with pytest.raises(RuntimeError, match="no per-subscriber queue policy"):
        subscriber.setQueuePolicy("drop-oldest", 10)


@pytest.mark.skipif(not HAS_QUEUE_POLICY, reason="the EventService on this branch has no setQueuePolicy yet "
                    "(contract 3, built by the server helper); runs once merged")
def test_queue_policy_is_applied_and_applied_again_after_a_restart(start_es, recorders):
    """queuePolicy/queueSize reach the ES with the first subscription, and the new ES after a restart."""
    first = start_es()
    subscriber = recorders(queuePolicy="drop-oldest", queueSize=5)
    subscriber.heartbeat = 0
    subscriber.listenInThread()
    subscriber.subscribe("POLICY")
    uri = str(subscriber.getProxy()._pyroUri)

    def entry(service) -> dict:
        return next(item for item in service.subscribers() if item["uri"] == uri)

    assert (entry(first.service)["policy"], entry(first.service)["queuesize"]) == ("drop-oldest", 5)
    first.stop()
    second = start_es()
    assert subscriber.reconnected.wait(RECOVERY_BOUND)
    assert (entry(second.service)["policy"], entry(second.service)["queuesize"]) == ("drop-oldest", 5)
