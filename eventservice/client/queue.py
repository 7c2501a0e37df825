"""Pull-style consumption: a Subscriber that fills a bounded local buffer, read with get(), for, async for.

The Subscriber's ``event()`` runs in its daemon's thread while the ES
delivers; here it puts each event into a bounded buffer and *waits* while the
buffer is full. The ES keeps one delivery in flight per subscriber, so a
program that does not keep up makes the ES's own queue for it fill, and the
ES's full-queue policy (block the publisher, or drop) acts there. Memory in
this process stays bounded by ``maxsize`` events.

asyncio readers never block their loop: a waiting ``get_async()`` parks an
``asyncio.Future`` of its own loop, and the delivering thread wakes it with
``loop.call_soon_threadsafe``. Events stay in the buffer until a reader takes
one on its loop, so cancelling a waiting reader loses nothing.
"""
from __future__ import annotations

import asyncio
import collections
import logging
import queue
import threading
import time
import typing as t

from Pyro5 import core

from ..core.event import Event
from .base import Subjects
from .subscriber import Subscriber

__all__ = ["QueueClosedError", "QueueSubscriber"]

log = logging.getLogger(__name__)

#: events the local buffer holds by default
DEFAULT_MAXSIZE = 100


class QueueClosedError(Exception):
    """The QueueSubscriber was closed: there is nothing more to get."""


class _Buffer:
    """A bounded FIFO of events: put() waits for room, get() waits for an event; both end on close()."""

    def __init__(self, maxsize: int) -> None:
        if not isinstance(maxsize, int) or isinstance(maxsize, bool) or maxsize < 1:
            raise ValueError(f"maxsize must be a whole number >= 1, not {maxsize!r}")
        self.maxsize = maxsize
        self.high_water = 0
        self.closed = False
        self._items: collections.deque[Event] = collections.deque()
        self._lock = threading.Lock()
        self._not_empty = threading.Condition(self._lock)
        self._not_full = threading.Condition(self._lock)
        self._async_waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = set()

    def __len__(self) -> int:
        return len(self._items)

    def put(self, event: Event) -> bool:
        """Append ``event``, waiting while the buffer is full; False (event discarded) once closed."""
        with self._lock:
            while len(self._items) >= self.maxsize and not self.closed:
                self._not_full.wait()
            if self.closed:
                return False
            self._items.append(event)
            self.high_water = max(self.high_water, len(self._items))
            self._not_empty.notify()
            self._wake_async()
        return True

    def take(self, timeout: float | None) -> Event:
        """The oldest event; queue.Empty after ``timeout`` seconds, QueueClosedError once closed."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while not self._items and not self.closed:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise queue.Empty
                self._not_empty.wait(remaining)
            return self._pop()

    def take_nowait_or_park(self, loop: asyncio.AbstractEventLoop) -> Event | asyncio.Future[None]:
        """The oldest event, or a Future of ``loop`` that is woken when there may be one."""
        with self._lock:
            if self._items or self.closed:
                return self._pop()
            waiter = (loop, loop.create_future())
            self._async_waiters.add(waiter)
            return waiter[1]

    def unpark(self, loop: asyncio.AbstractEventLoop, future: asyncio.Future[None]) -> None:
        with self._lock:
            self._async_waiters.discard((loop, future))

    def close(self) -> None:
        with self._lock:
            self.closed = True
            self._items.clear()
            self._not_empty.notify_all()
            self._not_full.notify_all()
            self._wake_async()

    def _pop(self) -> Event:  # with the lock held
        if self.closed:
            raise QueueClosedError("the QueueSubscriber is closed")
        event = self._items.popleft()
        self._not_full.notify()
        return event

    def _wake_async(self) -> None:  # with the lock held
        for loop, future in self._async_waiters:
            try:
                loop.call_soon_threadsafe(_set_done, future)
            except RuntimeError:  # that loop is closed: nobody waits there any more
                pass
        self._async_waiters.clear()


def _set_done(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class _Feeder(Subscriber):
    """The Subscriber inside a QueueSubscriber: event() fills the buffer."""

    def __init__(self, buffer: _Buffer, ident: str | None, esURI: str | core.URI | None,
                 nsHost: str | None, nsPort: int | None, queuePolicy: str | None, queueSize: int | None) -> None:
        super().__init__(ident, esURI, nsHost, nsPort, queuePolicy=queuePolicy, queueSize=queueSize)
        self._buffer = buffer

    def event(self, event: Event) -> None:
        if not self._buffer.put(event):
            log.debug("closed: discarded %s", event.subject)


class QueueSubscriber:
    """Receive events by pulling them: ``get()``, ``for event in sub``, ``async for event in sub``.

    :param subjects: exact subjects to subscribe to (a str or a list of str)
    :param patterns: regex patterns to subscribe to (as ``Subscriber.subscribeMatch``)
    :param ident: the passphrase the ES requires, if any
    :param esURI: the ES's URI; None finds it through the name server
    :param maxsize: most events held here; while full, deliveries wait, and the
        ES's queue for this subscriber and its full-queue policy take over
    :param nsHost: the name server's host (default: Pyro5's NS_HOST)
    :param nsPort: the name server's port (default: Pyro5's NS_PORT)
    :param queuePolicy, queueSize: ask the ES for this full-queue policy and
        size for this subscriber, as ``Subscriber`` does (e.g. "drop-oldest": a
        reader that falls behind loses old events instead of slowing publishers)

    The constructor connects to the ES (a name-server lookup unless ``esURI``
    is given, one connect), makes one subscribe call per kind of subscription
    and starts the listening thread: a few round trips, milliseconds on a LAN,
    bounded by Pyro5's timeouts. It raises NamingError or PassphraseError like
    ``Subscriber``. Inside a running event loop that is a short blocking pause;
    ``eventservice.client.aio.Subscriber`` does all of it in a thread instead.

    Use it in ``with`` / ``async with`` or call ``close()`` (``aclose()``):
    that leaves the ES, discards what is still buffered, and makes every
    waiting ``get()`` raise QueueClosedError and every iteration stop.

    If the program takes nothing for longer than the ES's delivery timeout
    (default 30 s), the ES drops this subscriber as unresponsive; the
    heartbeat (``Subscriber.heartbeat``) then subscribes it again.
    """

    def __init__(self, subjects: Subjects | None = None, patterns: Subjects | None = None, ident: str | None = None,
                 esURI: str | core.URI | None = None, maxsize: int = DEFAULT_MAXSIZE,
                 nsHost: str | None = None, nsPort: int | None = None,
                 queuePolicy: str | None = None, queueSize: int | None = None) -> None:
        self._buffer = _Buffer(maxsize)
        self._subscriber = _Feeder(self._buffer, ident, esURI, nsHost, nsPort, queuePolicy, queueSize)
        self._thread: threading.Thread | None = None
        try:
            if subjects:
                self._subscriber.subscribe(subjects)
            if patterns:
                self._subscriber.subscribeMatch(patterns)
            self._thread = self._subscriber.listenInThread()
        except BaseException:
            self.close()
            raise

    # -- subscriptions ---------------------------------------------------

    def subscribe(self, subjects: Subjects) -> None:
        """Also receive these exact subjects."""
        self._subscriber.subscribe(subjects)

    def subscribeMatch(self, patterns: Subjects) -> None:
        """Also receive subjects matching these regex patterns."""
        self._subscriber.subscribeMatch(patterns)

    def unsubscribe(self, subjects: Subjects) -> None:
        """Stop receiving these exact subjects and patterns."""
        self._subscriber.unsubscribe(subjects)

    # -- pulling ---------------------------------------------------------

    @property
    def maxsize(self) -> int:
        """The most events this subscriber holds locally."""
        return self._buffer.maxsize

    @property
    def high_water(self) -> int:
        """The most events the local buffer has held at once so far (never above ``maxsize``)."""
        return self._buffer.high_water

    @property
    def closed(self) -> bool:
        return self._buffer.closed

    def dropped_events(self) -> int:
        """How many events the ES dropped for this reader (see ``Subscriber.dropped_events``); one call to the ES."""
        return self._subscriber.dropped_events()

    def qsize(self) -> int:
        """Events waiting here now."""
        return len(self._buffer)

    def get(self, timeout: float | None = None) -> Event:
        """The next event; waits up to ``timeout`` seconds (None: until one comes).

        Raises queue.Empty when the time is up, QueueClosedError when closed.
        """
        return self._buffer.take(timeout)

    async def get_async(self, timeout: float | None = None) -> Event:
        """The next event, without blocking the running event loop.

        Raises queue.Empty after ``timeout`` seconds, QueueClosedError when closed.
        Cancelling it is safe: an event is only taken when it is returned.
        """
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            got = self._buffer.take_nowait_or_park(loop)
            if isinstance(got, Event):
                return got
            try:
                if deadline is None:
                    await got
                else:
                    await asyncio.wait_for(got, max(0.0, deadline - loop.time()))
            except asyncio.TimeoutError:
                raise queue.Empty from None
            finally:
                self._buffer.unpark(loop, got)

    def __iter__(self) -> t.Iterator[Event]:
        """Events as they come, until closed."""
        while True:
            try:
                yield self._buffer.take(None)
            except QueueClosedError:
                return

    def __aiter__(self) -> QueueSubscriber:
        return self

    async def __anext__(self) -> Event:
        try:
            return await self.get_async()
        except QueueClosedError:
            raise StopAsyncIteration from None

    # -- closing ---------------------------------------------------------

    def close(self) -> None:
        """Leave the ES, stop listening and wake every waiting reader (they get QueueClosedError)."""
        self._buffer.close()  # first: a delivery waiting for room returns, so the daemon can stop
        self._subscriber.close()
        if self._thread is not None:
            self._thread.join(5.0)

    async def aclose(self) -> None:
        """``close()`` in a worker thread, so the loop goes on meanwhile."""
        await asyncio.get_running_loop().run_in_executor(None, self.close)

    def __enter__(self) -> QueueSubscriber:
        return self

    def __exit__(self, *exc_info: t.Any) -> None:
        self.close()

    async def __aenter__(self) -> QueueSubscriber:
        return self

    async def __aexit__(self, *exc_info: t.Any) -> None:
        await self.aclose()
