"""asyncio clients: a Publisher whose publishes are awaited, and a Subscriber read with ``async for``.

Like redis-py's split into ``redis`` and ``redis.asyncio``, these mirror the
synchronous skeletons for programs that run an event loop::

    from eventservice import aio

    async with aio.Publisher() as publisher:
        await publisher.publish("STOCKQUOTE.SUN", ("SUN", 22.5))

    async with aio.Subscriber(patterns=r"^STOCKQUOTE\\.") as quotes:
        async for event in quotes:
            print(event)

Nothing here blocks the loop: every call that talks to the Event Service
runs in a worker thread. Constructors only store their arguments; the
connection is made by ``connect()`` / ``async with`` (or the first call).
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import typing as t

from Pyro5 import core

from ..core.event import Event
from .base import Subjects
from .publisher import Publisher as SyncPublisher
from .queue import DEFAULT_MAXSIZE, QueueSubscriber

__all__ = ["Publisher", "Subscriber"]

_T = t.TypeVar("_T")


class Publisher:
    """Publishes from asyncio code: ``await publisher.publish(subjects, msg)``.

    Takes the arguments of ``eventservice.Publisher`` (ident, esURI, pipeline,
    nsHost, nsPort). One sender thread makes every call, so publishes reach
    the Event Service in the order ``publish()`` was called, whichever task
    awaits them and when. A full subscriber queue under the blocking policy
    holds up that thread, never the loop.
    """

    def __init__(self, ident: str | None = None, esURI: str | core.URI | None = None, pipeline: int = 0,
                 nsHost: str | None = None, nsPort: int | None = None) -> None:
        self._make = functools.partial(SyncPublisher, ident, esURI, pipeline, nsHost, nsPort)
        self._publisher: SyncPublisher | None = None
        self._sender = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="es-aio-publisher")
        self._closed = False

    def _connected(self) -> SyncPublisher:  # in the sender thread
        if self._publisher is None:
            self._publisher = self._make()
        return self._publisher

    def _submit(self, call: t.Callable[[SyncPublisher], _T]) -> asyncio.Future[_T]:
        if self._closed:
            raise RuntimeError("this Publisher is closed")
        return asyncio.wrap_future(self._sender.submit(lambda: call(self._connected())))

    def _disconnect(self) -> None:  # in the sender thread
        if self._publisher is not None:
            self._publisher.close()

    async def connect(self) -> None:
        """Find and connect to the Event Service now (NamingError, PassphraseError as the sync one)."""
        await self._submit(lambda publisher: None)

    def publish(self, subjects: Subjects, msg: t.Any) -> asyncio.Future[int | None]:
        """Publish ``msg`` under each subject; await the result (what ``Publisher.publish`` returns).

        The publish is queued when this is called, so the order of calls is
        the order of publishes. Cancelling the awaiting task does not take a
        queued publish back.
        """
        return self._submit(lambda publisher: publisher.publish(subjects, msg))

    async def flush(self, timeout: float | None = None) -> None:
        """Wait until every publish so far was accepted (pipelined mode; see ``Publisher.flush``)."""
        await self._submit(lambda publisher: publisher.flush(timeout))

    async def close(self) -> None:
        """Send what is queued, then disconnect; the sender thread ends."""
        if self._closed:
            return
        try:
            await asyncio.wrap_future(self._sender.submit(self._disconnect))
        finally:
            self._closed = True
            self._sender.shutdown(wait=False)

    async def __aenter__(self) -> Publisher:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: t.Any) -> None:
        await self.close()


class Subscriber:
    """Receives events in asyncio code: ``async for event in subscriber`` or ``await subscriber.get()``.

    Takes the arguments of ``QueueSubscriber`` (subjects, patterns, ident,
    esURI, maxsize, nsHost, nsPort, queuePolicy, queueSize) and is one underneath, built in a worker
    thread by ``connect()`` / ``async with``, so even connecting does not
    block the loop. Back-pressure is the QueueSubscriber's: at most
    ``maxsize`` events wait here; beyond that the ES's queue and its
    full-queue policy take over.
    """

    def __init__(self, subjects: Subjects | None = None, patterns: Subjects | None = None, ident: str | None = None,
                 esURI: str | core.URI | None = None, maxsize: int = DEFAULT_MAXSIZE,
                 nsHost: str | None = None, nsPort: int | None = None,
                 queuePolicy: str | None = None, queueSize: int | None = None) -> None:
        self._make = functools.partial(QueueSubscriber, subjects, patterns, ident, esURI, maxsize, nsHost, nsPort,
                                       queuePolicy, queueSize)
        self._queue: QueueSubscriber | None = None
        self._connecting: asyncio.Future[QueueSubscriber] | None = None

    async def connect(self) -> QueueSubscriber:
        """Connect and subscribe now (in a worker thread); returns the QueueSubscriber underneath."""
        if self._queue is not None:
            return self._queue
        if self._connecting is None:
            self._connecting = asyncio.get_running_loop().run_in_executor(None, self._make)
            self._connecting.add_done_callback(self._connected)
        return await asyncio.shield(self._connecting)  # a cancelled caller leaves the connect to finish

    def _connected(self, future: asyncio.Future[QueueSubscriber]) -> None:
        if not future.cancelled() and future.exception() is None:
            self._queue = future.result()
        self._connecting = None

    async def _call(self, method: t.Callable[[QueueSubscriber], _T]) -> _T:
        queue = await self.connect()
        return await asyncio.get_running_loop().run_in_executor(None, method, queue)

    async def subscribe(self, subjects: Subjects) -> None:
        """Also receive these exact subjects."""
        await self._call(lambda queue: queue.subscribe(subjects))

    async def subscribeMatch(self, patterns: Subjects) -> None:
        """Also receive subjects matching these regex patterns."""
        await self._call(lambda queue: queue.subscribeMatch(patterns))

    async def unsubscribe(self, subjects: Subjects) -> None:
        """Stop receiving these exact subjects and patterns."""
        await self._call(lambda queue: queue.unsubscribe(subjects))

    async def get(self, timeout: float | None = None) -> Event:
        """The next event; queue.Empty after ``timeout`` seconds, QueueClosedError once closed."""
        return await (await self.connect()).get_async(timeout)

    def __aiter__(self) -> Subscriber:
        return self

    async def __anext__(self) -> Event:
        return await (await self.connect()).__anext__()

    async def close(self) -> None:
        """Leave the ES and wake every waiting reader; also when a connect is still under way."""
        connecting = self._connecting
        if connecting is not None:
            try:
                await connecting
            except Exception:
                return  # the connect failed: nothing to close
        if self._queue is not None:
            await self._queue.aclose()

    async def __aenter__(self) -> Subscriber:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: t.Any) -> None:
        await self.close()
