"""End-to-end delivery through a real name server, ES and subscriber daemons.

Which events reach whom: exact and pattern subscriptions, case folding,
unsubscribe, one copy per subject, multi-subject publish, transient events,
plain Pyro callback objects, and argument errors.
"""
import logging
import marshal
import queue
import threading
import time

import pytest
from Pyro5 import api as pyro

import eventservice
import eventservice.server.delivery
from conftest import WAIT, Collector, flat_stats, wait_until

pytestmark = pytest.mark.network


def messages(events):
    return [event.msg for event in events]


@pytest.fixture
def plain_daemon(es):
    """A stock Pyro5 daemon serving from a thread, for hand-made callback objects."""
    daemon = pyro.Daemon(host="127.0.0.1", port=0)
    thread = threading.Thread(target=daemon.requestLoop, name="test-plain-daemon", daemon=True)
    thread.start()
    yield daemon
    daemon.shutdown()
    thread.join(WAIT)


class PlainCallback:
    """Not a Subscriber: just a Pyro object with event(); raises for msg == 'boom'."""

    def __init__(self):
        self.received = queue.Queue()

    @pyro.expose
    def event(self, event):
        self.received.put(event)
        if event.msg == "boom":
            raise ValueError("this subscriber does not like booms")

    def take(self, count):
        return [self.received.get(timeout=WAIT) for _ in range(count)]


# -- exact and pattern subjects -------------------------------------------


def test_exact_subscription_receives_published_event(es, collectors):
    """An exact subscription receives the event with subject and message intact."""
    subscriber = collectors()
    subscriber.subscribe("STOCKQUOTE.SUN")
    eventservice.Publisher().publish("STOCKQUOTE.SUN", ("SUN", 22.44))
    [event] = subscriber.take(1)
    assert (event.subject, event.msg) == ("STOCKQUOTE.SUN", ("SUN", 22.44))
    assert isinstance(event, eventservice.Event)


def test_exact_subscription_ignores_other_subjects(es, collectors):
    """Only the exact subject is delivered: not prefixes, extensions or other subjects."""
    subscriber = collectors()
    subscriber.subscribe("STOCKQUOTE.SUN")
    publisher = eventservice.Publisher()
    for subject in ("STOCKQUOTE.SUNW", "STOCKQUOTE", "STOCKQUOTE.IBM", "NYSE.STOCKQUOTE.SUN"):
        assert publisher.publish(subject, "no") == 0
    publisher.publish("STOCKQUOTE.SUN", "yes")
    assert messages(subscriber.take(1)) == ["yes"]
    assert subscriber.nothing_more()


def test_pattern_subscription_is_anchored_match(es, collectors):
    """^STOCKQUOTE\\.S.*$ gets SUN and SAP, not IBM, and not a subject merely containing a match."""
    subscriber = collectors()
    subscriber.subscribeMatch(r"^STOCKQUOTE\.S.*$")
    publisher = eventservice.Publisher()
    for subject in ("STOCKQUOTE.SUN", "STOCKQUOTE.IBM", "NYSE.STOCKQUOTE.SUN", "STOCKQUOTE.SAP"):
        publisher.publish(subject, subject)
    assert [event.subject for event in subscriber.take(2)] == ["STOCKQUOTE.SUN", "STOCKQUOTE.SAP"]
    assert subscriber.nothing_more()


def test_pattern_without_caret_is_still_anchored_at_start(es, collectors):
    """A pattern without ^ matches from the subject's start (re.match), not anywhere (re.search)."""
    subscriber = collectors()
    subscriber.subscribeMatch(r"STOCKQUOTE\.S")
    other = collectors()
    other.subscribeMatch(r"[A-Z]+QUOTE\.S")  # no literal prefix to narrow the candidates
    publisher = eventservice.Publisher()
    assert publisher.publish("NYSE.STOCKQUOTE.SUN", "inside") == 0
    assert publisher.publish("STOCKQUOTE.SUN", "start") == 2
    assert messages(subscriber.take(1)) == ["start"]
    assert messages(other.take(1)) == ["start"]
    assert other.nothing_more(0.1)
    assert subscriber.nothing_more()


# -- case-insensitivity ---------------------------------------------------


def test_exact_subjects_use_full_unicode_case_folding(es, collectors):
    """'STRASSE.news' receives 'straße.NEWS'; the event keeps the publisher's spelling."""
    subscriber = collectors()
    subscriber.subscribe("STRASSE.news")
    assert eventservice.Publisher().publish("straße.NEWS", "hallo") == 1
    [event] = subscriber.take(1)
    assert (event.subject, event.msg) == ("straße.NEWS", "hallo")


def test_patterns_are_case_insensitive_with_full_folding(es, collectors):
    """Pattern '^straße' gets 'STRASSE.x'; pattern '^stock' gets 'StockQuote.SUN'."""
    subscriber = collectors()
    subscriber.subscribeMatch(["^straße", "^stock"])
    publisher = eventservice.Publisher()
    assert publisher.publish("STRASSE.x", 1) == 1
    assert publisher.publish("StockQuote.SUN", 2) == 1
    assert publisher.publish("STRAXE.x", 3) == 0
    assert [(event.subject, event.msg) for event in subscriber.take(2)] == [("STRASSE.x", 1), ("StockQuote.SUN", 2)]
    assert subscriber.nothing_more()


# -- unsubscribe ------------------------------------------------------------


def test_unsubscribe_removes_subject_and_pattern_of_that_text_only(es, collectors):
    """unsubscribe('X') drops the exact subject X and the pattern 'X'; other subscriptions stay."""
    subscriber = collectors()
    subscriber.subscribe(["NEWS", "SPORT"])
    subscriber.subscribeMatch(["NEWS", r"^WEATHER\."])
    publisher = eventservice.Publisher()
    subscriber.unsubscribe("news")  # exact subjects fold; the pattern text must match as written
    assert publisher.publish("NEWS", "exact") == 1  # the pattern 'NEWS' is still there
    assert messages(subscriber.take(1)) == ["exact"]
    subscriber.unsubscribe("NEWS")
    assert publisher.publish("NEWS", "gone") == 0
    assert publisher.publish("NEWS.TODAY", "gone too") == 0  # the pattern NEWS would have matched this
    assert publisher.publish("SPORT", "sport") == 1
    assert publisher.publish("WEATHER.RAIN", "rain") == 1
    assert messages(subscriber.take(2)) == ["sport", "rain"]
    assert subscriber.nothing_more()


def test_unsubscribe_everything_removes_subscriber_from_es(es, collectors):
    """After unsubscribing every subject and pattern the ES holds no trace of the subscriber."""
    subscriber = collectors()
    subscriber.subscribe(["A", "B"])
    subscriber.subscribeMatch(r"^C\.")
    stats = flat_stats(es.service)
    assert (stats["subscribers"], stats["mailboxes"], stats["subscriptions_exact"],
            stats["subscriptions_pattern"]) == (1, 1, 2, 1)
    subscriber.unsubscribe(["A", "B"])
    assert flat_stats(es.service)["subscribers"] == 1  # the pattern is still held
    subscriber.unsubscribe(r"^C\.")
    stats = flat_stats(es.service)
    assert (stats["subscribers"], stats["mailboxes"], stats["subscriptions_exact"],
            stats["subscriptions_pattern"]) == (0, 0, 0, 0)
    assert eventservice.Publisher().publish(["A", "B", "C.x"], "nobody") == 0
    assert subscriber.nothing_more()


# -- one copy per subject --------------------------------------------------


def test_overlapping_exact_and_patterns_give_one_copy(es, collectors):
    """Exact + two overlapping patterns on one subject: the subscriber gets that event once."""
    subscriber = collectors()
    subscriber.subscribe("STOCKQUOTE.SUN")
    subscriber.subscribeMatch([r"^STOCKQUOTE\.", r"^STOCKQUOTE\.S.*$"])
    publisher = eventservice.Publisher()
    assert publisher.publish("STOCKQUOTE.SUN", "once") == 1
    assert publisher.publish("STOCKQUOTE.SAP", "once too") == 1  # two patterns match
    assert messages(subscriber.take(2)) == ["once", "once too"]
    assert subscriber.nothing_more()


def test_subscribing_twice_is_harmless(es, collectors):
    """Subscribing the same subject or pattern again changes nothing: still one copy."""
    subscriber = collectors()
    subscriber.subscribe("DUP")
    subscriber.subscribe(["DUP", "dup"])
    subscriber.subscribeMatch("^DUP$")
    subscriber.subscribeMatch("^DUP$")
    assert eventservice.Publisher().publish("DUP", 1) == 1
    assert messages(subscriber.take(1)) == [1]
    assert subscriber.nothing_more()
    stats = flat_stats(es.service)
    assert (stats["subscribers"], stats["subscriptions_exact"], stats["subscriptions_pattern"]) == (1, 1, 1)


def test_different_proxies_to_one_subscriber_are_one_subscriber(es, collectors):
    """The skeleton's proxy, a fresh proxyFor() and a proxy from the URI string are one subscriber."""
    subscriber = collectors()
    subscriber.subscribe("SAME")
    uri = str(subscriber._callback._pyroUri)
    with eventservice.Publisher().getES() as service:
        service.subscribe("SAME", subscriber._daemon.proxyFor(subscriber._sink))
        service.subscribe("same", pyro.Proxy(uri))
        service.subscribeMatch("^SAM", pyro.Proxy(uri))
    assert flat_stats(es.service)["subscribers"] == 1
    assert eventservice.Publisher().publish("SAME", "x") == 1
    assert messages(subscriber.take(1)) == ["x"]
    assert subscriber.nothing_more()


def test_subscribing_with_a_proxy_built_from_the_uri_string(es, collectors):
    """A proxy made from the subscriber's URI text (no metadata) is a valid subscriber on its own."""
    subscriber = collectors()
    uri = str(subscriber._callback._pyroUri)
    with eventservice.Publisher().getES() as service:
        service.subscribe("BYURI", pyro.Proxy(uri))
    publisher = eventservice.Publisher()
    for number in range(3):
        assert publisher.publish("BYURI", number) == 1
    assert messages(subscriber.take(3)) == [0, 1, 2]


def test_two_subscribers_each_get_a_copy(es, collectors):
    """Distinct subscribers on one subject each get one copy; publish counts them both."""
    first, second = collectors(), collectors()
    first.subscribe("BOTH")
    second.subscribeMatch("^BO")
    assert eventservice.Publisher().publish("BOTH", "hi") == 2
    assert messages(first.take(1)) == ["hi"]
    assert messages(second.take(1)) == ["hi"]


# -- publishing --------------------------------------------------------------


def test_multi_subject_publish_one_event_per_subject_same_time(es, collectors):
    """publish(['A','B','C'], m): one event per subject, one shared time taken during the call."""
    subscriber = collectors()
    subscriber.subscribe(["A", "B", "C"])
    other = collectors()
    other.subscribe("A")
    before = time.time()
    queued = eventservice.Publisher().publish(["A", "B", "C"], "multi")
    after = time.time()
    assert queued == 4
    events = subscriber.take(3)
    assert [(event.subject, event.msg) for event in events] == [("A", "multi"), ("B", "multi"), ("C", "multi")]
    assert len({event.time for event in events}) == 1
    assert before <= events[0].time <= after
    [event] = other.take(1)
    assert event.time == events[0].time
    assert subscriber.nothing_more() and other.nothing_more()


def test_publish_with_tuple_of_subjects(es, collectors):
    """A tuple of subjects works like a list; the return value counts only matched events."""
    subscriber = collectors()
    subscriber.subscribe("T1")
    assert eventservice.Publisher().publish(("T1", "T2"), "tuple") == 1
    [event] = subscriber.take(1)
    assert (event.subject, event.msg) == ("T1", "tuple")


def test_events_without_subscriber_vanish(es, collectors):
    """Publishing with no subscriber returns 0 and a later subscriber never sees that event."""
    publisher = eventservice.Publisher()
    assert publisher.publish("LATE", "old") == 0
    subscriber = collectors()
    subscriber.subscribe("LATE")
    assert publisher.publish("LATE", "new") == 1
    assert messages(subscriber.take(1)) == ["new"]
    assert subscriber.nothing_more()


# -- plain Pyro callback objects ---------------------------------------------


def subscribe_plain(daemon, subject: str) -> PlainCallback:
    """A new PlainCallback in ``daemon``, subscribed to ``subject`` through a proxy."""
    callback = PlainCallback()
    daemon.register(callback)
    with eventservice.Publisher().getES() as service:
        service.subscribe(subject, daemon.proxyFor(callback))
    return callback


def test_plain_pyro_callback_object_receives_events_in_order(es, plain_daemon):
    """A hand-made Pyro object with event() gets eventservice.Event objects, in order."""
    callback = subscribe_plain(plain_daemon, "PLAIN")
    publisher = eventservice.Publisher()
    for number in range(20):
        assert publisher.publish("PLAIN", number) == 1
    events = callback.take(20)
    assert all(isinstance(event, eventservice.Event) for event in events)
    assert [event.subject for event in events] == ["PLAIN"] * 20
    assert messages(events) == list(range(20))


def test_subscriber_daemon_that_closes_idle_connections_keeps_its_subscription(es, plain_daemon, pyro_settings):
    """A subscriber's daemon may drop the ES's idle connection (Pyro5's COMMTIMEOUT does): the ES
    notices, connects again for the next event, and neither loses the event nor drops the subscriber."""
    pyro_settings.COMMTIMEOUT = 0.3  # read by the daemons when they accept a connection
    callback = subscribe_plain(plain_daemon, "IDLE")
    publisher = eventservice.Publisher()
    for round_number in range(2):
        assert publisher.publish("IDLE", round_number) == 1
        assert messages(callback.take(1)) == [round_number]
        wait_until(lambda: not flat_stats(es.service)["connected"], message="the ES seeing the idle connection closed")
        assert flat_stats(es.service)["subscribers"] == 1


def test_plain_callback_object_is_auto_proxied(es, plain_daemon):
    """Passing the registered object itself (not a proxy) subscribes it too."""
    callback = PlainCallback()
    plain_daemon.register(callback)
    with eventservice.Publisher().getES() as service:
        service.subscribeMatch("^AUTO", callback)
    assert eventservice.Publisher().publish("AUTO.1", "auto") == 1
    assert messages(callback.take(1)) == ["auto"]


def test_plain_callback_exception_does_not_stop_later_events(es, plain_daemon):
    """event() raising for one event does not lose the events after it, nor the subscriber."""
    callback = subscribe_plain(plain_daemon, "PLAIN")
    publisher = eventservice.Publisher()
    sent = [1, 2, "boom", 3, "boom", "boom", 4, 5]
    for message in sent:
        publisher.publish("PLAIN", message)
    assert messages(callback.take(len(sent))) == sent
    assert flat_stats(es.service)["subscribers"] == 1
    publisher.publish("PLAIN", "after")
    assert messages(callback.take(1)) == ["after"]


def test_subscriber_event_exception_does_not_stop_later_events(es, collectors):
    """The Subscriber skeleton goes on after its event() raised."""

    class Picky(Collector):
        def event(self, event):
            super().event(event)
            if event.msg == "boom":
                raise ValueError("boom")

    with Picky() as subscriber:
        subscriber.listenInThread()
        subscriber.subscribe("PICKY")
        publisher = eventservice.Publisher()
        for message in ["a", "boom", "b", "boom", "c"]:
            publisher.publish("PICKY", message)
        assert messages(subscriber.take(5)) == ["a", "boom", "b", "boom", "c"]
        assert flat_stats(es.service)["subscribers"] == 1


# -- bad arguments -----------------------------------------------------------


def test_publish_bad_subjects_raise_at_caller(es, collectors):
    """publish(123) -> TypeError, publish([]) -> ValueError, a non-str in the list -> TypeError."""
    subscriber = collectors()
    subscriber.subscribe("OK")
    publisher = eventservice.Publisher()
    with pytest.raises(TypeError):
        publisher.publish(123, "x")
    with pytest.raises(ValueError):
        publisher.publish([], "x")
    with pytest.raises(TypeError):
        publisher.publish(["OK", 5], "x")  # all or nothing: OK gets nothing either
    with pytest.raises(ValueError):
        publisher.publish(["OK", ""], "x")
    assert publisher.publish("OK", "fine") == 1
    assert messages(subscriber.take(1)) == ["fine"]
    assert subscriber.nothing_more()


def test_subscribe_bad_arguments_raise_and_change_nothing(es, collectors):
    """A non-str subject or a bad pattern raises the right type at the subscriber; nothing is subscribed."""
    subscriber = collectors()
    with pytest.raises(TypeError):
        subscriber.subscribe(["GOOD", 5])
    with pytest.raises(TypeError):
        subscriber.subscribeMatch(["^GOOD", None])
    with pytest.raises(ValueError, match=r"\(unclosed"):
        subscriber.subscribeMatch("(unclosed")
    with pytest.raises(ValueError, match=r"\(unclosed"):
        subscriber.subscribeMatch(["^GOOD", "(unclosed"])  # all or nothing
    with pytest.raises(ValueError):
        subscriber.subscribe([])
    stats = flat_stats(es.service)
    assert (stats["subscribers"], stats["subscriptions_exact"], stats["subscriptions_pattern"],
            stats["mailboxes"]) == (0, 0, 0, 0)
    publisher = eventservice.Publisher()
    assert publisher.publish("GOOD", "nobody") == 0
    # the ES and this subscriber stay fully usable
    subscriber.subscribe("GOOD")
    subscriber.subscribeMatch("^BETTER")
    assert publisher.publish(["GOOD", "BETTER.x"], "now") == 2
    assert [event.subject for event in subscriber.take(2)] == ["GOOD", "BETTER.x"]
    assert subscriber.nothing_more()


def test_bad_arguments_through_raw_proxy_keep_exception_types(es, collectors):
    """Called on the ES proxy directly, the remote TypeError/ValueError arrive as such."""
    subscriber = collectors()
    callback = subscriber._daemon.proxyFor(subscriber._sink)
    with eventservice.Publisher().getES() as service:
        with pytest.raises(TypeError):
            service.publish(123, "x")
        with pytest.raises(ValueError):
            service.publish([], "x")
        with pytest.raises(TypeError):
            service.subscribe(["A", 1.5], callback)
        with pytest.raises(ValueError, match=r"\(unclosed"):
            service.subscribeMatch("(unclosed", callback)
        with pytest.raises(TypeError):
            service.subscribe("A", "not a proxy")
        assert flat_stats(es.service)["subscribers"] == 0
        service.subscribe("A", callback)
        assert service.publish("A", "works") == 1
    assert messages(subscriber.take(1)) == ["works"]


# -- connecting ----------------------------------------------------------------------


def test_es_connects_at_subscribe_time_not_at_the_first_event(es, collectors):
    """The first event need not wait for a connect: the ES connects as soon as someone subscribes."""
    subscriber = collectors()
    subscriber.subscribe("EAGER")
    wait_until(lambda: flat_stats(es.service)["connected"] == 1, message="a connection to the new subscriber")
    assert flat_stats(es.service)["delivered"] == 0
    assert eventservice.Publisher().publish("EAGER", 1) == 1
    assert messages(subscriber.take(1)) == [1]


def test_subscriber_not_listening_yet_is_kept_and_served_once_it_listens(es, collectors, monkeypatch):
    """A connect at subscribe time to a subscriber that does not listen yet gives up quietly; the
    subscriber stays subscribed, and events published before and after its listen() all arrive."""
    monkeypatch.setattr(eventservice.server.delivery, "EAGER_CONNECT_SECONDS", 0.2)
    subscriber = collectors(listen=False)
    subscriber.subscribe("LATE")
    wait_until(lambda: not flat_stats(es.service)["connecting"], message="the early connect running out of time")
    stats = flat_stats(es.service)
    assert (stats["subscribers"], stats["connected"]) == (1, 0), stats
    publisher = eventservice.Publisher()
    assert publisher.publish("LATE", "before listen") == 1
    subscriber.listenInThread()
    assert publisher.publish("LATE", "after listen") == 1
    assert messages(subscriber.take(2)) == ["before listen", "after listen"]


def test_event_published_while_the_early_connect_fails_is_delivered(es, collectors, monkeypatch, caplog):
    """Events that arrive while the subscribe-time connect is still trying are not stranded when it fails."""
    monkeypatch.setattr(eventservice.server.delivery, "EAGER_CONNECT_SECONDS", 0.5)
    caplog.set_level(logging.DEBUG, logger="eventservice.server.delivery")
    subscriber = collectors(listen=False)
    subscriber.subscribe("LATE")
    assert eventservice.Publisher().publish("LATE", "early") == 1  # queued while the early connect waits
    wait_until(lambda: any("not reachable yet" in record.getMessage() for record in caplog.records),
               message="the early connect giving up")
    subscriber.listenInThread()
    assert messages(subscriber.take(1)) == ["early"]


@pytest.mark.parametrize("serializer", ["marshal", "serpent"])  # marshal takes the daemon's short path
def test_malformed_marshalled_batch_is_refused_and_the_subscriber_goes_on(es, collectors, serializer):
    """The skeleton's fast-path method refuses what is not a marshalled batch, with a clear error;
    other calls on the subscriber's daemon are still Pyro5's."""
    subscriber = collectors()
    subscriber.subscribe("FAST")
    with pyro.Proxy(subscriber._callback._pyroUri) as sink:
        sink._pyroSerializer = serializer
        with pytest.raises(TypeError, match="bytes"):
            sink.marshalled_events("not bytes")
        with pytest.raises((ValueError, EOFError, TypeError)):
            sink.marshalled_events(b"\xff\x00garbage")
        sink.events([("FAST", "by hand", 1.0)])  # the general path, on the same connection
        expected = ["by hand"]
        if serializer == "marshal":  # serpent carries bytes as a dict, which this method refuses (above)
            sink.marshalled_events(marshal.dumps([("FAST", "marshalled by hand", 2.0)]))
            expected.append("marshalled by hand")
    assert messages(subscriber.take(len(expected))) == expected
    assert eventservice.Publisher().publish("FAST", ("still", "served")) == 1
    assert messages(subscriber.take(1)) == [("still", "served")]
