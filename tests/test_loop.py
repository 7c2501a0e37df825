"""The Event Service's event loop driven by a caller's own select loop (the daemon's sockets and events)."""
from __future__ import annotations

import select
import threading

import eventservice
from conftest import LOCALHOST, WAIT


def test_own_select_loop_serves_publishes_and_deliveries(pyro_settings, nameserver, collectors):
    """A program may drive the ES from its own loop: select on daemon.sockets, then daemon.events(ready).
    Publishes are answered and events delivered (deliveries share the loop)."""
    starter = eventservice.EventServiceStarter()
    starter.initialize(LOCALHOST, 0, useNameServer=True, nsHost=LOCALHOST, nsPort=nameserver.port)
    stop = threading.Event()

    def own_loop():
        daemon = starter.daemon
        while not stop.is_set():
            ready, _, _ = select.select(daemon.sockets, [], [], 0.01)
            daemon.events(ready)

    thread = threading.Thread(target=own_loop, daemon=True)
    thread.start()
    try:
        subscriber = collectors()
        subscriber.subscribe("OWN.LOOP")
        with eventservice.Publisher() as publisher:
            for number in range(20):
                assert publisher.publish("OWN.LOOP", number) == 1
        assert [event.msg for event in subscriber.take(20)] == list(range(20))
    finally:
        stop.set()
        thread.join(WAIT)
        starter.shutdown()

