"""SubscriberQueue: the full-queue policies and counters, without sockets or threads of its own."""
import threading

import pytest

from eventservice.core.queues import BLOCK, DROP, DROP_OLDEST, Put, SubscriberQueue, check_policy, check_queuesize


def filled(policy: str, size: int = 3) -> SubscriberQueue:
    queue = SubscriberQueue("sub", size, policy)
    for number in range(size):
        assert queue.put(number) == Put.QUEUED
    return queue


def test_block_queues_beyond_the_size_and_says_the_publisher_must_wait():
    queue = filled(BLOCK)
    assert queue.put(3) == Put.FULL
    assert list(queue.events) == [0, 1, 2, 3] and not queue.has_room() and queue.dropped == 0


def test_drop_drops_the_new_event_and_counts_it():
    queue = filled(DROP)
    assert queue.put(3) == Put.DROPPED
    assert queue.put(4) == Put.DROPPED
    assert list(queue.events) == [0, 1, 2] and queue.dropped == 2


def test_drop_oldest_keeps_the_newest_in_order():
    queue = filled(DROP_OLDEST)
    for number in range(3, 10):
        assert queue.put(number) == Put.REPLACED
    assert list(queue.events) == [7, 8, 9] and queue.dropped == 7


def test_first_drop_is_logged_once(caplog):
    queue = filled(DROP)
    for number in range(5):
        queue.put(number)
    warnings = [record for record in caplog.records if "is full" in record.getMessage()]
    assert len(warnings) == 1 and "sub" in warnings[0].getMessage()


def test_take_returns_the_front_in_order_and_calls_room_waiters_once():
    queue = filled(BLOCK)
    queue.put(3)
    called = []
    assert queue.on_room(lambda: called.append(1)) is True
    assert queue.take(1) == [0]  # back within its size
    assert called == [1]
    queue.take(2)
    assert called == [1]  # once only
    assert queue.on_room(lambda: called.append(2)) is False  # has room: no call, no registration


def test_put_back_returns_events_to_the_front():
    queue = filled(BLOCK)
    batch = queue.take(2)
    queue.put(3)
    queue.put_back(batch)
    assert list(queue.events) == [0, 1, 2, 3]


def test_close_empties_refuses_and_releases_waiters():
    queue = filled(BLOCK)
    queue.put(3)
    called = []
    queue.on_room(lambda: called.append(1))
    queue.close()
    assert called == [1] and len(queue) == 0 and queue.put(4) == Put.CLOSED and queue.has_room()


def test_wait_for_room_returns_when_a_consumer_takes():
    queue = filled(BLOCK)
    queue.put(3)
    done = threading.Event()

    def wait():
        queue.wait_for_room()
        done.set()

    thread = threading.Thread(target=wait)
    thread.start()
    assert not done.wait(0.05)  # still full: it waits
    queue.take(1)
    thread.join(10)
    assert done.is_set()


def test_set_policy_trims_drop_oldest_and_frees_blocked_publishers():
    queue = filled(BLOCK, size=5)
    called = []
    queue.put(5)
    queue.on_room(lambda: called.append(1))
    queue.set_policy(BLOCK, 10)
    assert called == [1]
    queue.set_policy(DROP_OLDEST, 2)
    assert list(queue.events) == [4, 5] and queue.dropped == 4


def test_counts_deliveries_with_a_time():
    queue = SubscriberQueue("sub", 3)
    assert queue.last_delivery is None
    queue.count_delivered(2)
    assert queue.delivered == 2 and isinstance(queue.last_delivery, float)


@pytest.mark.parametrize("policy", ["Block", "newest", None, 1])
def test_unknown_policy_is_a_value_error_naming_the_choices(policy):
    with pytest.raises(ValueError, match="block, drop, drop-oldest"):
        check_policy(policy)


@pytest.mark.parametrize("size", [0, -1, 11, 2.5, "5", True])
def test_bad_queuesize_names_the_limit(size):
    with pytest.raises(ValueError, match="max_queuesize"):
        check_queuesize(size, 10)
    assert check_queuesize(10, 10) == 10
