"""End-to-end delivery through a real name server, ES and subscriber daemons."""
import pytest

import eventservice

pytestmark = pytest.mark.network


def test_exact_subscription_receives_published_event(es, collectors):
    subscriber = collectors()
    subscriber.subscribe("STOCKQUOTE.SUN")
    eventservice.Publisher().publish("STOCKQUOTE.SUN", ("SUN", 22.44))
    [event] = subscriber.take(1)
    assert (event.subject, event.msg) == ("STOCKQUOTE.SUN", ("SUN", 22.44))
