"""Clients survive an Event Service restart: publishers reconnect, subscribers subscribe again."""
import pytest

import eventservice
from conftest import flat_stats, wait_until

pytestmark = pytest.mark.network


def test_subscriber_resubscribes_and_publisher_reconnects_after_es_restart(start_es, collectors):
    """After the ES is replaced by a new one, old clients carry on without being told."""
    first = start_es()
    subscriber = collectors(listen=False)
    subscriber.heartbeat = 0.2
    subscriber.listenInThread()
    subscriber.subscribe("NEWS")
    subscriber.subscribeMatch("^ALERT")
    publisher = eventservice.Publisher()
    assert publisher.publish("NEWS", 1) == 1
    assert subscriber.take(1)[0].msg == 1

    first.stop()
    second = start_es()  # a new process-wide ES, registered in the same name server, on another port
    assert second.uri != first.uri
    wait_until(lambda: (flat_stats(second.service)["subscriptions_exact"],
                        flat_stats(second.service)["subscriptions_pattern"]) == (1, 1),
               message="the subscriber's subject and pattern to come back")
    assert publisher.publish(["NEWS", "ALERT.FIRE"], 2) == 2  # reconnects through the name server
    assert [event.subject for event in subscriber.take(2)] == ["NEWS", "ALERT.FIRE"]
