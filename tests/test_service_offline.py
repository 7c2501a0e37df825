"""EventService without a daemon or a subscriber process: fake subscribers, an offline dispatcher.

As Pyro5 tests its name server offline, these call the service's methods
directly. The dispatcher is the real one with connecting and the delivery
loop switched off, so the queues, policies, parking and counters are real;
a test "delivers" by taking events from a mailbox.
"""
import pytest
from Pyro5.client import Proxy
from Pyro5.errors import TimeoutError as PyroTimeoutError

from eventservice.core.config import Settings
from eventservice.server.delivery import Dispatcher
from eventservice.server.service import COSTLY_SUBJECTS, PARKING, EventService, costly_batch, costly_publish


class OfflineDispatcher(Dispatcher):
    """Never connects nor delivers: what is posted stays in the mailboxes."""

    def _start_connecting(self, mailbox, eager=False):
        pass

    def _wake(self):
        pass


def fake_subscriber(name: str) -> Proxy:
    return Proxy(f"PYRO:{name}@127.0.0.1:9")  # never connected


@pytest.fixture
def service_factory():
    made = []

    def make(**settings) -> EventService:
        service = EventService(Settings(**settings), dispatcher=OfflineDispatcher)
        made.append(service)
        return service

    yield make
    for service in made:
        service.close()


def mailbox(service: EventService, subscriber: Proxy):
    return next(box for box in service._dispatcher.mailboxes() if box.key == str(subscriber._pyroUri))


def test_one_copy_per_event_in_accepted_order(service_factory):
    service = service_factory()
    one, two = fake_subscriber("one"), fake_subscriber("two")
    service.subscribe(["A", "a", "B"], one)
    service.subscribe("B", two)
    assert service.publish("A", 1) == 1
    assert service.publish(["a", "B"], 2) == 3  # one copy for one, one for two
    refused = service.publishBatch([("B", 3), (["A"], 4), ([""], 5)])
    assert refused == [[2, "ValueError", "subjects must not contain an empty string"]]
    assert [(subject, msg) for subject, msg, _ in mailbox(service, one).events] == \
        [("A", 1), ("a", 2), ("B", 2), ("B", 3), ("A", 4)]
    assert [msg for _, msg, _ in mailbox(service, two).events] == [2, 3]


def test_stats_shape_and_counters_that_survive_leaving(service_factory):
    service = service_factory()
    one = fake_subscriber("one")
    service.subscribe("A", one)
    service.publish("A", 1)
    box = mailbox(service, one)
    box.take(10)
    box.count_delivered(1)
    service._dispatcher.delivered += 1  # what the delivery loop counts on a reply
    before = service.stats()
    assert before["counters"]["published"] == 1 and before["counters"]["delivered"] == 1
    assert before["gauges"]["subscribers"] == 1 and before["gauges"]["subscriptions_exact"] == 1
    service.unsubscribe("A", one)
    after = service.stats()
    for name, value in before["counters"].items():
        assert after["counters"][name] >= value, name
    assert after["counters"]["removed_unsubscribed"] == 1 and after["counters"]["delivered"] == 1
    assert after["gauges"]["subscribers"] == 0
    assert set(after["counters"]) >= {"published", "delivered", "dropped", "delivery_timeouts", "pattern_timeouts",
                                      "removed_dead", "removed_timed_out", "removed_unsubscribed", "removed_closed"}
    assert set(after["gauges"]) >= {"subscribers", "subscriptions_exact", "subscriptions_pattern", "queued",
                                    "deepest_queue", "connections", "uptime"}


def test_removals_are_counted_by_reason(service_factory):
    service = service_factory()
    subscribers = [fake_subscriber(f"s{number}") for number in range(3)]
    for subscriber in subscribers:
        service.subscribe("A", subscriber)
    service._subscriber_dead(str(subscribers[0]._pyroUri), PyroTimeoutError("no reply"))
    service._subscriber_dead(str(subscribers[1]._pyroUri), ConnectionRefusedError("gone"))
    service.unsubscribeAll(subscribers[2])
    counters = service.stats()["counters"]
    assert (counters["removed_timed_out"], counters["removed_dead"], counters["removed_closed"]) == (1, 1, 1)
    assert service.subscribers() == []


def test_drop_oldest_per_subscriber_keeps_the_newest(service_factory):
    service = service_factory(queuesize=4)
    slow, other = fake_subscriber("slow"), fake_subscriber("other")
    service.subscribe("Q", slow)
    service.subscribe("Q", other)
    service.setQueuePolicy(slow, "drop-oldest", 3)
    service.setQueuePolicy(other, "drop")
    for number in range(10):
        service.publish("Q", number)
    assert [msg for _, msg, _ in mailbox(service, slow).events] == [7, 8, 9]
    assert [msg for _, msg, _ in mailbox(service, other).events] == [0, 1, 2, 3]
    listing = {entry["uri"]: entry for entry in service.subscribers()}
    assert listing[str(slow._pyroUri)] == {
        "uri": str(slow._pyroUri), "subjects": 1, "patterns": 0, "queued": 3, "queuesize": 3,
        "policy": "drop-oldest", "delivered": 0, "dropped": 7, "last_delivery": None}
    assert listing[str(other._pyroUri)]["dropped"] == 6
    assert service.stats()["counters"]["dropped"] == 13
    assert service.stats()["gauges"]["deepest_queue"] == 4


def test_set_queue_policy_refuses_bad_values_naming_them(service_factory):
    service = service_factory(queuesize=10, max_queuesize=50)
    subscriber = fake_subscriber("one")
    with pytest.raises(ValueError, match="subscribe first"):
        service.setQueuePolicy(subscriber, "drop")
    service.subscribe("A", subscriber)
    with pytest.raises(ValueError, match="block, drop, drop-oldest"):
        service.setQueuePolicy(subscriber, "newest")
    with pytest.raises(ValueError, match="max_queuesize"):
        service.setQueuePolicy(subscriber, "drop", 51)
    with pytest.raises(TypeError, match="Pyro callback object"):
        service.setQueuePolicy("not a proxy", "drop")
    service.setQueuePolicy(subscriber, "block", 50)
    assert service.subscribers()[0]["queuesize"] == 50


def test_a_full_blocking_queue_parks_the_publisher_on_the_loop(service_factory):
    """On the event loop (PARKING set) a publish to a full queue returns at once and names the queue to wait
    for; when the subscriber takes events, the waiter is called."""
    service = service_factory(queuesize=2)
    subscriber = fake_subscriber("one")
    service.subscribe("A", subscriber)
    service.publish("A", 0)
    service.publish("A", 1)
    full: list = []
    PARKING.full = full
    try:
        assert service.publish("A", 2) == 1  # queued, beyond the size
    finally:
        PARKING.full = None
    box = mailbox(service, subscriber)
    assert full == [box] and len(box) == 3
    called = []
    assert box.on_room(lambda: called.append(True))
    box.take(1)
    assert called == [True]


def test_publish_checks_its_arguments(service_factory):
    service = service_factory(max_subjects_per_publish=2)
    with pytest.raises(ValueError, match="max_subjects_per_publish"):
        service.publish(["A", "B", "C"], 1)
    with pytest.raises(TypeError):
        service.publish(5, 1)
    with pytest.raises(TypeError, match="Pyro callback object"):
        service.subscribe("A", object())
    assert service.stats()["counters"]["published"] == 0


def test_costly_publishes_are_told_apart_from_cheap_ones_without_validating_them():
    """Which publishes the loop hands to a worker thread: more than COSTLY_SUBJECTS subjects in one call or batch."""
    many = [f"s{number}" for number in range(COSTLY_SUBJECTS + 1)]
    assert not costly_publish(("one.subject", 1), {})
    assert not costly_publish((many[:-1], 1), {})
    assert costly_publish((many, 1), {})
    assert costly_publish((), {"subjects": tuple(many), "message": 1})
    assert not costly_publish((42, 1), {})  # malformed: refused at once by publish itself, on the loop
    assert not costly_batch(([[subject, 1] for subject in many[:-1]],), {})
    assert costly_batch(([[subject, 1] for subject in many],), {})
    assert costly_batch(([[many[:40], 1], [many[40:], 1]],), {})  # few items, many subjects in all
    assert not costly_batch(("not a list",), {})
    assert not costly_batch(([None, [], "x", [many[:3], 1]],), {})
