"""Moving accepted events to subscribers: mailboxes, one delivery loop, connector threads.

Every subscriber has a *mailbox*: a bounded FIFO of events. One delivery loop
sends a mailbox with events everything queued (up to ``batch_size``) in one
call, and keeps such calls in flight to many subscribers at once: it writes
the request of every ready subscriber, then handles each reply as it arrives
(a selector over the subscribers' connections, see :mod:`.wire`). A
subscriber has one call in flight at a time, so events reach it in the order
they were accepted, and a busy subscriber gets bigger batches instead of more
calls (adaptive batching; under sustained load, deliveries also wait up to
``linger`` seconds so that each call carries more). A slow or hung subscriber
holds only its own call, for at most ``delivery_timeout``; the ES never runs a
thread per subscriber.

Connecting (TCP connect, passphrase handshake, metadata) blocks, so it runs
in connector threads (:mod:`.connectors`, up to ``connectors``) that hand the connection to the loop.

Subscribers whose object exposes ``events(list)`` (the ``Subscriber``
skeleton) get one call per batch; plain callback objects get their
``event(event)`` calls bundled in one Pyro5 batch call.

A subscriber whose delivery fails for a transport reason (refused, reset,
timed out, passphrase refused) is reported through ``on_dead`` and its
mailbox closed; a publisher blocked on its full mailbox is released.
"""
from __future__ import annotations

import collections
import collections.abc as c
import errno
import logging
import marshal
import selectors
import socket
import ssl
import threading
import time
import typing as t

from Pyro5 import config, core, errors

from ..core.config import Settings
from ..core.event import Event
from ..pyro.wire import (
    READ_SIZE,
    Reply,
    ReplyReader,
    encode_call,
    encode_marshal_call,
    marshal_call_tail,
)
from .connectors import ConnectorPool

__all__ = ["Dispatcher", "Mailbox", "WireEvent"]

log = logging.getLogger(__name__)

#: longest time between two looks for calls past their delivery timeout
EXPIRY_CHECK_SECONDS = 0.5
#: how long a connect at subscribe time may take before it is left to the first event
EAGER_CONNECT_SECONDS = 2.0
#: longest a round of calls holds back the next one (see Dispatcher._run)
ROUND_SECONDS = 0.001
#: a pause between rounds this long means the load is over: delivery no longer lingers
IDLE_ROUND_GAP = 0.1

_WOULD_BLOCK = (BlockingIOError, InterruptedError, ssl.SSLWantReadError, ssl.SSLWantWriteError)

#: an accepted event as queued and sent to batch-aware subscribers: (subject, msg, time)
WireEvent = tuple[str, t.Any, float]

#: how a subscriber takes events, best first: one marshalled batch (bytes), a batch, one event per call
MARSHALLED_BATCH, BATCH, PLAIN_CALLBACK = "marshalled_events", "events", "event"


class Mailbox:
    """One subscriber's queue, connection and call in flight."""

    __slots__ = ("key", "uri", "method", "events", "condition", "scheduled", "closed", "proxy",
                 "delivered", "dropped", "reconnected",
                 "seq", "batch", "sock", "outgoing", "writing", "reply", "deadline", "round")

    def __init__(self, key: str, uri: t.Any) -> None:
        self.key = key
        self.uri = uri
        self.method = PLAIN_CALLBACK  # how the subscriber takes events: learnt from its metadata when connecting
        self.events: collections.deque[WireEvent] = collections.deque()
        self.condition = threading.Condition(threading.Lock())
        self.scheduled = False  # waiting for, or held by, the delivery loop or a connector
        self.closed = False
        self.proxy: t.Any = None  # connected and handshaken; its socket then belongs to the loop
        self.delivered = self.dropped = 0
        self.reconnected = False  # the call in flight is a retry on a fresh connection
        # the call in flight (touched by the delivery loop only)
        self.seq = 0
        self.batch: list[WireEvent] = []
        self.sock: socket.socket | None = None  # the connection, while the delivery loop watches it
        self.outgoing = memoryview(b"")
        self.writing = False  # registered for writability: the request did not fit in the socket buffer
        self.reply: ReplyReader | None = None
        self.deadline = 0.0
        self.round = 0

    def put_back(self, events: list[WireEvent]) -> None:
        """Return undelivered events to the front of the queue, in order."""
        if events:
            with self.condition:
                if not self.closed:
                    self.events.extendleft(reversed(events))


class Dispatcher:
    """Per-subscriber mailboxes served by one delivery loop thread and a few connector threads.

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
        self.dropped = 0
        # the delivery loop, started with the first subscriber
        self._loop: threading.Thread | None = None
        self._ready: collections.deque[Mailbox] = collections.deque()  # mailboxes with events and no call in flight
        self._closing: collections.deque[Mailbox] = collections.deque()  # closed while held by the loop
        self._in_flight: set[Mailbox] = set()
        self._connected: set[Mailbox] = set()  # connections the loop watches
        self._round = self._round_pending = 0  # the current round, and its calls still in flight
        self._round_events = 0  # events sent in the current round
        self._round_started = 0.0
        self._linger = 0.0
        self._load = 1.0  # events per call, averaged over the last rounds
        self._marshalled: dict[tuple[t.Any, ...], bytes] = {}  # batch -> its marshalled call, while starting a round
        self._selector = selectors.DefaultSelector()
        self._wake_receiver, self._wake_sender = socket.socketpair()
        self._wake_receiver.setblocking(False)
        self._wake_sender.setblocking(False)
        self._selector.register(self._wake_receiver, selectors.EVENT_READ, None)
        self._sleeping = False  # the loop waits in select(): wake it through the socket pair
        self._connectors = ConnectorPool(self._connect, settings.connectors)

    # -- membership ------------------------------------------------------

    def open(self, key: str, uri: t.Any) -> Mailbox:
        """The mailbox of ``key``, created on first use."""
        with self._pool_lock:
            mailbox = self._mailboxes.get(key)
            if mailbox is not None:
                return mailbox
            mailbox = self._mailboxes[key] = Mailbox(key, uri)
        # connect now (and have the loop running), so the first event waits for neither
        with mailbox.condition:
            mailbox.scheduled = True
        self._start_connecting(mailbox, eager=True)
        self._wake()
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
            unwatched = not mailbox.scheduled and mailbox.sock is None
            if unwatched:
                self._release_proxy(mailbox)
        if not unwatched:  # the loop (or a connector) owns the connection; a call in flight is dropped now
            self._closing.append(mailbox)
            self._wake()
        return True

    # -- publishing ------------------------------------------------------

    def post(self, keys: c.Iterable[str], event: WireEvent, over_full: list[Mailbox]) -> int:
        """Queue ``event`` for each of ``keys`` without blocking; how many queued it.

        Under the blocking policy the event is queued even when a mailbox is
        full, so the accepted order holds; such mailboxes are added to
        ``over_full``, for the caller to ``wait_for_room`` once it released its
        own locks. Under the drop policy the event is dropped for them.
        """
        mailboxes = self._mailboxes
        limit = self._settings.queuesize
        blocking = self._settings.blockqueue
        ready = self._ready
        queued = 0
        for key in keys:
            mailbox = mailboxes.get(key)
            if mailbox is None:
                continue
            with mailbox.condition:
                if mailbox.closed:
                    continue
                events = mailbox.events
                if len(events) >= limit:
                    if not blocking:
                        self._drop_for(mailbox)
                        continue
                    over_full.append(mailbox)
                events.append(event)
                if not mailbox.scheduled:
                    mailbox.scheduled = True
                    ready.append(mailbox)
            queued += 1
        if ready:
            self._wake()
        return queued

    def _drop_for(self, mailbox: Mailbox) -> None:
        mailbox.dropped += 1
        self.dropped += 1
        if mailbox.dropped == 1 or mailbox.dropped % 1000 == 0:
            log.warning("queue of subscriber %s is full (%d events): dropped %d events so far",
                        mailbox.key, self._settings.queuesize, mailbox.dropped)

    def wait_for_room(self, mailboxes: c.Iterable[Mailbox]) -> None:
        """Block until each mailbox is back within its size (or closed)."""
        limit = self._settings.queuesize
        for mailbox in mailboxes:
            with mailbox.condition:
                while len(mailbox.events) > limit and not mailbox.closed and not self._stopped:
                    mailbox.condition.wait(1.0)

    # -- the delivery loop -----------------------------------------------
    #
    # The loop works in rounds: it starts a call to every ready mailbox, then
    # starts the next round once every call of this one has been answered, or
    # ROUND_SECONDS after it began, whichever is first. Replies that come early
    # wait for the round's end, so what arrives meanwhile goes out in one batch.
    # Under load (a round carried more than one event per call) rounds also
    # start at most every ``linger`` seconds: calls get fewer and bigger, which
    # is what keeps the ES and the subscribers' CPU per event low; an idle
    # service delivers at once. A subscriber that does not answer holds up one
    # round by ROUND_SECONDS and nothing after that.

    def _wake(self) -> None:
        """Make the loop look at ``_ready`` and ``_closing`` (starting it on first use)."""
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
        select = self._selector.select
        next_expiry_check = time.monotonic() + EXPIRY_CHECK_SECONDS
        while not self._stopped:
            try:
                now = time.monotonic()
                round_ends = self._round_started + ROUND_SECONDS
                next_round = max(round_ends if self._round_pending else 0.0, self._round_started + self._linger)
                if self._ready and now >= next_round:
                    if now - self._round_started > IDLE_ROUND_GAP:
                        self._load = 1.0  # a pause ends any load: what comes next is not a backlog
                    self._round += 1
                    self._round_pending = self._round_events = 0
                    self._round_started = now
                    round_ends = now + ROUND_SECONDS
                    self._start_ready_calls()
                    # under sustained fan-out load (rounds of several calls, each carrying more than an event)
                    # rounds keep a minimum spacing, so batches grow; one late round is no load. A lone
                    # subscriber keeps up without it, and the bursts would only delay the publishers' replies
                    if self._round_pending:
                        self._load = (self._load + self._round_events / self._round_pending) / 2
                    busy = self._load > 1.5 and self._round_pending > 1
                    self._linger = self._settings.linger if busy else 0.0
                    next_round = max(round_ends, now + self._linger)
                if self._closing:
                    self._drop_closed()
                round_open = self._round_pending and now < round_ends
                if round_open:  # it ends at its last reply, or at round_ends at the latest
                    timeout = round_ends - now
                elif self._ready:  # lingering
                    timeout = max(0.0, next_round - now)
                elif self._in_flight:
                    timeout = max(0.0, next_expiry_check - now)
                else:
                    timeout = None
                # set before looking at the queues, so a post() in between always wakes us (an open round,
                # or a linger with mailboxes ready, looks at the ready queue when it ends: no wake-ups needed)
                self._sleeping = not round_open and not (self._ready and now < next_round)
                if (self._ready and now >= next_round) or self._closing or self._stopped:
                    timeout = 0.0
                ready = select(timeout)
                self._sleeping = False
                for key, mask in ready:
                    mailbox = key.data
                    if mailbox is None:
                        self._drain_wake_ups()
                        continue
                    if mask & selectors.EVENT_WRITE and mailbox in self._in_flight:
                        self._write(mailbox)
                    if mask & selectors.EVENT_READ and mailbox.sock is not None:
                        self._read(mailbox)
                now = time.monotonic()
                if now >= next_expiry_check:
                    self._expire_calls(now)
                    next_expiry_check = now + EXPIRY_CHECK_SECONDS
            except Exception:  # a bug here must not stop every delivery for good
                log.exception("unexpected error in the delivery loop")
                time.sleep(0.01)
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
        with mailbox.condition:
            events = mailbox.events
            batch = [events.popleft() for _ in range(min(len(events), self._settings.batch_size))]
            mailbox.condition.notify_all()
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
        mailbox.round = self._round
        self._round_pending += 1
        self._round_events += len(mailbox.batch)
        self._in_flight.add(mailbox)
        self._write(mailbox)

    def _encode(self, mailbox: Mailbox, batch: list[WireEvent]) -> bytes | None:
        """The request for ``batch`` (or for its head, the rest put back when too large); None if nothing can go."""
        object_id = mailbox.proxy._pyroConnection.objectId
        mailbox.seq = (mailbox.seq + 1) & 0xFFFF
        while True:
            try:
                if mailbox.method != PLAIN_CALLBACK:
                    try:
                        # marshal keeps what the ES holds (tuples stay tuples) and is Pyro5's fastest serializer;
                        # subscribers of the same events in one round share one marshalled batch. Sent as bytes
                        # (to the Subscriber skeleton), it also spares the receiver Pyro5's walk through the batch
                        key = (mailbox.method, *map(id, batch))
                        tail = self._marshalled.get(key)
                        if tail is None:
                            args = [marshal.dumps(batch)] if mailbox.method == MARSHALLED_BATCH else [batch]
                            tail = self._marshalled[key] = marshal_call_tail(mailbox.method, args)
                        request = encode_marshal_call(object_id, tail, mailbox.seq)
                    except (TypeError, ValueError):
                        # but it carries only plain values below the top level: a message holding a
                        # Pyro object (a URI, an exception) needs the configured serializer
                        request = encode_call(object_id, "events", (batch,), config.SERIALIZER, mailbox.seq)
                else:
                    calls = [("event", (Event(subject, msg, stamp),), {}) for subject, msg, stamp in batch]
                    request = encode_call(object_id, "<batch>", calls, config.SERIALIZER, mailbox.seq, batch=True)
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
            mailbox.dropped += len(batch)
            self.dropped += len(batch)
            return None

    def _write(self, mailbox: Mailbox) -> None:
        try:
            while mailbox.outgoing:
                sent = mailbox.sock.send(mailbox.outgoing)
                mailbox.outgoing = mailbox.outgoing[sent:]
        except _WOULD_BLOCK:
            if not mailbox.writing:  # the subscriber reads slowly: go on when its socket takes more
                mailbox.writing = True
                self._selector.modify(mailbox.sock, selectors.EVENT_READ | selectors.EVENT_WRITE, mailbox)
            return
        except OSError as error:
            self._call_failed(mailbox, errors.ConnectionClosedError(f"sending: {error}"))
            return
        if mailbox.writing:
            mailbox.writing = False
            self._selector.modify(mailbox.sock, selectors.EVENT_READ, mailbox)

    def _read(self, mailbox: Mailbox) -> None:
        reader = mailbox.reply
        while True:
            try:
                chunk = mailbox.sock.recv(READ_SIZE)
            except _WOULD_BLOCK:
                return
            except OSError as error:
                chunk, failure = b"", f"receiving: {error}"
            else:
                failure = "receiving: connection closed by the subscriber"
            if reader is None:  # nothing asked: the subscriber closed an idle connection (or talks nonsense)
                log.debug("subscriber %s: idle connection %s", mailbox.key, "closed" if not chunk else "sent junk")
                self._disconnect(mailbox)
                return
            if not chunk:
                self._call_failed(mailbox, errors.ConnectionClosedError(failure))
                return
            try:
                reply = reader.feed(chunk)
            except Exception as error:  # not a Pyro5 reply, or one that does not deserialize
                self._call_failed(mailbox, errors.ProtocolError(f"bad reply from subscriber: {error}"), retry=False)
                return
            if reply is not None:
                self._call_done(mailbox, reply)
                return

    def _call_done(self, mailbox: Mailbox, reply: Reply) -> None:
        batch = mailbox.batch
        self._end_call(mailbox)
        error: t.Any = None
        handled = len(batch)
        if reply.seq != mailbox.seq:
            error = errors.ProtocolError(f"reply sequence out of sync: {reply.seq} for {mailbox.seq}")
        elif reply.raised:
            error = reply.value
        elif mailbox.method == PLAIN_CALLBACK and reply.value and isinstance(reply.value[-1], core._ExceptionWrapper):
            error = reply.value[-1].exception  # a Pyro5 batch stops at the first event() that raised
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
            mailbox.delivered += handled
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
            if mailbox.round == self._round:
                self._round_pending -= 1
        if mailbox.writing:
            mailbox.writing = False
            self._selector.modify(mailbox.sock, selectors.EVENT_READ, mailbox)
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
        with mailbox.condition:
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
                methods = proxy._pyroMethods
                mailbox.method = next((name for name in (MARSHALLED_BATCH, BATCH) if name in methods), PLAIN_CALLBACK)
                mailbox.proxy = proxy
        with mailbox.condition:
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

    def stats(self) -> dict[str, int]:
        """Counts for monitoring: mailboxes (connected, being connected), queued events, calls in flight,
        events delivered, connector threads, drops."""
        with self._pool_lock:
            mailboxes = list(self._mailboxes.values())
        connecting = self._connectors.busy()
        return {
            "mailboxes": len(mailboxes),
            "connected": sum(mailbox.proxy is not None for mailbox in mailboxes),
            "connecting": connecting,
            "queued": sum(len(mailbox.events) for mailbox in mailboxes),
            "in_flight": len(self._in_flight),
            "delivered": sum(mailbox.delivered for mailbox in mailboxes),
            "connectors": self._connectors.size(),
            "dropped": self.dropped,
        }

    def stop(self, timeout: float = 5.0) -> None:
        """Discard every mailbox and stop the delivery loop and connectors."""
        for key in list(self._mailboxes):
            self.close(key)
        with self._pool_lock:
            self._stopped = True
            loop = self._loop
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
