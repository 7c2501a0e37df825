"""Pull-style consumers: QueueSubscriber (get, for, async for) and the asyncio clients (eventservice.aio).

The buffer's own rules get fast unit tests without sockets; everything else
runs against a real name server and Event Service with real deliveries.
"""
from __future__ import annotations

import asyncio
import queue
import threading

import pytest

import eventservice
from conftest import WAIT, wait_until
from eventservice import aio
from eventservice.client.queue import QueueClosedError, QueueSubscriber, _Buffer
from eventservice.core.event import Event


def counter(stats: dict, name: str) -> int:
    """A counter from the ES's stats, flat (older) or grouped as {"counters": ..., "gauges": ...}."""
    return stats["counters"][name] if "counters" in stats else stats[name]


def take_waiting(sub: QueueSubscriber, received: list) -> list:
    """Append the messages of every event waiting in ``sub`` to ``received``; returns it."""
    try:
        while True:
            received.append(sub.get(timeout=0).msg)
    except queue.Empty:
        return received


def in_thread(target, *args) -> threading.Thread:
    thread = threading.Thread(target=target, args=args, daemon=True)
    thread.start()
    return thread


# -- the bounded buffer, no sockets -----------------------------------------


def test_buffer_is_fifo_and_get_times_out_with_queue_empty():
    buffer = _Buffer(3)
    for number in range(3):
        assert buffer.put(Event("S", number))
    assert [buffer.take(0).msg for _ in range(3)] == [0, 1, 2]
    with pytest.raises(queue.Empty):
        buffer.take(0.01)


def test_buffer_put_waits_while_full_and_resumes_when_taken():
    buffer = _Buffer(2)
    buffer.put(Event("S", 0))
    buffer.put(Event("S", 1))
    third_in = threading.Event()
    putter = in_thread(lambda: (buffer.put(Event("S", 2)), third_in.set()))
    assert not third_in.wait(0.2), "put() went past a full buffer"
    assert len(buffer) == 2
    assert buffer.take(0).msg == 0
    assert third_in.wait(WAIT)
    putter.join(WAIT)
    assert [buffer.take(0).msg for _ in range(2)] == [1, 2]
    assert buffer.high_water == 2


def test_buffer_close_wakes_getters_and_putters():
    empty, full = _Buffer(1), _Buffer(1)
    full.put(Event("S", 0))
    outcomes: list = []

    def get() -> None:
        try:
            empty.take(None)
        except QueueClosedError:
            outcomes.append("get: closed")

    threads = [in_thread(get), in_thread(lambda: outcomes.append(f"put: {full.put(Event('S', 1))}"))]
    empty.close()
    full.close()
    for thread in threads:
        thread.join(WAIT)
    assert sorted(outcomes) == ["get: closed", "put: False"]
    with pytest.raises(QueueClosedError):
        full.take(0)  # what was buffered is discarded


@pytest.mark.parametrize("maxsize", [0, -1, 1.5, True])
def test_buffer_refuses_a_bad_maxsize(maxsize):
    with pytest.raises(ValueError, match="maxsize"):
        _Buffer(maxsize)


def test_async_waiter_woken_from_another_thread_and_cancel_loses_nothing():
    buffer = _Buffer(4)

    async def main() -> list:
        loop = asyncio.get_running_loop()
        parked = buffer.take_nowait_or_park(loop)
        assert isinstance(parked, asyncio.Future)
        # a cancelled waiter takes nothing
        buffer.unpark(loop, parked)
        parked.cancel()
        second = buffer.take_nowait_or_park(loop)
        assert isinstance(second, asyncio.Future)
        await loop.run_in_executor(None, buffer.put, Event("S", "woken"))
        await asyncio.wait_for(second, WAIT)
        return [buffer.take(0).msg]

    assert asyncio.run(main()) == ["woken"]


# -- against a real Event Service --------------------------------------------


@pytest.fixture
def publisher(es):
    with eventservice.Publisher() as publisher:
        yield publisher


def test_get_with_timeout_then_real_delivery(es, publisher):
    with QueueSubscriber(subjects="QS.A", patterns=r"^QS\.P") as sub:
        with pytest.raises(queue.Empty):
            sub.get(timeout=0.05)
        publisher.publish("QS.A", ("one", 1))
        publisher.publish("QS.Pattern", "two")
        publisher.publish("QS.Other", "not subscribed")
        first, second = sub.get(timeout=WAIT), sub.get(timeout=WAIT)
        assert (first.subject, first.msg) == ("QS.A", ("one", 1))
        assert (second.subject, second.msg) == ("QS.Pattern", "two")
        with pytest.raises(queue.Empty):
            sub.get(timeout=0.05)
    assert sub.closed


def test_iteration_in_order_and_close_from_another_thread_ends_it(es, publisher):
    sub = QueueSubscriber(subjects=["QS.ITER"])
    try:
        for number in range(20):
            publisher.publish("QS.ITER", number)
        seen: list[int] = []
        for event in sub:
            seen.append(event.msg)
            if len(seen) == 20:
                break
        assert seen == list(range(20))

        ended = threading.Event()
        iterating = in_thread(lambda: ([None for _ in sub], ended.set()))
        assert not ended.wait(0.1)
        sub.close()
        assert ended.wait(WAIT), "close() did not end the iteration"
        iterating.join(WAIT)
    finally:
        sub.close()
    with pytest.raises(QueueClosedError):
        sub.get(timeout=0)


def test_subscriptions_can_change_after_construction(es, publisher):
    with QueueSubscriber() as sub:
        sub.subscribe("QS.LATER")
        sub.subscribeMatch(r"^QS\.M")
        publisher.publish(["QS.LATER", "QS.MATCHED"], 1)
        assert sorted(sub.get(timeout=WAIT).subject for _ in range(2)) == ["QS.LATER", "QS.MATCHED"]
        sub.unsubscribe("QS.LATER")
        publisher.publish("QS.LATER", 2)
        publisher.publish("QS.MATCHED", 3)
        assert sub.get(timeout=WAIT).msg == 3


def test_async_for_keeps_the_loop_running(es, publisher):
    """While `async for` waits, a ticker task goes on; the event is published only after it ticked 10 times."""

    async def main() -> tuple[int, int, list]:
        ticks = 0
        publish_at = 10

        async def ticker() -> None:
            nonlocal ticks
            async with aio.Publisher() as async_publisher:
                while True:
                    ticks += 1
                    if ticks == publish_at:
                        await async_publisher.publish("QS.ASYNC", "after ten ticks")
                    await asyncio.sleep(0.005)

        received: list = []
        sub = QueueSubscriber(subjects="QS.ASYNC")  # constructed inside the running loop
        ticking = asyncio.create_task(ticker())
        try:
            waiting_from = ticks
            async for event in sub:
                received.append((event.msg, ticks))
                break
        finally:
            ticking.cancel()
            await sub.aclose()
        return waiting_from, publish_at, received

    waiting_from, publish_at, received = asyncio.run(asyncio.wait_for(main(), WAIT))
    assert waiting_from == 0
    assert len(received) == 1 and received[0][0] == "after ten ticks"
    assert received[0][1] >= publish_at  # the ticker ran while the consumer waited


def test_get_async_timeout_cancel_and_close(es, publisher):
    async def main() -> list:
        outcomes: list = []
        async with QueueSubscriber(subjects="QS.AGET") as sub:
            try:
                await sub.get_async(timeout=0.05)
            except queue.Empty:
                outcomes.append("empty")
            waiter = asyncio.create_task(sub.get_async())
            await asyncio.sleep(0)
            waiter.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiter
            await asyncio.get_running_loop().run_in_executor(None, publisher.publish, "QS.AGET", "kept")
            outcomes.append((await sub.get_async(timeout=WAIT)).msg)  # the cancelled waiter took nothing
            stopping = asyncio.create_task(sub.get_async())
            await asyncio.sleep(0)
            await sub.aclose()
            try:
                await asyncio.wait_for(stopping, WAIT)
            except QueueClosedError:
                outcomes.append("closed")
        return outcomes

    assert asyncio.run(main()) == ["empty", "kept", "closed"]


def test_slow_consumer_back_pressure_reaches_the_es_drop_policy(start_es):
    """Nobody reads: the local buffer stays at its bound, the ES's tiny queue fills, and the ES drops."""
    start_es(queuesize=5, blockqueue=False)
    total = 200
    with eventservice.Publisher() as publisher, QueueSubscriber(subjects="QS.SLOW", maxsize=3) as sub:
        es = publisher.getES()
        for number in range(total):
            publisher.publish("QS.SLOW", number)  # never blocks under the drop policy
        wait_until(lambda: counter(es.stats(), "dropped") > 0, message="the ES dropping for the slow consumer")
        wait_until(lambda: sub.qsize() == sub.maxsize == 3, message="the local buffer full")
        received: list[int] = []
        wait_until(lambda: len(take_waiting(sub, received)) + counter(es.stats(), "dropped") == total,
                   message="every event either received or dropped")
        es._pyroRelease()
    assert received == sorted(received) and len(set(received)) == len(received)
    assert 3 <= len(received) < total
    assert sub.high_water == 3  # never above the bound


def test_a_reader_that_asks_for_drop_oldest_never_slows_publishers_and_learns_its_losses(start_es):
    """queuePolicy="drop-oldest" on a blocking ES: publishing never waits for the reader that does not read;
    dropped_events() tells the reader what it lost, and what it keeps is the newest, in order."""
    start_es(queuesize=5)  # the ES blocks by default: only this reader's own policy lets publishers through
    total = 200
    with eventservice.Publisher() as publisher, \
            QueueSubscriber(subjects="QS.OLDEST", maxsize=3, queuePolicy="drop-oldest", queueSize=5) as sub:
        for number in range(total):
            publisher.publish("QS.OLDEST", number)  # would park at the full queue under "block"
        received: list[int] = []
        wait_until(lambda: take_waiting(sub, received)[-1:] == [total - 1], message="the newest event at the reader")
        dropped = sub.dropped_events()
    assert received == sorted(received) and len(received) + dropped == total and dropped > 0, (received, dropped)


def test_aio_publisher_keeps_call_order_and_aio_subscriber_receives(es):
    async def main() -> list:
        async with aio.Subscriber(subjects="QS.ORDER", maxsize=10) as sub, aio.Publisher() as publisher:
            results = await asyncio.gather(*(publisher.publish("QS.ORDER", number) for number in range(100)))
            assert results == [1] * 100  # one subscriber queued each
            received = []
            async for event in sub:
                received.append(event.msg)
                if len(received) == 100:
                    break
            with pytest.raises(queue.Empty):
                await sub.get(timeout=0.05)
            return received

    assert asyncio.run(asyncio.wait_for(main(), WAIT * 3)) == list(range(100))


def test_aio_errors_come_from_the_await(nameserver):
    """No ES registered: the constructors do not fail; connect() raises NamingError."""
    from Pyro5.errors import NamingError

    async def main() -> list[str]:
        failures = []
        publisher = aio.Publisher()
        with pytest.raises(NamingError, match="no Event Service is registered"):
            await publisher.publish("X", 1)
        await publisher.close()
        failures.append("publisher")
        subscriber = aio.Subscriber(subjects="X")
        with pytest.raises(NamingError, match="no Event Service is registered"):
            await subscriber.connect()
        await subscriber.close()
        failures.append("subscriber")
        return failures

    assert asyncio.run(main()) == ["publisher", "subscriber"]


def test_aio_publish_held_up_by_a_full_queue_does_not_block_the_loop(start_es):
    """Blocking policy, queue full: the awaited publish waits in the sender thread while a ticker goes on."""
    running = start_es(queuesize=1)

    def stuck() -> bool:  # one delivery in flight and nothing queued behind it
        stats = running.service.stats()
        figures = stats.get("gauges", stats)
        return (figures["in_flight"], figures["queued"]) == (1, 0)

    async def main() -> tuple[int, list]:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.005)

        async with QueueSubscriber(subjects="QS.HELD", maxsize=1) as sub, aio.Publisher() as publisher:
            await publisher.publish("QS.HELD", 1)  # into the local buffer
            await publisher.publish("QS.HELD", 2)  # in flight, waiting for room there
            await asyncio.get_running_loop().run_in_executor(None, wait_until, stuck)
            await publisher.publish("QS.HELD", 3)  # the ES's queue is full now
            held = publisher.publish("QS.HELD", 4)  # waits for room
            ticking = asyncio.create_task(ticker())
            while ticks < 20:  # the loop runs while the publish is held up
                await asyncio.sleep(0.005)
            assert not held.done()
            ticks_while_held = ticks
            received = [(await sub.get_async(timeout=WAIT)).msg for _ in range(4)]  # makes room
            assert await asyncio.wait_for(held, WAIT) == 1
            ticking.cancel()
        return ticks_while_held, received

    ticks_while_held, received = asyncio.run(asyncio.wait_for(main(), WAIT * 2))
    assert ticks_while_held >= 20
    assert received == [1, 2, 3, 4]
