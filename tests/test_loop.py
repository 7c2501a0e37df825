"""The Event Service's event loop driven by a caller's own select loop (the daemon's sockets and events)."""
from __future__ import annotations

import contextlib
import select
import threading
import time

import eventservice
from conftest import LOCALHOST, WAIT
from eventservice.server.loop import _Alarm


@contextlib.contextmanager
def own_loop(nameserver, only_when_ready: bool):
    """An ES served from a select loop of the test's own, as a program does; yields nothing, stops it after.

    ``only_when_ready``: call events() only when a socket is ready (Pyro3 programs do), not every 10 ms."""
    starter = eventservice.EventServiceStarter()
    starter.initialize(LOCALHOST, 0, useNameServer=True, nsHost=LOCALHOST, nsPort=nameserver.port)
    stop = threading.Event()

    def serve():
        daemon = starter.daemon
        while not stop.is_set():
            ready, _, _ = select.select(daemon.sockets, [], [], 0.05 if only_when_ready else 0.01)
            if ready or not only_when_ready:
                daemon.events(ready)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(WAIT)
        starter.shutdown()


def test_own_select_loop_serves_publishes_and_deliveries(pyro_settings, nameserver, collectors):
    """A program may drive the ES from its own loop: select on daemon.sockets, then daemon.events(ready).
    Publishes are answered and events delivered (deliveries share the loop)."""
    with own_loop(nameserver, only_when_ready=False):
        subscriber = collectors()
        subscriber.subscribe("OWN.LOOP")
        with eventservice.Publisher() as publisher:
            for number in range(20):
                assert publisher.publish("OWN.LOOP", number) == 1
        assert [event.msg for event in subscriber.take(20)] == list(range(20))


def test_own_loop_that_serves_only_ready_sockets_gets_every_spaced_delivery(pyro_settings, nameserver, collectors):
    """Pyro3 programs call events() only when a socket is ready. Deliveries that wait for their round (back-to-back
    publishes share calls 2 ms apart) must still go out: the ES makes one of its sockets ready when they are due."""
    with own_loop(nameserver, only_when_ready=True):
        subscriber = collectors()
        subscriber.subscribe("OWN.BURST")
        with eventservice.Publisher() as publisher:
            for pair in range(10):  # the second of two back-to-back publishes waits for the round gap, then silence
                assert [publisher.publish("OWN.BURST", 2 * pair + step) for step in range(2)] == [1, 1]
                assert [event.msg for event in subscriber.take(2)] == [2 * pair, 2 * pair + 1]


def test_alarm_rings_when_due_and_a_sooner_time_replaces_a_later_one():
    """The own loop's timer: rings once per time set, at once for a time past; None cancels."""
    rang = threading.Semaphore(0)
    alarm = _Alarm(rang.release)
    try:
        alarm.ring_at(time.monotonic())  # due now
        assert rang.acquire(timeout=WAIT)
        alarm.ring_at(time.monotonic() + 3600)
        alarm.ring_at(time.monotonic() + 0.01)  # sooner: replaces the hour
        assert rang.acquire(timeout=WAIT)
        alarm.ring_at(time.monotonic() + 0.05)
        alarm.ring_at(None)  # cancelled before it was due
        assert not rang.acquire(timeout=0.3)
    finally:
        alarm.stop()
