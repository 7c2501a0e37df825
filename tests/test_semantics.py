"""Delivery semantics through a real name server, ES and subscriber daemons.

Ordering under concurrent publishers, threading modes, full-queue policies,
slow and dead subscribers, abort(), and (un)subscribing from inside event().
Every wait is bounded; absence is checked with short bounded waits only.
"""
import os
import queue
import signal
import threading

import pytest

import eventservice
from conftest import WAIT, Collector, flat_stats, read_line, wait_until

pytestmark = pytest.mark.network


def messages(events):
    return [event.msg for event in events]


def in_thread(function, *args):
    """Run ``function`` in a daemon thread; returns (thread, done event, errors queue)."""
    done = threading.Event()
    errors = queue.Queue()

    def run():
        try:
            function(*args)
        except BaseException as error:  # reported by the test, not lost in the thread
            errors.put(error)
        finally:
            done.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, done, errors


def no_errors(errors):
    found = []
    while not errors.empty():
        found.append(errors.get())
    return found


class Gated(Collector):
    """A subscriber stuck inside event() until ``release`` is set; ``inside`` tells it got stuck."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.inside = threading.Event()
        self.release = threading.Event()

    def event(self, event):
        self.inside.set()
        self.release.wait(3 * WAIT)  # bounded; teardown always releases
        super().event(event)


class ThreadRecorder(Collector):
    """Notes the thread each event() runs in."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.threads = set()

    def event(self, event):
        self.threads.add(threading.current_thread())
        super().event(event)


@pytest.fixture
def gated(start_es):
    """Factory for listening Gated subscribers; released and closed before the ES stops."""
    made = []

    def make(threaded=True):
        subscriber = Gated()
        made.append(subscriber)
        subscriber.setThreading(threaded)
        subscriber.listenInThread()
        return subscriber

    yield make
    for subscriber in made:
        subscriber.release.set()
    for subscriber in made:
        subscriber.close()


@pytest.fixture
def own_subscribers(start_es):
    """Factory: ``own_subscribers(cls)`` makes a (not yet listening) subscriber of ``cls``, closed afterwards."""
    made = []

    def make(cls):
        subscriber = cls()
        made.append(subscriber)
        return subscriber

    yield make
    for subscriber in made:
        subscriber.close()


# -- ordering ------------------------------------------------------------------


@pytest.mark.parametrize("shared_publisher", [False, True], ids=["own-publishers", "shared-publisher"])
@pytest.mark.parametrize("threaded", [True, False], ids=["threaded", "single-threaded"])
def test_concurrent_publishers_ordered_per_subscriber_and_globally(es, collectors, threaded, shared_publisher):
    """Each subscriber sees every publisher's sequence in order, no loss or duplicates, one global order."""
    publishers, count = 4, 60
    subscribers = []
    for _ in range(3):
        subscriber = collectors(listen=False)
        subscriber.setThreading(threaded)
        subscriber.listenInThread()
        subscribers.append(subscriber)
    subscribers[0].subscribeMatch(r"^SEQ\.")
    subscribers[1].subscribe([f"SEQ.{number}" for number in range(publishers)])
    subscribers[2].subscribe(["SEQ.0", "seq.1"])
    subscribers[2].subscribeMatch(r"^seq\.\d+$")  # overlaps its exact subjects: still one copy
    shared = eventservice.Publisher() if shared_publisher else None
    barrier = threading.Barrier(publishers)
    wrong_counts = queue.Queue()

    def publish_sequence(number):
        publisher = shared or eventservice.Publisher()
        barrier.wait(WAIT)
        for seq in range(count):
            queued = publisher.publish(f"SEQ.{number}", (number, seq))
            if queued != len(subscribers):
                wrong_counts.put((number, seq, queued))

    runs = [in_thread(publish_sequence, number) for number in range(publishers)]
    for _, done, _ in runs:
        assert done.wait(3 * WAIT), "a publisher did not finish"
    assert [error for _, _, errors in runs for error in no_errors(errors)] == []
    assert no_errors(wrong_counts) == []

    orders = []
    for subscriber in subscribers:
        events = subscriber.take(publishers * count)
        assert subscriber.nothing_more(0.2)
        for event in events:
            assert event.subject == f"SEQ.{event.msg[0]}"
        for number in range(publishers):
            assert [event.msg[1] for event in events if event.msg[0] == number] == list(range(count))
        times = [event.time for event in events]
        assert times == sorted(times), "event.time went backwards within one subscriber's stream"
        orders.append([tuple(event.msg) for event in events])
    assert orders[0] == orders[1] == orders[2], "subscribers saw different global orders"


def test_single_publisher_order_with_large_backlog(es, gated):
    """A subscriber that falls behind gets the whole backlog in order once it catches up (batched)."""
    subscriber = gated()
    subscriber.subscribe("BACKLOG")
    publisher = eventservice.Publisher()
    publisher.publish("BACKLOG", 0)
    assert subscriber.inside.wait(WAIT)
    for number in range(1, 500):
        publisher.publish("BACKLOG", number)
    subscriber.release.set()
    assert messages(subscriber.take(500)) == list(range(500))
    assert subscriber.nothing_more(0.2)


# -- threading modes -------------------------------------------------------------


def test_set_threading_false_after_subscribe_keeps_uri_and_delivers(es, own_subscribers):
    """setThreading(False) between subscribe and listen: same URI, events arrive, in the listen thread."""
    subscriber = own_subscribers(ThreadRecorder)
    subscriber.subscribe("SINGLE")
    uri_before = str(subscriber._callback._pyroUri)
    subscriber.setThreading(False)
    assert str(subscriber._callback._pyroUri) == uri_before
    listener = subscriber.listenInThread()
    publisher = eventservice.Publisher()
    for number in range(5):
        assert publisher.publish("SINGLE", number) == 1  # the ES's subscription (by URI) still holds
    assert messages(subscriber.take(5)) == list(range(5))
    assert subscriber.threads == {listener}, "single-threaded: event() must run in the listen() thread"


def test_threaded_subscriber_runs_event_outside_listen_thread(es, own_subscribers):
    """The default (threaded) daemon serves calls in its pool, not in the listen() thread."""
    subscriber = own_subscribers(ThreadRecorder)
    subscriber.subscribe("POOL")
    listener = subscriber.listenInThread()
    eventservice.Publisher().publish("POOL", 1)
    assert messages(subscriber.take(1)) == [1]
    assert listener not in subscriber.threads


def test_set_threading_after_listen_started_raises(es, collectors):
    """setThreading() once listen() runs raises RuntimeError and leaves the subscriber working."""
    subscriber = collectors()
    subscriber.subscribe("LATE.THREADING")
    publisher = eventservice.Publisher()
    publisher.publish("LATE.THREADING", 1)
    assert messages(subscriber.take(1)) == [1]  # so listen() is serving
    with pytest.raises(RuntimeError):
        subscriber.setThreading(False)
    with pytest.raises(RuntimeError):
        subscriber.setThreading(True)
    publisher.publish("LATE.THREADING", 2)
    assert messages(subscriber.take(1)) == [2]


# -- full queues -----------------------------------------------------------------


def test_full_queue_blocks_publisher_until_subscriber_catches_up(start_es, gated, collectors):
    """Blocking policy: publish() waits while the queue is full, resumes on release; nothing is lost."""
    start_es(queuesize=5)
    slow = gated()
    slow.subscribe("FULL")
    other = collectors()
    other.subscribe("OTHER")
    count = 20
    returned = []

    def publish_all():
        publisher = eventservice.Publisher()
        for number in range(count):
            publisher.publish("FULL", number)
            returned.append(number)

    _, done, errors = in_thread(publish_all)
    assert slow.inside.wait(WAIT)
    assert not done.wait(0.5), "publish() returned for every event although the subscriber's queue is full"
    assert len(returned) < count
    # the blocked publisher holds up neither other publishers nor other subscribers
    assert eventservice.Publisher().publish("OTHER", "free") == 1
    assert messages(other.take(1)) == ["free"]  # held up, it would wait until the release below
    assert not done.is_set()
    slow.release.set()
    assert done.wait(WAIT), "publisher still blocked after the subscriber was released"
    assert no_errors(errors) == []
    assert messages(slow.take(count)) == list(range(count))
    assert slow.nothing_more(0.2)


def test_parked_publisher_holds_no_thread_and_others_are_served(start_es, gated, collectors):
    """A publisher waiting for room in a full queue is parked: the ES adds no thread for it, answers
    others meanwhile, and lets it go on once the subscriber catches up."""
    running = start_es(queuesize=2)
    slow = gated()
    slow.subscribe("PARK")
    baseline = {thread.name for thread in threading.enumerate()}
    returned = []

    def publish():
        with eventservice.Publisher() as publisher:
            for number in range(6):
                publisher.publish("PARK", number)
                returned.append(number)

    thread = threading.Thread(target=publish, daemon=True)
    thread.start()
    assert slow.inside.wait(WAIT)
    wait_until(lambda: flat_stats(running.service)["queued"] >= 3, message="the queue to fill beyond its size")
    assert len(returned) < 6  # parked
    new_threads = {thread.name for thread in threading.enumerate()} - baseline - {thread.name}
    assert not [name for name in new_threads if not name.startswith("es-connect")], new_threads
    with eventservice.Publisher() as other:
        assert other.publish("NOBODY", 1) == 0  # served while the first publisher is parked
    slow.release.set()
    thread.join(WAIT)
    assert returned == list(range(6))
    assert [event.msg for event in slow.take(6)] == list(range(6))


def test_full_queue_drop_policy_never_blocks_and_drops_for_slow_subscriber_only(start_es, gated, collectors):
    """Drop policy: publishes return at once; the slow subscriber gets the oldest events, the fast one all.

    The publisher goes in step with the fast subscriber (each publish waits until the fast one has the
    previous event), so the fast one's queue never fills, however the machine schedules the threads.
    """
    queuesize = 20
    running = start_es(queuesize=queuesize, blockqueue=False)
    slow = gated()
    fast = collectors()
    slow.subscribe("DROP")
    fast.subscribe("DROP")
    count = 60
    publisher = eventservice.Publisher()
    publisher.publish("DROP", 0)
    assert slow.inside.wait(WAIT)
    fast_got = messages(fast.take(1))

    def publish_rest():
        for number in range(1, count):
            publisher.publish("DROP", number)
            fast_got.extend(messages(fast.take(1)))

    _, done, errors = in_thread(publish_rest)
    assert done.wait(WAIT), "publish() blocked under the drop policy"  # the slow one stays stuck until released
    assert no_errors(errors) == []
    assert fast_got == list(range(count))  # while the slow one is still stuck
    dropped = flat_stats(running.service)["dropped"]
    assert dropped > 0
    slow.release.set()
    kept = count - dropped
    assert 1 <= kept <= 1 + queuesize + 1, f"kept {kept} events with a queue of {queuesize}"
    assert messages(slow.take(kept)) == list(range(kept)), "the slow subscriber must get the oldest events"
    assert slow.nothing_more(0.2)
    assert fast.nothing_more(0.1)


def test_drop_oldest_policy_per_subscriber_keeps_the_newest_in_order(start_es, gated, collectors):
    """A subscriber given drop-oldest (setQueuePolicy) that is stuck gets, once released, the newest events
    in order; the drops are counted for it and in total; a fast subscriber gets everything."""
    running = start_es(queuesize=100)
    slow = gated()
    fast = collectors()
    slow.subscribe("NEWEST")
    fast.subscribe("NEWEST")
    running.service.setQueuePolicy(slow._callback, "drop-oldest", 5)
    publisher = eventservice.Publisher()
    publisher.publish("NEWEST", 0)
    assert slow.inside.wait(WAIT)  # stuck in event(0)
    count = 60
    for number in range(1, count):
        assert publisher.publish("NEWEST", number) == 2  # never blocks
    assert messages(fast.take(count)) == list(range(count))
    [entry] = [entry for entry in running.service.subscribers() if entry["uri"] == str(slow._callback._pyroUri)]
    assert (entry["policy"], entry["queuesize"], entry["queued"], entry["dropped"]) == ("drop-oldest", 5, 5, 54)
    assert running.service.stats()["counters"]["dropped"] == 54
    slow.release.set()
    assert messages(slow.take(6)) == [0, 55, 56, 57, 58, 59]
    assert slow.nothing_more(0.2)


def test_slow_subscriber_does_not_delay_others(es, gated, collectors):
    """With one subscriber stuck in event(), another on the same subject still gets events promptly."""
    slow = gated()
    fast = collectors()
    slow.subscribe("ISO")
    fast.subscribe("ISO")
    publisher = eventservice.Publisher()
    publisher.publish("ISO", 0)
    assert slow.inside.wait(WAIT)
    for number in range(1, 4):
        assert publisher.publish("ISO", number) == 2
    # the slow one stays stuck until released below: had it delayed the fast one, this bounded wait would fail
    assert messages(fast.take(4)) == [0, 1, 2, 3]
    slow.release.set()
    assert messages(slow.take(4)) == [0, 1, 2, 3]


def test_slow_subscriber_does_not_delay_a_subscriber_later_in_the_same_publish(es, gated, collectors):
    """publish(['SLOW', 'FAST']) with the SLOW subscriber stuck: FAST still gets its events promptly."""
    slow = gated()
    fast = collectors()
    slow.subscribe("SLOW")
    fast.subscribe("FAST")
    publisher = eventservice.Publisher()
    assert publisher.publish(["SLOW", "FAST"], 0) == 2
    assert slow.inside.wait(WAIT)
    assert publisher.publish(["SLOW", "FAST"], 1) == 2
    assert messages(fast.take(2)) == [0, 1]  # the slow one stays stuck until released: a delay would be unbounded
    slow.release.set()
    assert messages(slow.take(2)) == [0, 1]


# -- dead subscribers ------------------------------------------------------------------


def test_dead_subscriber_is_removed_and_does_not_block_publishers(start_es, collectors):
    """A subscriber whose daemon is gone is dropped with all its subscriptions; publishers never wait for it."""
    running = start_es(queuesize=2)
    live = collectors()
    live.subscribe("DEAD.x")
    dead = collectors(listen=False)
    dead.subscribe(["DEAD.x", "ONLY.DEAD"])
    dead.subscribeMatch(r"^DEAD\.")
    assert flat_stats(running.service)["subscribers"] == 2
    dead._daemon.close()
    count = 20

    def publish_all():
        publisher = eventservice.Publisher()
        for number in range(count):
            publisher.publish("DEAD.x", number)

    _, done, errors = in_thread(publish_all)
    assert done.wait(WAIT), "publishers blocked by a dead subscriber"
    assert no_errors(errors) == []
    wait_until(lambda: flat_stats(running.service)["subscribers"] == 1, message="the dead subscriber's removal")
    stats = flat_stats(running.service)
    assert (stats["mailboxes"], stats["subscriptions_exact"], stats["subscriptions_pattern"]) == (1, 1, 0)
    assert eventservice.Publisher().publish("ONLY.DEAD", "x") == 0
    assert messages(live.take(count)) == list(range(count))


@pytest.mark.parametrize("threaded", [True, False], ids=["threaded", "single-threaded"])
def test_closed_subscriber_that_never_unsubscribed_is_removed(es, collectors, threaded):
    """A subscriber closed after receiving events, without unsubscribing, is dropped at a later publish."""
    live = collectors()
    live.subscribe("GONE")
    gone = collectors(listen=False)
    gone.setThreading(threaded)
    gone.listenInThread()
    with eventservice.Publisher().getES() as service:  # behind the skeleton's back: close() cannot unsubscribe
        service.subscribe("GONE", gone._callback)
    publisher = eventservice.Publisher()
    assert publisher.publish("GONE", "before") == 2
    assert messages(gone.take(1)) == ["before"]  # the ES now holds a connection to it
    gone.close()
    assert flat_stats(es.service)["subscribers"] == 2
    for number in range(5):
        publisher.publish("GONE", number)
    wait_until(lambda: flat_stats(es.service)["subscribers"] == 1, message="the closed subscriber's removal")
    assert publisher.publish("GONE", "after") == 1
    assert messages(live.take(7)) == ["before", 0, 1, 2, 3, 4, "after"]
    assert gone.nothing_more(0.2), "a closed subscriber's event() still ran"


SUBSCRIBER_SCRIPT = """
import eventservice

class Printer(eventservice.Subscriber):
    def event(self, event):
        print("got", event.msg, flush=True)

subscriber = Printer()
subscriber.subscribe(["KILLED", "KILLED.ONLY"])
subscriber.subscribeMatch("^KILL")
print("ready", flush=True)
subscriber.listen()
"""


def test_killed_subscriber_process_is_removed(nameserver, start_es, processes):
    """A subscriber process killed mid-stream is dropped at the next publish; publishers do not block."""
    running = start_es(queuesize=2)
    process = processes.spawn("-c", SUBSCRIBER_SCRIPT)
    read_line(process, expect="ready")
    publisher = eventservice.Publisher()
    assert publisher.publish("KILLED", 1) == 1
    read_line(process, expect="got 1")
    process.kill()
    process.wait(WAIT)

    def publish_more():
        for number in range(10):
            publisher.publish("KILLED", number)

    _, done, errors = in_thread(publish_more)
    assert done.wait(WAIT), "publishers blocked by a dead subscriber"
    assert no_errors(errors) == []
    wait_until(lambda: flat_stats(running.service)["subscribers"] == 0, message="the killed subscriber's removal")
    stats = flat_stats(running.service)
    assert (stats["mailboxes"], stats["subscriptions_exact"], stats["subscriptions_pattern"]) == (0, 0, 0)


STOPPABLE_SCRIPT = """
import eventservice

class Printer(eventservice.Subscriber):
    def event(self, event):
        print("got", event.msg[0], len(event.msg[1]), flush=True)

subscriber = Printer()
subscriber.subscribe("BIG")
print("ready", flush=True)
subscriber.listen()
"""


def test_stopped_subscriber_process_that_stops_reading_holds_up_nobody(nameserver, start_es, processes, collectors):
    """A SIGSTOPped subscriber process with multi-megabyte events queued (the ES's writes to it cannot
    complete) delays no other subscriber, and gets every event, in order, once it runs again."""
    start_es()
    process = processes.spawn("-c", STOPPABLE_SCRIPT)
    read_line(process, expect="ready")
    good = collectors()
    good.subscribe("BIG")
    publisher = eventservice.Publisher()
    assert publisher.publish("BIG", (0, "")) == 2
    read_line(process, expect="got 0 0")
    assert messages(good.take(1)) == [(0, "")]
    os.kill(process.pid, signal.SIGSTOP)
    try:
        big = "x" * (2 * 1024 * 1024)  # 8 of them are more than a socket buffer and than one Pyro5 message
        for number in range(1, 9):
            assert publisher.publish("BIG", (number, big)) == 2
        assert [msg[0] for msg in messages(good.take(8))] == list(range(1, 9))
    finally:
        os.kill(process.pid, signal.SIGCONT)
    for number in range(1, 9):
        read_line(process, expect=f"got {number} {len(big)}")


# -- abort ---------------------------------------------------------------------------


def never_wakes_by_itself(pyro_settings) -> None:
    """Make Pyro5's serving loops poll (re-check their loop condition) only after much longer than WAIT.

    Then a listen() that ends within a bounded wait of WAIT was ended by abort() itself, not by the loop
    noticing the abort at its next poll: no stopwatch needed to tell "promptly" from "eventually".
    """
    pyro_settings.POLLTIMEOUT = 6 * WAIT


@pytest.mark.parametrize("threaded", [True, False], ids=["threaded", "single-threaded"])
def test_abort_from_another_thread_ends_listen_promptly(es, collectors, pyro_settings, threaded):
    """abort() from another thread makes listen() return at once, not at the serving loop's next poll."""
    never_wakes_by_itself(pyro_settings)
    subscriber = collectors(listen=False)
    subscriber.setThreading(threaded)
    subscriber.subscribe("ABORT")
    listener = threading.Thread(target=subscriber.listen, daemon=True)
    listener.start()
    eventservice.Publisher().publish("ABORT", 1)
    assert messages(subscriber.take(1)) == [1]  # listen() is serving
    subscriber.abort()
    listener.join(WAIT)
    assert not listener.is_alive()


class SelfAborting(Collector):
    """Calls abort() from inside event() on the message 'stop'."""

    def event(self, event):
        super().event(event)
        if event.msg == "stop":
            self.abort()


@pytest.mark.parametrize("threaded", [True, False], ids=["threaded", "single-threaded"])
def test_abort_from_inside_event_ends_listen_promptly(es, own_subscribers, pyro_settings, threaded):
    """abort() called inside event() makes listen() return at once, not at the serving loop's next poll."""
    never_wakes_by_itself(pyro_settings)
    subscriber = own_subscribers(SelfAborting)
    subscriber.setThreading(threaded)
    subscriber.subscribe("SELF")
    listener = threading.Thread(target=subscriber.listen, daemon=True)
    listener.start()
    publisher = eventservice.Publisher()
    publisher.publish("SELF", "go on")
    assert messages(subscriber.take(1)) == ["go on"]
    publisher.publish("SELF", "stop")
    assert messages(subscriber.take(1)) == ["stop"]
    listener.join(WAIT)
    assert not listener.is_alive()


def test_listen_in_thread_delivers_and_stops_on_abort(es, own_subscribers, pyro_settings):
    """listenInThread() returns a running daemon thread that delivers events and ends on abort() at once."""
    never_wakes_by_itself(pyro_settings)
    subscriber = own_subscribers(Collector)
    subscriber.subscribe("BG")
    listener = subscriber.listenInThread()
    assert listener.is_alive() and listener.daemon
    eventservice.Publisher().publish("BG", "bg")
    assert messages(subscriber.take(1)) == ["bg"]
    subscriber.abort()
    listener.join(WAIT)
    assert not listener.is_alive()


# -- (un)subscribing from inside event() -----------------------------------------------


class Switcher(Collector):
    """On 'switch' it subscribes SECOND and unsubscribes FIRST, from inside event()."""

    def event(self, event):
        if event.msg == "switch":
            self.subscribe("SECOND")
            self.subscribeMatch(r"^THIRD\.")
            self.unsubscribe("FIRST")
        super().event(event)


@pytest.mark.parametrize("threaded", [True, False], ids=["threaded", "single-threaded"])
def test_subscribe_and_unsubscribe_inside_event(es, own_subscribers, threaded):
    """subscribe/subscribeMatch/unsubscribe called from event() work without deadlock."""
    subscriber = own_subscribers(Switcher)
    subscriber.setThreading(threaded)
    subscriber.subscribe("FIRST")
    subscriber.listenInThread()
    publisher = eventservice.Publisher()
    assert publisher.publish("FIRST", "switch") == 1
    assert messages(subscriber.take(1)) == ["switch"]  # event() finished its ES calls
    assert publisher.publish("FIRST", "gone") == 0
    assert publisher.publish("SECOND", "second") == 1
    assert publisher.publish("THIRD.x", "third") == 1
    assert messages(subscriber.take(2)) == ["second", "third"]
    assert subscriber.nothing_more(0.2)
