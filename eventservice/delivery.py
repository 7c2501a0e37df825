"""Moving accepted events to subscribers: mailboxes and a bounded worker pool.

Every subscriber has a *mailbox*: a bounded FIFO of events. A mailbox with
events is handed to one delivery worker at a time, which sends everything
queued (up to ``batch_size``) in one call, so events reach a subscriber in the
order they were accepted, and a busy subscriber gets bigger batches instead of
more calls (adaptive batching). Workers are few on purpose: one while
deliveries are quick, more only while slow subscribers hold them, up to
``delivery_workers``; the ES never runs a thread per subscriber.

Subscribers whose object exposes ``events(list)`` (the ``Subscriber``
skeleton) get one call per batch; plain callback objects get their
``event(event)`` calls bundled in one Pyro5 batch round trip.

A subscriber whose delivery fails for a transport reason (refused, reset,
timed out, passphrase refused) is reported through ``on_dead`` and its
mailbox closed; a publisher blocked on its full mailbox is released.
"""
from __future__ import annotations

import collections
import collections.abc as c
import errno
import logging
import queue
import threading
import time
import typing as t

from Pyro5 import errors
from Pyro5.client import BatchProxy

from .config import Settings
from .event import Event

__all__ = ["Dispatcher", "Mailbox", "WireEvent"]

log = logging.getLogger("eventservice.delivery")

#: how often the watchdog looks for stuck workers, seconds
WATCH_SECONDS = 0.005
#: a worker held this long by one delivery counts as stuck
STALL_SECONDS = 0.005
#: an extra worker idle this long retires
IDLE_SECONDS = 5.0
#: most threads that connect to subscribers, in parallel, apart from the delivery workers
CONNECTORS = 64

#: an accepted event as queued and sent to batch-aware subscribers: (subject, msg, time)
WireEvent = tuple[str, t.Any, float]


class Mailbox:
    """One subscriber's queue and delivery state."""

    __slots__ = ("key", "uri", "batch_aware", "events", "condition", "scheduled", "closed",
                 "proxy", "delivered", "dropped")

    def __init__(self, key: str, uri: t.Any) -> None:
        self.key = key
        self.uri = uri
        self.batch_aware = False  # learnt from the subscriber's metadata when connecting
        self.events: collections.deque[WireEvent] = collections.deque()
        self.condition = threading.Condition(threading.Lock())
        self.scheduled = False  # queued for, or held by, a worker
        self.closed = False
        self.proxy: t.Any = None
        self.delivered = self.dropped = 0


class Dispatcher:
    """Per-subscriber mailboxes served by a bounded pool of delivery threads.

    :param settings: queue size, full-queue policy, pool size, batch size, timeout
    :param make_proxy: builds the proxy used to reach a subscriber URI
    :param on_dead: called as ``f(key, error)`` (from a worker) when a subscriber is unreachable
    """

    def __init__(
        self,
        settings: Settings,
        make_proxy: c.Callable[[t.Any], t.Any],
        on_dead: c.Callable[[str, Exception], None],
    ) -> None:
        self._settings = settings
        self._make_proxy = make_proxy
        self._on_dead = on_dead
        self._mailboxes: dict[str, Mailbox] = {}
        self._ready: queue.SimpleQueue[Mailbox | None] = queue.SimpleQueue()
        self._pool_lock = threading.Lock()
        self._workers: list[threading.Thread] = []
        self._busy_since: dict[int, float] = {}  # worker thread id -> when its current delivery began
        self._deliveries_started = threading.Event()
        self._to_connect: collections.deque[Mailbox] = collections.deque()
        self._connect_wanted = threading.Condition(threading.Lock())
        self._connectors: list[threading.Thread] = []
        self._idle_connectors = 0
        self._stopped = False
        self.dropped = 0

    # -- membership ------------------------------------------------------

    def open(self, key: str, uri: t.Any) -> Mailbox:
        """The mailbox of ``key``, created on first use."""
        with self._pool_lock:
            mailbox = self._mailboxes.get(key)
            if mailbox is None:
                mailbox = self._mailboxes[key] = Mailbox(key, uri)
            return mailbox

    def close(self, key: str) -> bool:
        """Discard ``key``'s mailbox and queued events; wakes publishers blocked on it."""
        with self._pool_lock:
            mailbox = self._mailboxes.pop(key, None)
        if mailbox is None:
            return False
        with mailbox.condition:
            mailbox.closed = True
            mailbox.events.clear()
            mailbox.condition.notify_all()
            if not mailbox.scheduled:
                self._release_proxy(mailbox)
        return True

    # -- publishing ------------------------------------------------------

    def post(self, key: str, event: WireEvent) -> Mailbox | None:
        """Queue ``event`` for ``key`` without blocking; the mailbox if queued, None if not.

        Under the blocking policy the event is queued even when the mailbox is
        full, so the accepted order holds; the caller then ``wait_for_room``
        (after releasing its own locks) for mailboxes that ``is_over_full``.
        """
        mailbox = self._mailboxes.get(key)
        if mailbox is None:
            return None
        settings = self._settings
        with mailbox.condition:
            if mailbox.closed:
                return None
            if len(mailbox.events) >= settings.queuesize and not settings.blockqueue:
                mailbox.dropped += 1
                self.dropped += 1
                if mailbox.dropped == 1 or mailbox.dropped % 1000 == 0:
                    log.warning("queue of subscriber %s is full (%d events): dropped %d events so far",
                                key, settings.queuesize, mailbox.dropped)
                return None
            mailbox.events.append(event)
            if not mailbox.scheduled:
                mailbox.scheduled = True
                self._schedule(mailbox)
        return mailbox

    def is_over_full(self, mailbox: Mailbox) -> bool:
        """True if ``mailbox`` holds more than its size (only possible under the blocking policy)."""
        return len(mailbox.events) > self._settings.queuesize

    def wait_for_room(self, mailboxes: c.Iterable[Mailbox]) -> None:
        """Block until each mailbox is back within its size (or closed)."""
        limit = self._settings.queuesize
        for mailbox in mailboxes:
            with mailbox.condition:
                while len(mailbox.events) > limit and not mailbox.closed and not self._stopped:
                    mailbox.condition.wait(1.0)

    # -- workers ---------------------------------------------------------
    #
    # One worker serves every mailbox in turn while deliveries are quick: the
    # fewer the workers, the more events wait per subscriber, the bigger the
    # batches and the cheaper each event. A watchdog adds a worker only when
    # mailboxes are waiting and every worker has been stuck in one delivery for
    # longer than STALL_SECONDS (a slow or hung subscriber), up to
    # ``delivery_workers``; extra workers retire after IDLE_SECONDS idle.

    def _schedule(self, mailbox: Mailbox) -> None:
        self._ready.put(mailbox)
        if not self._workers:
            with self._pool_lock:
                if not self._workers and not self._stopped:
                    self._spawn_worker()
                    threading.Thread(target=self._watch, name="es-delivery-watchdog", daemon=True).start()
        elif self._all_workers_stuck():
            self._add_worker_if_stuck()

    def _spawn_worker(self) -> None:
        worker = threading.Thread(target=self._work, name=f"es-delivery-{len(self._workers) + 1}", daemon=True)
        self._workers.append(worker)
        worker.start()

    def _all_workers_stuck(self) -> bool:
        busy = list(self._busy_since.values())
        return bool(busy) and len(busy) >= len(self._workers) and time.monotonic() - max(busy) > STALL_SECONDS

    def _add_worker_if_stuck(self) -> None:
        with self._pool_lock:
            if (self._all_workers_stuck() and len(self._workers) < self._settings.delivery_workers
                    and not self._stopped):
                log.debug("all %d delivery workers are held by slow subscribers; adding one", len(self._workers))
                self._spawn_worker()

    def _watch(self) -> None:
        while not self._stopped:
            if not self._busy_since:
                self._deliveries_started.wait(IDLE_SECONDS)  # nothing to watch: sleep until a delivery starts
                self._deliveries_started.clear()
                continue
            time.sleep(WATCH_SECONDS)
            if not self._ready.empty() and self._all_workers_stuck():
                self._add_worker_if_stuck()

    def _work(self) -> None:
        batch_size = self._settings.batch_size
        me = threading.get_ident()
        while True:
            try:
                mailbox = self._ready.get(timeout=IDLE_SECONDS)
            except queue.Empty:
                with self._pool_lock:
                    if len(self._workers) > 1:  # the first worker stays
                        self._workers.remove(threading.current_thread())
                        return
                continue
            if mailbox is None:
                return
            if mailbox.proxy is None:
                self._start_connecting(mailbox)  # comes back to the ready queue when connected
                continue
            self._busy_since[me] = time.monotonic()
            if not self._deliveries_started.is_set():
                self._deliveries_started.set()
            try:
                with mailbox.condition:
                    events = mailbox.events
                    count = min(len(events), batch_size)
                    batch = [events.popleft() for _ in range(count)]
                    mailbox.condition.notify_all()
                if batch and not mailbox.closed:
                    self._deliver(mailbox, batch)
            except Exception:  # a bug here must not kill the worker and strand the mailbox
                log.exception("unexpected error delivering to subscriber %s", mailbox.key)
            finally:
                with mailbox.condition:
                    if mailbox.events and not mailbox.closed:
                        self._ready.put(mailbox)  # back of the line: fair to the other subscribers
                    else:
                        mailbox.scheduled = False
                        if mailbox.closed:
                            self._release_proxy(mailbox)
                del self._busy_since[me]

    def _start_connecting(self, mailbox: Mailbox) -> None:
        with self._connect_wanted:
            self._to_connect.append(mailbox)
            if (len(self._to_connect) > self._idle_connectors and len(self._connectors) < CONNECTORS
                    and not self._stopped):
                connector = threading.Thread(target=self._connect_loop, name=f"es-connect-{len(self._connectors) + 1}",
                                             daemon=True)
                self._connectors.append(connector)
                connector.start()
            else:
                self._connect_wanted.notify()

    def _connect_loop(self) -> None:
        while True:
            with self._connect_wanted:
                self._idle_connectors += 1
                while not self._to_connect and not self._stopped:
                    if not self._connect_wanted.wait(IDLE_SECONDS) and not self._to_connect:
                        self._idle_connectors -= 1
                        self._connectors.remove(threading.current_thread())
                        return
                self._idle_connectors -= 1
                if self._stopped:
                    self._connectors.remove(threading.current_thread())
                    return
                mailbox = self._to_connect.popleft()
            self._connect(mailbox)

    def _connect(self, mailbox: Mailbox) -> None:
        """Connect to a subscriber (in a connector thread, so slow or not-yet-listening ones hold no worker)."""
        if mailbox.closed:
            with mailbox.condition:
                mailbox.scheduled = False
            return
        proxy = self._make_proxy(mailbox.uri)
        proxy._pyroTimeout = self._settings.delivery_timeout
        try:
            proxy._pyroBind()  # connects and learns the subscriber's methods
        except errors.PyroError as error:
            proxy._pyroRelease()
            self._fail(mailbox, error)
        except Exception:  # a bug here must not strand the mailbox
            log.exception("unexpected error connecting to subscriber %s", mailbox.key)
            proxy._pyroRelease()
        else:
            mailbox.batch_aware = "events" in proxy._pyroMethods
            # marshal keeps what the ES holds (tuples stay tuples) and is Pyro5's fastest serializer, but it
            # converts only top-level custom objects: the Events for plain callbacks need the configured one
            proxy._pyroSerializer = "marshal" if mailbox.batch_aware else None
            mailbox.proxy = proxy
        with mailbox.condition:
            if mailbox.proxy is not None and mailbox.events and not mailbox.closed:
                self._ready.put(mailbox)
            else:
                mailbox.scheduled = False
                if mailbox.closed:
                    self._release_proxy(mailbox)

    def _deliver(self, mailbox: Mailbox, batch: list[WireEvent]) -> None:
        proxy = mailbox.proxy
        proxy._pyroClaimOwnership()
        try:
            try:
                self._call(mailbox, proxy, batch)
            except errors.ConnectionClosedError as error:
                # most likely an idle connection the subscriber closed: try once on a new one
                log.debug("connection to subscriber %s was closed; reconnecting once: %s", mailbox.key, error)
                proxy._pyroRelease()
                self._call(mailbox, proxy, batch)
        except errors.PyroError as error:  # refused, reset, timed out, passphrase refused, no such object...
            self._fail(mailbox, error)
        else:
            mailbox.delivered += len(batch)

    def _call(self, mailbox: Mailbox, proxy: t.Any, batch: list[WireEvent]) -> None:
        if mailbox.batch_aware:
            try:
                proxy.events(batch)
            except (ValueError, TypeError) as error:
                if hasattr(error, "_pyroTraceback") or proxy._pyroSerializer != "marshal":
                    raise
                # marshal carries only plain values below the top level; a message holding a Pyro object
                # (a URI, an exception, an Event) needs the configured serializer: use it for this batch
                proxy._pyroSerializer = None
                try:
                    proxy.events(batch)
                finally:
                    proxy._pyroSerializer = "marshal"
            except errors.ProtocolError as error:  # refused before sending: over Pyro5's MAX_MESSAGE_SIZE
                if "too large" not in str(error) or len(batch) == 1:
                    raise
                half = len(batch) // 2
                self._call(mailbox, proxy, batch[:half])
                self._call(mailbox, proxy, batch[half:])
            return
        remaining = batch
        while remaining:
            calls = BatchProxy(proxy)
            for subject, msg, stamp in remaining:
                calls.event(Event(subject, msg, stamp))
            done = 0
            try:
                for _ in calls():
                    done += 1
                remaining = []
            except errors.PyroError:
                raise
            except Exception as error:
                if not hasattr(error, "_pyroTraceback"):
                    raise  # raised here, not by the subscriber: a bug, not the subscriber's business
                log.warning("subscriber %s raised %s from event(); continuing", mailbox.key, error)
                remaining = remaining[done + 1:]

    def _fail(self, mailbox: Mailbox, error: Exception) -> None:
        self._release_proxy(mailbox)
        if _out_of_file_descriptors(error):
            # our shortage, not the subscriber's death: keep it and its events; the next publish tries again
            log.error("cannot reach subscriber %s: this process is out of file descriptors (%s); "
                      "raise the limit (ulimit -n)", mailbox.key, error)
            return
        if not mailbox.closed:
            self._on_dead(mailbox.key, error)

    @staticmethod
    def _release_proxy(mailbox: Mailbox) -> None:
        proxy, mailbox.proxy = mailbox.proxy, None
        if proxy is not None:
            proxy._pyroClaimOwnership()
            proxy._pyroRelease()

    # -- lifecycle -------------------------------------------------------

    def stats(self) -> dict[str, int]:
        """Counts for monitoring: mailboxes, queued events, events delivered to current subscribers, workers, drops."""
        with self._pool_lock:
            mailboxes = list(self._mailboxes.values())
            workers = len(self._workers)
        return {
            "mailboxes": len(mailboxes),
            "queued": sum(len(mailbox.events) for mailbox in mailboxes),
            "delivered": sum(mailbox.delivered for mailbox in mailboxes),
            "workers": workers,
            "dropped": self.dropped,
        }

    def stop(self, timeout: float = 5.0) -> None:
        """Discard every mailbox and stop the workers."""
        for key in list(self._mailboxes):
            self.close(key)
        with self._pool_lock:
            self._stopped = True
            workers = list(self._workers)
        for _ in workers:
            self._ready.put(None)
        for worker in workers:
            if worker is not threading.current_thread():
                worker.join(timeout)
        with self._connect_wanted:
            self._connect_wanted.notify_all()
        self._deliveries_started.set()


def _out_of_file_descriptors(error: BaseException | None) -> bool:
    while error is not None:
        if isinstance(error, OSError) and error.errno in (errno.EMFILE, errno.ENFILE):
            return True
        if "Too many open files" in str(error):
            return True
        error = error.__cause__ or error.__context__
    return False
