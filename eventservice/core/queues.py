"""A subscriber's queue of events and what happens when it is full: block, drop or drop-oldest.

Pure and thread-safe; the delivery side (``server.delivery``) builds on it.
``put`` never blocks: under the blocking policy the event is queued anyway
(the accepted order must hold) and the caller learns that its publisher has
to wait, either in a thread (``wait_for_room``) or, on the event loop, by
parking the publisher's connection until ``on_room`` calls back.
"""
from __future__ import annotations

import collections
import collections.abc as c
import logging
import threading
import time
import typing as t

__all__ = ["BLOCK", "DROP", "DROP_OLDEST", "POLICIES", "Put", "SubscriberQueue", "check_policy", "check_queuesize"]

log = logging.getLogger(__name__)

BLOCK, DROP, DROP_OLDEST = "block", "drop", "drop-oldest"
#: the full-queue policies: block the publisher, drop the new event, drop the oldest queued event
POLICIES = (BLOCK, DROP, DROP_OLDEST)


class Put:
    """What ``SubscriberQueue.put`` did with an event."""

    QUEUED = 0  #: queued, within the queue's size
    FULL = 1  #: queued beyond the size (blocking policy): the publisher must wait for room
    DROPPED = 2  #: not queued: the queue is full and the policy drops new events
    REPLACED = 3  #: queued, and the oldest queued event dropped for it (drop-oldest)
    CLOSED = 4  #: not queued: the queue is closed


def check_policy(policy: t.Any) -> str:
    """``policy`` if it names a full-queue policy; ValueError naming the choices otherwise."""
    if policy not in POLICIES:
        raise ValueError(f"full-queue policy must be one of {', '.join(POLICIES)}; got {policy!r}")
    return t.cast(str, policy)


def check_queuesize(queuesize: t.Any, maximum: int) -> int:
    """``queuesize`` if it is an int from 1 to ``maximum``; ValueError naming the limit otherwise."""
    if isinstance(queuesize, bool) or not isinstance(queuesize, int) or not 1 <= queuesize <= maximum:
        raise ValueError(f"queuesize must be an integer from 1 to {maximum} (setting max_queuesize); "
                         f"got {queuesize!r}")
    return queuesize


class SubscriberQueue:
    """A bounded FIFO of events for one subscriber, with its full-queue policy and counters.

    :param key: the subscriber's identity (for logging)
    :param queuesize: events held before the policy applies
    :param policy: ``"block"``, ``"drop"`` or ``"drop-oldest"``
    ``lock`` guards the queue; subclasses keep their own scheduling state under it too.
    """

    __slots__ = (
        "_room_waiters",
        "closed",
        "delivered",
        "dropped",
        "events",
        "key",
        "last_delivery",
        "lock",
        "policy",
        "queuesize",
    )

    def __init__(self, key: str, queuesize: int, policy: str = BLOCK) -> None:
        self.key = key
        self.events: collections.deque[t.Any] = collections.deque()
        self.queuesize = queuesize
        self.policy = check_policy(policy)
        self.lock = threading.Condition(threading.Lock())
        self.closed = False
        self.delivered = 0  #: events the subscriber accepted
        self.dropped = 0  #: events the policy (or an encoding failure) dropped
        self.last_delivery: float | None = None  #: time.time() of the last accepted delivery
        self._room_waiters: list[c.Callable[[], None]] = []

    def __len__(self) -> int:
        return len(self.events)

    def put(self, event: t.Any) -> int:
        """Queue ``event`` without blocking; a ``Put`` code says what happened. Caller holds ``lock``."""
        if self.closed:
            return Put.CLOSED
        events = self.events
        if len(events) < self.queuesize:
            events.append(event)
            return Put.QUEUED
        policy = self.policy
        if policy == BLOCK:
            events.append(event)
            return Put.FULL
        self._count_drop()
        if policy == DROP:
            return Put.DROPPED
        while len(events) >= self.queuesize:  # drop-oldest: keeps the newest, in order
            events.popleft()
        events.append(event)
        return Put.REPLACED

    def take(self, most: int) -> list[t.Any]:
        """Remove and return up to ``most`` events from the front; wakes publishers waiting for room."""
        with self.lock:
            events = self.events
            batch = [events.popleft() for _ in range(min(len(events), most))]
            waiters = self._room_available()
        for waiter in waiters:
            waiter()
        return batch

    def put_back(self, events: list[t.Any]) -> None:
        """Return undelivered events to the front of the queue, in order."""
        if events:
            with self.lock:
                if not self.closed:
                    self.events.extendleft(reversed(events))

    def count_delivered(self, count: int) -> None:
        """Record that the subscriber accepted ``count`` events."""
        self.delivered += count
        self.last_delivery = time.time()

    def count_dropped(self, count: int) -> None:
        """Record ``count`` events dropped for a reason other than the policy (say, they cannot be encoded)."""
        with self.lock:
            for _ in range(count):
                self._count_drop()

    def has_room(self) -> bool:
        """True when the queue is within its size (or closed): a waiting publisher may go on."""
        return self.closed or len(self.events) <= self.queuesize

    def on_room(self, waiter: c.Callable[[], None]) -> bool:
        """Call ``waiter()`` once when the queue is back within its size; False (no call) if it is already."""
        with self.lock:
            if self.has_room():
                return False
            self._room_waiters.append(waiter)
            return True

    def wait_for_room(self, stopped: c.Callable[[], bool] = lambda: False) -> None:
        """Block until the queue is within its size, closed, or ``stopped()``."""
        with self.lock:
            while not self.has_room() and not stopped():
                self.lock.wait(1.0)

    def set_policy(self, policy: str, queuesize: int) -> None:
        """Change the policy and size (checked by the caller); a drop-oldest queue is trimmed to the new size."""
        with self.lock:
            self.policy = check_policy(policy)
            self.queuesize = queuesize
            if policy == DROP_OLDEST:
                while len(self.events) > queuesize:
                    self.events.popleft()
                    self._count_drop()
            waiters = self._room_available()
        for waiter in waiters:
            waiter()

    def close(self) -> None:
        """Discard the queued events and refuse new ones; releases waiting publishers."""
        with self.lock:
            self.closed = True
            self.events.clear()
            waiters = self._room_available()
        for waiter in waiters:
            waiter()

    def _room_available(self) -> list[c.Callable[[], None]]:
        """Wake threads waiting for room and hand back the loop's waiters (caller holds ``lock``)."""
        if not self.has_room():
            return []
        self.lock.notify_all()
        waiters, self._room_waiters = self._room_waiters, []
        return waiters

    def _count_drop(self) -> None:
        self.dropped += 1
        if self.dropped == 1:
            log.warning("queue of subscriber %s is full (%d events, policy %s): dropping events; "
                        "stats() and subscribers() count them", self.key, self.queuesize, self.policy)
        elif self.dropped % 10000 == 0:
            log.info("subscriber %s: %d events dropped so far", self.key, self.dropped)
