"""Moving accepted events to subscribers: mailboxes and one delivery loop.

Every subscriber has a *mailbox* (:mod:`.mailbox`): its queue, with the
full-queue policy, plus its connection and the call in flight. The
delivery loop (the Event Service's event loop, see ``drive_from``; or a
thread of its own when nothing drives it) sends a mailbox with events
everything queued (up to ``batch_size``) in one call, and keeps such calls in flight to many
subscribers at once: it writes the request of every ready subscriber, then
handles each reply as it arrives (a selector over the subscribers'
connections; requests and replies are :mod:`~eventservice.pyro.wire`'s). A
subscriber has one call in flight at a time, so events reach it in the order
they were accepted, and a busy subscriber gets bigger batches instead of more
calls. When rounds start, and how long they linger under load, is
:class:`~eventservice.core.rounds.Rounds`' decision. A slow or hung subscriber
holds only its own call, for at most ``delivery_timeout``; the ES never runs
a thread per subscriber.

Connecting (TCP connect, passphrase handshake, metadata) blocks, so it runs
in connector threads (:mod:`.connectors`) that hand the connection to the loop.

A subscriber whose delivery fails for a transport reason (refused, reset,
timed out, passphrase refused) is reported through ``on_dead`` and its
mailbox closed; a publisher waiting for room in it is released.
"""
from __future__ import annotations

import collections
import collections.abc as c
import errno
import logging
import selectors
import socket
import threading
import time
import typing as t

from Pyro5 import errors

from ..core.config import Settings
from ..core.queues import Put, check_policy, check_queuesize
from ..core.rounds import Rounds
from ..pyro import compat
from ..pyro.wire import PLAIN_CALLBACK, Reply, ReplyReader, delivery_method, encode_delivery
from .connectors import ConnectorPool
from .mailbox import Mailbox, WireEvent

__all__ = ["Dispatcher"]

log = logging.getLogger(__name__)

#: longest time between two looks for calls past their delivery timeout
EXPIRY_CHECK_SECONDS = 0.5
#: how long a connect at subscribe time may take before it is left to the first event
EAGER_CONNECT_SECONDS = 2.0


class Dispatcher:
    """Per-subscriber mailboxes served by one delivery loop (the event loop, or a thread) and connector threads.

    :param settings: queue size, full-queue policy, batch size, delivery timeout, connectors
    :param make_proxy: builds the proxy used to connect to a subscriber URI
    :param on_dead: called as ``f(key, error)`` (from the loop or a connector) when a subscriber is unreachable
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
        self._pool_lock = threading.Lock()
        self._stopped = False
        # counters over the dispatcher's life (they never decrease)
        self.delivered = 0
        self.dropped = 0
        self.delivery_timeouts = 0
        # the delivery loop, started with the first subscriber
        self._loop: threading.Thread | None = None
        self._ready: collections.deque[Mailbox] = collections.deque()  # mailboxes with events and no call in flight
        self._closing: collections.deque[Mailbox] = collections.deque()  # closed while held by the loop
        self._in_flight: set[Mailbox] = set()
        self._connected: set[Mailbox] = set()  # connections the loop watches
        self._rounds = Rounds(settings.linger)
        self._marshalled: dict[tuple[t.Any, ...], bytes] = {}  # batch -> its marshalled call, while starting a round
        self._selector: selectors.BaseSelector = selectors.DefaultSelector()
        self._wake_receiver, self._wake_sender = socket.socketpair()
        self._wake_receiver.setblocking(False)
        self._wake_sender.setblocking(False)
        self._selector.register(self._wake_receiver, selectors.EVENT_READ, None)
        self._sleeping = False  # the loop waits in select(): wake it through the socket pair
        self._next_expiry_check = 0.0
        # driven by an event loop (see drive_from) instead of a thread of its own
        self._driver_wake: c.Callable[[], None] | None = None
        self._driver_thread: int | None = None
        self._connectors = ConnectorPool(self._connect, settings.connectors)

    def drive_from(self, selector: selectors.BaseSelector, wake: c.Callable[[], None]) -> None:
        """Deliver from the caller's event loop instead of a thread of its own (call before any subscriber).

        The loop registers nothing itself: the dispatcher registers its subscriber
        connections in ``selector`` with their Mailbox as data; the loop passes
        their readiness to ``handle`` and calls ``run_due`` each time round,
        which returns how long it may then wait. ``wake()`` must make the loop
        go round (it is called from other threads only).
        """
        self._selector.unregister(self._wake_receiver)
        self._selector.close()
        self._wake_receiver.close()
        self._wake_sender.close()
        self._selector = selector
        self._driver_wake = wake

    # -- membership ------------------------------------------------------

    def open(self, key: str, uri: t.Any) -> Mailbox:
        """The mailbox of ``key``, created on first use."""
        with self._pool_lock:
            mailbox = self._mailboxes.get(key)
            if mailbox is not None:
                return mailbox
            policy = self._settings.full_queue
            mailbox = self._mailboxes[key] = Mailbox(key, uri, self._settings.queuesize, policy)
        # connect now (and have the loop running), so the first event waits for neither
        with mailbox.lock:
            mailbox.scheduled = True
        self._start_connecting(mailbox, eager=True)
        self._wake()
        return mailbox

    def close(self, key: str) -> bool:
        """Discard ``key``'s mailbox and queued events; releases publishers waiting on it."""
        with self._pool_lock:
            mailbox = self._mailboxes.pop(key, None)
        if mailbox is None:
            return False
        mailbox.close()
        with mailbox.lock:
            unwatched = not mailbox.scheduled and mailbox.sock is None
            if unwatched:
                self._release_proxy(mailbox)
        if not unwatched:  # the loop (or a connector) owns the connection; a call in flight is dropped now
            self._closing.append(mailbox)
            self._wake()
        return True

    def set_policy(self, key: str, policy: str, queuesize: int | None) -> None:
        """Give subscriber ``key`` its own full-queue policy and queue size (ValueError naming a bad value)."""
        policy = check_policy(policy)
        size = self._settings.queuesize if queuesize is None else check_queuesize(queuesize,
                                                                                self._settings.max_queuesize)
        mailbox = self._mailboxes.get(key)
        if mailbox is None:
            raise ValueError(f"subscriber {key} has no subscriptions here; subscribe first")
        mailbox.set_policy(policy, size)

    def mailboxes(self) -> list[Mailbox]:
        """The current mailboxes (a snapshot)."""
        with self._pool_lock:
            return list(self._mailboxes.values())

    # -- publishing ------------------------------------------------------

    def post(self, keys: c.Iterable[str], event: WireEvent, over_full: list[Mailbox]) -> int:
        """Queue ``event`` for each of ``keys`` without blocking; how many queued it.

        Under the blocking policy the event is queued even when a mailbox is
        full, so the accepted order holds; such mailboxes are added to
        ``over_full``: the caller waits for room in them (``wait_for_room``,
        or parks its client) once it released its own locks.
        """
        mailboxes = self._mailboxes
        ready = self._ready
        queued = 0
        for key in keys:
            mailbox = mailboxes.get(key)
            if mailbox is None:
                continue
            with mailbox.lock:
                done = mailbox.put(event)
                if done >= Put.DROPPED:
                    if done == Put.CLOSED:
                        continue
                    self.dropped += 1
                    if done == Put.DROPPED:
                        continue
                elif done == Put.FULL:
                    over_full.append(mailbox)
                if not mailbox.scheduled:
                    mailbox.scheduled = True
                    ready.append(mailbox)
            queued += 1
        if ready:
            self._wake()
        return queued

    def wait_for_room(self, mailboxes: c.Iterable[Mailbox]) -> None:
        """Block until each mailbox is back within its size (or closed)."""
        for mailbox in mailboxes:
            mailbox.wait_for_room(lambda: self._stopped)

    # -- the delivery loop (see core.rounds for when rounds start) ----------

    def _wake(self) -> None:
        """Make the loop look at ``_ready`` and ``_closing`` (starting it on first use)."""
        if self._driver_wake is not None:
            if threading.get_ident() != self._driver_thread:  # the loop itself looks after each pass
                self._driver_wake()
            return
        if self._loop is None:
            with self._pool_lock:
                if self._loop is None and not self._stopped:
                    self._loop = threading.Thread(target=self._run, name="es-delivery", daemon=True)
                    self._loop.start()
        elif self._sleeping:
            self._sleeping = False
            try:
                self._wake_sender.send(b"\0")
            except OSError:  # the pipe is full of wake-ups already, or the dispatcher is stopped
                pass

    def _run(self) -> None:
        """The delivery thread, when no event loop drives the dispatcher."""
        select = self._selector.select
        while not self._stopped:
            try:
                timeout = self.run_due(time.monotonic())
                ready = select(timeout)
                self._sleeping = False
                for key, mask in ready:
                    if key.data is None:
                        self._drain_wake_ups()
                    else:
                        self.handle(key.data, mask)
            except Exception:  # a bug here must not stop every delivery for good
                log.exception("unexpected error in the delivery loop")
                time.sleep(0.01)
        self._disconnect_all()

    def run_due(self, now: float) -> float | None:
        """Start a round if one is due, drop closed mailboxes, expire late calls; how long the loop may
        then wait for sockets (None: until something happens)."""
        self._driver_thread = threading.get_ident()
        rounds = self._rounds
        if self._ready and now >= rounds.next_start():
            rounds.begin(now)
            self._start_ready_calls()
            rounds.calls_started()
        if self._closing:
            self._drop_closed()
        if now >= self._next_expiry_check:
            if self._in_flight:
                self._expire_calls(now)
            self._next_expiry_check = now + EXPIRY_CHECK_SECONDS
        next_round = rounds.next_start()
        round_open = rounds.is_open(now)
        timeout: float | None
        if round_open:  # it ends at its last reply, or at its end time at the latest
            timeout = rounds.ends() - now
        elif self._ready:  # lingering
            timeout = max(0.0, next_round - now)
        elif self._in_flight:
            timeout = max(0.0, self._next_expiry_check - now)
        else:
            timeout = None
        # set before the caller waits, so a post() from another thread in between always wakes it (an open
        # round, or a linger with mailboxes ready, looks at the ready queue when it ends: no wake-ups needed)
        self._sleeping = not round_open and not (self._ready and now < next_round)
        if (self._ready and now >= next_round) or self._closing or self._stopped:
            timeout = 0.0
        return timeout

    def handle(self, mailbox: Mailbox, mask: int) -> None:
        """A subscriber connection is ready: go on writing its request, or read its reply."""
        if mask & selectors.EVENT_WRITE and mailbox in self._in_flight:
            self._write(mailbox)
        if mask & selectors.EVENT_READ and mailbox.sock is not None:
            self._read(mailbox)

    def _disconnect_all(self) -> None:
        self._drop_closed()
        for mailbox in list(self._connected):
            self._end_call(mailbox)
            self._disconnect(mailbox)

    def _drain_wake_ups(self) -> None:
        try:
            while self._wake_receiver.recv(4096):
                pass
        except OSError:
            pass

    def _start_ready_calls(self) -> None:
        ready = self._ready
        try:
            for _ in range(len(ready)):  # this round's; whatever comes back meanwhile waits for the next
                mailbox = ready.popleft()
                if mailbox.closed:
                    self._after_call(mailbox)
                elif mailbox.proxy is None:
                    self._start_connecting(mailbox)  # comes back to the ready queue when connected
                else:
                    self._start_call(mailbox)
        finally:
            # keyed by the events' ids, valid only while the batches of this pass hold the events
            self._marshalled.clear()

    def _start_call(self, mailbox: Mailbox) -> None:
        batch = mailbox.take(self._settings.batch_size)
        request = self._encode(mailbox, batch) if batch else None
        if request is None:
            self._after_call(mailbox)
            return
        if mailbox.sock is None:  # a new connection: the loop watches it for as long as it is open
            mailbox.sock = mailbox.proxy._pyroConnection.sock
            self._selector.register(mailbox.sock, selectors.EVENT_READ, mailbox)
            self._connected.add(mailbox)
        mailbox.outgoing = memoryview(request)
        mailbox.reply = ReplyReader()
        mailbox.deadline = time.monotonic() + self._settings.delivery_timeout
        mailbox.round = self._rounds.number
        self._rounds.call_started(len(mailbox.batch))
        self._in_flight.add(mailbox)
        self._write(mailbox)

    def _encode(self, mailbox: Mailbox, batch: list[WireEvent]) -> bytes | None:
        """The request for ``batch`` (or for its head, the rest put back when too large); None if nothing can go."""
        object_id = mailbox.proxy._pyroConnection.objectId
        mailbox.seq = (mailbox.seq + 1) & 0xFFFF
        while True:
            try:
                request = encode_delivery(object_id, mailbox.method, batch, mailbox.seq, self._marshalled)
            except errors.ProtocolError as error:  # over Pyro5's MAX_MESSAGE_SIZE
                if len(batch) > 1:
                    half = len(batch) // 2
                    mailbox.put_back(batch[half:])
                    del batch[half:]
                    continue
                log.error("event %r for subscriber %s cannot be sent: %s; skipped", batch[0][0], mailbox.key, error)
            except Exception:  # the ES deserialized these messages, so this is a bug, not bad input
                log.exception("cannot encode %d events for subscriber %s; skipped", len(batch), mailbox.key)
            else:
                mailbox.batch = batch
                return request
            mailbox.count_dropped(len(batch))
            self.dropped += len(batch)
            return None

    def _write(self, mailbox: Mailbox) -> None:
        try:
            done = mailbox.send()
        except OSError as error:
            self._call_failed(mailbox, errors.ConnectionClosedError(f"sending: {error}"))
            return
        self._watch_writable(mailbox, not done)  # a subscriber reading slowly: go on when its socket takes more

    def _watch_writable(self, mailbox: Mailbox, writable: bool) -> None:
        if mailbox.writing != writable:
            mailbox.writing = writable
            events = selectors.EVENT_READ | selectors.EVENT_WRITE if writable else selectors.EVENT_READ
            self._selector.modify(t.cast(socket.socket, mailbox.sock), events, mailbox)

    def _read(self, mailbox: Mailbox) -> None:
        if mailbox.reply is None:  # nothing asked: the subscriber closed an idle connection (or talks nonsense)
            if mailbox.unasked_input():
                log.debug("subscriber %s closed its idle connection (or sent junk)", mailbox.key)
                self._disconnect(mailbox)
            return
        try:
            reply = mailbox.receive()
        except errors.ConnectionClosedError as error:
            self._call_failed(mailbox, error)
        except Exception as error:  # not a Pyro5 reply, or one that does not deserialize
            self._call_failed(mailbox, errors.ProtocolError(f"bad reply from subscriber: {error}"), retry=False)
        else:
            if reply is not None:
                self._call_done(mailbox, reply)

    def _call_done(self, mailbox: Mailbox, reply: Reply) -> None:
        batch = mailbox.batch
        self._end_call(mailbox)
        error: t.Any = None
        handled = len(batch)
        if reply.seq != mailbox.seq:
            error = errors.ProtocolError(f"reply sequence out of sync: {reply.seq} for {mailbox.seq}")
        elif reply.raised:
            error = reply.value
        elif mailbox.method == PLAIN_CALLBACK and reply.value and compat.is_batch_exception(reply.value[-1]):
            error = compat.batch_exception(reply.value[-1])  # a Pyro5 batch stops at the first event() that raised
            handled = len(reply.value)
            mailbox.put_back(batch[handled:])
        if isinstance(error, errors.PyroError):  # the subscriber's daemon refused the call (e.g. unknown object)
            self._disconnect(mailbox)
            self._fail(mailbox, error)
        else:
            if error is not None:
                log.warning("subscriber %s raised %r from %s; continuing", mailbox.key, error,
                            f"{mailbox.method}()")
            mailbox.reconnected = False
            mailbox.count_delivered(handled)
            self.delivered += handled
        self._after_call(mailbox)

    def _call_failed(self, mailbox: Mailbox, error: errors.PyroError, retry: bool = True) -> None:
        batch = mailbox.batch
        replied = mailbox.reply is not None and mailbox.reply.started
        self._end_call(mailbox)
        self._disconnect(mailbox)
        if (retry and isinstance(error, errors.ConnectionClosedError) and not replied and not mailbox.reconnected
                and not mailbox.closed):
            # most likely an idle connection the subscriber closed: try once more on a new one
            log.debug("connection to subscriber %s was closed; reconnecting once: %s", mailbox.key, error)
            mailbox.reconnected = True
            mailbox.put_back(batch)
            self._start_connecting(mailbox)
            return
        self._fail(mailbox, error)
        self._after_call(mailbox)

    def _end_call(self, mailbox: Mailbox) -> None:
        if mailbox in self._in_flight:
            self._in_flight.remove(mailbox)
            self._rounds.call_ended(mailbox.round)
        self._watch_writable(mailbox, False)
        mailbox.batch = []
        mailbox.outgoing = memoryview(b"")
        mailbox.reply = None

    def _disconnect(self, mailbox: Mailbox) -> None:
        """Stop watching the mailbox's connection and close it (loop thread only)."""
        if mailbox.sock is not None:
            try:
                self._selector.unregister(mailbox.sock)
            except (KeyError, ValueError):
                pass
            self._connected.discard(mailbox)
            mailbox.sock = None
        self._release_proxy(mailbox)

    def _after_call(self, mailbox: Mailbox) -> None:
        """Queue the mailbox again if it has more to deliver; else it is no longer scheduled."""
        with mailbox.lock:
            if mailbox.events and not mailbox.closed:
                self._ready.append(mailbox)  # back of the line: fair to the other subscribers
                return
            mailbox.scheduled = False
        if mailbox.closed:
            self._disconnect(mailbox)

    def _drop_closed(self) -> None:
        while self._closing:
            mailbox = self._closing.popleft()
            self._end_call(mailbox)
            if mailbox.sock is not None:  # a connector's proxy is the connector's to release
                self._disconnect(mailbox)

    def _expire_calls(self, now: float) -> None:
        for mailbox in [mailbox for mailbox in self._in_flight if mailbox.deadline <= now]:
            timeout = self._settings.delivery_timeout
            self.delivery_timeouts += 1
            self._call_failed(mailbox, errors.TimeoutError(f"no reply within the delivery timeout ({timeout:g} s)"),
                              retry=False)

    # -- connecting ------------------------------------------------------

    def _start_connecting(self, mailbox: Mailbox, eager: bool = False) -> None:
        self._connectors.submit(mailbox, eager)

    def _connect(self, mailbox: Mailbox, eager: bool) -> None:
        """Connect to a subscriber (in a connector thread, so slow or not-yet-listening ones hold up nobody).

        An ``eager`` connect (at subscribe time) gives up sooner and quietly: the first event tries again.
        """
        if not mailbox.closed:
            proxy = self._make_proxy(mailbox.uri)
            proxy._pyroTimeout = min(EAGER_CONNECT_SECONDS, self._settings.delivery_timeout) if eager else \
                self._settings.delivery_timeout
            try:
                proxy._pyroBind()  # connects, proves the passphrase and learns the subscriber's methods
                proxy._pyroConnection.sock.setblocking(False)  # from now on the delivery loop's
            except errors.PyroError as error:
                proxy._pyroRelease()
                if eager:
                    log.debug("subscriber %s not reachable yet: %s", mailbox.key, error)
                else:
                    self._fail(mailbox, error)
            except Exception:  # a bug here must not strand the mailbox
                log.exception("unexpected error connecting to subscriber %s", mailbox.key)
                proxy._pyroRelease()
            else:
                mailbox.method = delivery_method(proxy._pyroMethods)
                mailbox.proxy = proxy
        with mailbox.lock:
            retry = eager and mailbox.proxy is None and mailbox.events and not mailbox.closed
            if retry:
                pass  # events came while the early connect failed: connect for them, as for any first event
            elif mailbox.proxy is not None and mailbox.events and not mailbox.closed:
                self._ready.append(mailbox)
                self._wake()
            else:
                mailbox.scheduled = False
                if mailbox.closed:
                    self._release_proxy(mailbox)
        if retry:
            self._start_connecting(mailbox)

    def _fail(self, mailbox: Mailbox, error: Exception) -> None:
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

    def stats(self) -> tuple[dict[str, int], dict[str, int]]:
        """(counters, gauges) for monitoring: delivered, dropped, delivery timeouts; queued events, the
        deepest queue, mailboxes connected and being connected, calls in flight, connector threads."""
        mailboxes = self.mailboxes()
        depths = [len(mailbox.events) for mailbox in mailboxes]
        counters = {"delivered": self.delivered, "dropped": self.dropped,
                    "delivery_timeouts": self.delivery_timeouts}
        gauges = {
            "queued": sum(depths),
            "deepest_queue": max(depths, default=0),
            "mailboxes": len(mailboxes),
            "connected": sum(mailbox.proxy is not None for mailbox in mailboxes),
            "connecting": self._connectors.busy(),
            "in_flight": len(self._in_flight),
            "connectors": self._connectors.size(),
        }
        return counters, gauges

    def stop(self, timeout: float = 5.0) -> None:
        """Discard every mailbox and stop the delivery loop and connectors."""
        for key in list(self._mailboxes):
            self.close(key)
        with self._pool_lock:
            self._stopped = True
            loop = self._loop
        if self._driver_wake is not None:  # the driving loop has stopped: its selector is its own to close
            self._connectors.stop()
            self._disconnect_all()
            return
        try:
            self._wake_sender.send(b"\0")
        except OSError:
            pass
        if loop is not None and loop is not threading.current_thread():
            loop.join(timeout)
        self._connectors.stop()
        if loop is None or not loop.is_alive():
            self._selector.close()
            self._wake_receiver.close()
            self._wake_sender.close()


def _out_of_file_descriptors(error: BaseException | None) -> bool:
    while error is not None:
        if isinstance(error, OSError) and error.errno in (errno.EMFILE, errno.ENFILE):
            return True
        if "Too many open files" in str(error):
            return True
        error = error.__cause__ or error.__context__
    return False
