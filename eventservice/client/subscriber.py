"""The Subscriber skeleton: a callback object in its own daemon, event() called once per event, in order."""
from __future__ import annotations

import logging
import marshal
import random
import select
import threading
import time
import typing as t

from Pyro5 import config as pyro_config
from Pyro5 import core, errors
from Pyro5.server import expose

from ..core.event import Event
from ..core.subjects import fold
from ..pyro.daemon import GuardedDaemon
from . import pyro3
from .base import Client, Subjects, texts

__all__ = ["QUEUE_POLICIES", "Subscriber", "SubscriberDaemon"]

log = logging.getLogger(__name__)

#: the full-queue policies a subscriber may ask the Event Service for (see ``Subscriber.setQueuePolicy``)
QUEUE_POLICIES = ("block", "drop", "drop-oldest")

#: first and longest pause between a subscriber's attempts to reach its Event Service again
RECOVERY_FIRST_DELAY = 0.1
RECOVERY_MAX_DELAY = 2.0

# Pyro5 reads SERVERTYPE when a daemon is built; we set it only around our own construction.
_daemon_construction = threading.Lock()


class _EventSink:
    """The Pyro callback object the ES calls; forwards to its Subscriber."""

    def __init__(self, subscriber: Subscriber) -> None:
        self._subscriber = subscriber

    @expose
    def marshalled_events(self, data: bytes) -> None:
        """Receive a batch of (subject, msg, time) in accepted order, marshalled (the ES's fast path)."""
        if not isinstance(data, bytes):
            raise TypeError("marshalled_events takes the bytes of a marshalled batch")
        self.events(marshal.loads(data))

    @expose
    def events(self, batch: list[t.Any]) -> None:
        """Receive a batch of (subject, msg, time) in accepted order."""
        self._subscriber._dispatch(Event(subject, msg, stamp) for subject, msg, stamp in batch)

    @expose
    def event(self, event: Event) -> None:
        """Receive one event (the classic callback)."""
        self._subscriber._dispatch((event,))


class SubscriberDaemon(GuardedDaemon):
    """The subscriber's own daemon, for programs that serve it from their own loop.

    Pyro5's way: select on ``sockets`` and pass the ready ones to ``events(ready)``.
    Pyro3's way: ``getServerSockets()`` and ``handleRequests(timeout)``.
    Either way, the first such call makes the subscriber deliver events
    (``Subscriber.listen()`` is then not needed), in order and one at a time.
    With the default threaded daemon the sockets are just the listening
    socket, and event() runs in the daemon's threads; after
    ``setThreading(False)`` they include every connection (ask for them each
    round) and event() runs inside ``events()``/``handleRequests()``.
    """

    def __init__(self, subscriber: Subscriber, host: str, port: int) -> None:
        self._subscriber = subscriber
        super().__init__(host, port, authenticator=subscriber._authenticator)

    def events(self, eventsockets: t.Iterable[t.Any]) -> None:
        """Serve what is ready on these sockets (others are ignored): Pyro5's call for external loops."""
        mine = set(self.sockets)
        ready = [sock for sock in eventsockets if sock in mine]
        self._subscriber._served_by_program()
        if ready:
            super().events(ready)

    def getServerSockets(self) -> list[t.Any]:
        """Pyro3's name for ``sockets``: what to select on for reading."""
        return list(self.sockets)

    def handleRequests(self, timeout: float | None = None, others: t.Sequence[t.Any] = (),
                       callback: t.Callable[[list[t.Any]], t.Any] | None = None) -> None:
        """Pyro3's handleRequests: wait up to ``timeout`` seconds (None: until something comes) for
        requests, serve what is ready and return; 0 serves only what is pending.

        ``others``: more sockets to wait on; ``callback(ready_others)`` is called
        with those that are ready (Pyro3's signature).
        """
        if others and callback is None:
            raise ValueError("handleRequests(others=...) needs a callback for the other sockets")
        self._subscriber._served_by_program()
        mine = list(self.sockets)
        ready = _wait_readable(mine + list(others), timeout)
        own = [sock for sock in ready if sock in mine]
        if own:
            super().events(own)
        rest = [sock for sock in ready if sock not in own]
        if rest and callback is not None:
            callback(rest)

    def clientDisconnect(self, conn: t.Any) -> None:
        super().clientDisconnect(conn)
        self._subscriber._connection_lost()


def _wait_readable(sockets: list[t.Any], timeout: float | None) -> list[t.Any]:
    if not sockets:
        return []
    while True:
        try:
            return select.select(sockets, [], [], timeout)[0]
        except InterruptedError:  # pragma: no cover - Python retries EINTR itself since 3.5
            continue


class Subscriber(pyro3.Pyro3ObjectMethods, Client):
    """Receives events: subclass it and override ``event(event)``.

    :param ident: the passphrase the ES requires, if any; the subscriber's own
        daemon then accepts calls only from holders of it (no event injection)
    :param esURI: the ES's URI; None finds it through the name server
    :param nsHost: the name server's host (default: Pyro5's NS_HOST)
    :param nsPort: the name server's port (default: Pyro5's NS_PORT)
    :param queuePolicy: ask the ES for this full-queue policy for this
        subscriber ("block", "drop" or "drop-oldest"; None: the ES's setting)
    :param queueSize: ask the ES for this queue size for this subscriber (None: the ES's)
    Raises NamingError when there is no name server or no ES registered in it.

    ``event()`` is never called concurrently for one Subscriber and runs in
    the order the ES accepted the events, whatever ``setThreading`` says.
    Events are handled while ``listen()`` runs, or once the program serves the
    subscriber's daemon from its own loop (``getDaemon()``); what arrives
    before that waits (at the ES, for up to its delivery timeout).

    Recovery: while served, the subscriber notices that its ES went away or
    was replaced (the ES's connection to it closes, a call fails, or, as a
    last resort, the check every ``heartbeat`` seconds) and subscribes all
    its subjects and patterns again, with its queue policy, as soon as an ES
    answers (retrying with backoff up to RECOVERY_MAX_DELAY seconds); then it
    calls ``esReconnected()``. A live ES that dropped it on purpose is left to
    the heartbeat. Events published meanwhile are not replayed.
    """

    #: mean seconds between subscription checks while served (jittered by +-50%); 0 turns them off
    heartbeat: float = 10.0

    def __init__(self, ident: str | None = None, esURI: str | core.URI | None = None,
                 nsHost: str | None = None, nsPort: int | None = None,
                 queuePolicy: str | None = None, queueSize: int | None = None) -> None:
        super().__init__(ident, esURI, nsHost, nsPort)
        with self._es_lock:
            self._es._pyroBind()  # fail now, not at the first subscribe
            self._es._pyroRelease()  # subscribers hold no ES connection between calls
        self._threaded = True
        self._daemon: SubscriberDaemon | None = None
        self._daemon_handed_out = False
        self._sink = _EventSink(self)
        self._object_id: str | None = None
        self._callback: t.Any = None
        self._listening = threading.Event()
        self._not_listening = threading.Event()
        self._not_listening.set()
        self._own_loop = False  # the program serves the daemon itself
        self._serving = threading.Event()  # listen() runs, or the program serves the daemon
        self._abort = threading.Event()
        self._abort_consumed = False  # a listen() returned because of the abort that is still set
        self._closed = False
        self._dispatching: int | None = None
        self._dispatch_lock = threading.Lock()
        self._daemon_lock = threading.Lock()
        self._subscriptions_lock = threading.RLock()
        self._subjects: dict[str, str] = {}  # folded -> as given
        self._patterns: dict[str, str] = {}  # as given (patterns are removed by their text)
        self._queue_policy: tuple[str, int | None] | None = None
        self._policy_applied = False
        self._keeper: threading.Thread | None = None
        self._keeper_lock = threading.Lock()
        self._check_now = threading.Event()
        self._es_trouble = False  # a call to the ES failed since it last held our subscriptions
        self._subscribed_at: str | None = None  # the URI of the ES that holds our subscriptions
        if queuePolicy is not None or queueSize is not None:
            if queuePolicy is None:
                raise ValueError("queueSize needs a queuePolicy too (block, drop or drop-oldest)")
            self._queue_policy = _checked_policy(queuePolicy, queueSize)

    # -- subscriptions ---------------------------------------------------

    def subscribe(self, subjects: Subjects) -> None:
        """Receive events of these exact subjects (case-insensitive)."""
        with self._subscriptions_lock:
            self._call_es("subscribe", subjects, self._callback_proxy(), keep_connection=False)
            for subject in texts(subjects):
                self._subjects[fold(subject)] = subject
            self._subscribed_at = str(self.ES_uri)
            self._apply_queue_policy()

    def subscribeMatch(self, subjectPatterns: Subjects) -> None:
        """Receive events whose subject matches one of these regex patterns (case-insensitive, anchored at the start)."""
        with self._subscriptions_lock:
            self._call_es("subscribeMatch", subjectPatterns, self._callback_proxy(), keep_connection=False)
            for pattern in texts(subjectPatterns):
                self._patterns[pattern] = pattern
            self._subscribed_at = str(self.ES_uri)
            self._apply_queue_policy()

    def unsubscribe(self, subjects: Subjects) -> None:
        """Stop receiving these exact subjects and patterns."""
        with self._subscriptions_lock:
            self._call_es("unsubscribe", subjects, self._callback_proxy(), keep_connection=False)
            for text in texts(subjects):
                self._subjects.pop(fold(text), None)
                self._patterns.pop(text, None)

    def setQueuePolicy(self, policy: str, queuesize: int | None = None) -> None:
        """Ask the ES for this full-queue policy ("block", "drop", "drop-oldest") and queue size for
        this subscriber; kept, and asked for again after a reconnect.

        Applied at once when subscribed, else with the first subscription. The
        ES refuses sizes above its ``max_queuesize`` (ValueError).
        """
        with self._subscriptions_lock:
            self._queue_policy = _checked_policy(policy, queuesize)
            self._policy_applied = False
            self._apply_queue_policy()

    # -- receiving -------------------------------------------------------

    def event(self, event: Event) -> None:
        """Called for every event received; override it. The default prints the event, as Pyro3's did."""
        print(event, flush=True)  # noqa: T201  Pyro3 compatibility: its default event() printed

    def esReconnected(self) -> None:
        """Called after the subscriber subscribed again on a new (or restarted) Event Service; override it.

        Events published while there was none are lost (never replayed): reload
        state here if the application needs it. Runs in a helper thread, never
        at the same time as event().
        """

    def setThreading(self, threaded: bool) -> None:
        """Serve calls on the subscriber's daemon in a thread pool (True, default) or in one thread.

        Either way ``event()`` is called one event at a time in accepted order.
        Call it before ``listen()`` (and before serving the daemon yourself);
        the subscriber's URI stays the same.
        """
        threaded = bool(threaded)
        if self._listening.is_set() or self._own_loop:
            raise RuntimeError("setThreading() must be called before listen() or serving getDaemon()")
        with self._daemon_lock:
            if threaded != self._threaded:
                if self._daemon_handed_out and self._daemon is not None:
                    raise RuntimeError("setThreading() must be called before getDaemon(): it replaces the daemon")
                self._threaded = threaded
                if self._daemon is not None:
                    self._rebuild_daemon()

    def listen(self) -> None:
        """Serve incoming events until ``abort()``; Ctrl-C raises KeyboardInterrupt here, as in Pyro3."""
        daemon = self._get_daemon()
        if self._abort_consumed:  # an earlier listen() ended on this abort: start afresh
            self._abort.clear()
            self._abort_consumed = False
        self._not_listening.clear()
        self._listening.set()
        self._serving.set()
        self._start_keeper()
        try:
            daemon.requestLoop(lambda: not self._abort.is_set())
            if not (self._abort.is_set() or self._closed):
                raise KeyboardInterrupt  # Pyro5's loop ends silently on Ctrl-C
        finally:
            self._abort_consumed = self._abort.is_set()
            self._listening.clear()
            if not self._own_loop:
                self._serving.clear()
            self._not_listening.set()
            self._check_now.set()  # lets the keeper see that serving ended

    def listenInThread(self) -> threading.Thread:
        """Run ``listen()`` in a daemon thread and return it; ``abort()`` stops it."""
        self._get_daemon()
        thread = threading.Thread(target=self.listen, name="es-subscriber-listen", daemon=True)
        thread.start()
        return thread

    def abort(self) -> None:
        """Make ``listen()`` return promptly; may be called from inside ``event()``."""
        self._abort.set()
        self._abort_consumed = False
        daemon = self._daemon
        if daemon is not None:
            daemon.wakeup()

    @property
    def abortListen(self) -> int:
        """Pyro3's flag: 1 once ``abort()`` was called (it stays 1 after listen() returned), else 0.

        Setting it to 1 is ``abort()``; setting 0 clears it.
        """
        return int(self._abort.is_set())

    @abortListen.setter
    def abortListen(self, value: t.Any) -> None:
        if value:
            self.abort()
        else:
            self._abort.clear()
            self._abort_consumed = False

    def close(self) -> None:
        """Leave the ES (drop every subscription) and shut the subscriber's daemon down."""
        with self._subscriptions_lock:
            if self._callback is not None and (self._subjects or self._patterns):
                try:
                    self._call_es("unsubscribeAll", self._callback, keep_connection=False)
                except errors.PyroError as error:
                    log.info("could not unsubscribe from the Event Service: %s", error)
            self._subjects.clear()
            self._patterns.clear()
        self._closed = True
        self._serving.clear()
        self._check_now.set()
        self.abort()
        if self._listening.is_set() and not self._in_event_handler():
            self._not_listening.wait(5)  # let listen() leave the loop before its daemon goes
        with self._daemon_lock:
            if self._daemon is not None:
                self._daemon.close()
                self._daemon = None

    def __enter__(self) -> Subscriber:
        return self

    def __exit__(self, *exc_info: t.Any) -> None:
        self.close()

    # -- Pyro3's Pyro-object side ----------------------------------------

    def getDaemon(self) -> SubscriberDaemon:
        """The subscriber's own Pyro5 daemon, to serve it from the program's own loop.

        ``select`` on ``daemon.sockets`` and pass what is ready to
        ``daemon.events(ready)`` (Pyro5), or call ``daemon.getServerSockets()`` and
        ``daemon.handleRequests(0)`` (Pyro3). See :class:`SubscriberDaemon`.
        """
        daemon = self._get_daemon()
        self._daemon_handed_out = True
        return daemon

    @property
    def daemon(self) -> t.Any:
        """Pyro3's attribute: the subscriber's daemon (``getDaemon()``).

        In a class that also derives from threading.Thread, ``daemon`` keeps
        threading's meaning; use getDaemon() there.
        """
        if isinstance(self, threading.Thread):
            return threading.Thread.daemon.fget(self)  # type: ignore[attr-defined]
        return self.getDaemon()

    @daemon.setter
    def daemon(self, value: t.Any) -> None:
        if isinstance(self, threading.Thread):
            threading.Thread.daemon.fset(self, value)  # type: ignore[attr-defined]
            return
        raise AttributeError("Subscriber.daemon is the subscriber's own daemon and cannot be replaced")

    def dropped_events(self) -> int:
        """How many events the ES dropped for this subscriber, as its full-queue policy allowed (always 0 under
        "block"); counted since it last joined the ES. One call to the ES."""
        uri = str(self._callback_proxy()._pyroUri)
        listing = self._call_es("subscribers", keep_connection=False)
        return sum(int(entry.get("dropped", 0)) for entry in listing if entry.get("uri") == uri)

    def getProxy(self) -> t.Any:
        """A Pyro5 proxy to this subscriber's callback object (what the ES calls)."""
        return self._callback_proxy().__copy__()

    def getAttrProxy(self) -> t.Any:
        """Pyro3's attribute proxy: Pyro5 proxies reach exposed attributes anyway, so ``getProxy()``."""
        return self.getProxy()

    def GUID(self) -> str:
        """The object id of the subscriber's callback object in its daemon (Pyro3's GUID())."""
        self._get_daemon()
        return t.cast(str, self._object_id)

    @property
    def NS(self) -> t.Any:
        """Pyro3's attribute: a proxy to the name server, None when the ES was given by esURI.

        A new proxy each time (Pyro5 proxies belong to one thread); it speaks
        Pyro5's name server API and also takes Pyro3's resolve/unregister/flatlist.
        """
        if self._esURI is not None:
            return None
        return pyro3.name_server_proxy(*self._ns_location, self._authenticator)

    # -- internals -------------------------------------------------------

    def _dispatch(self, events: t.Iterable[Event]) -> None:
        # in threaded mode, open connections are served even while nobody serves: hold them until it resumes
        while not self._serving.wait(0.2):
            if self._closed:
                raise errors.CommunicationError("this subscriber is closed")
        with self._dispatch_lock:
            self._dispatching = threading.get_ident()
            try:
                for event in events:
                    try:
                        self.event(event)
                    except Exception:
                        log.exception("event() raised for %s; going on with the next event", event.subject)
            finally:
                self._dispatching = None

    def _in_event_handler(self) -> bool:
        return self._dispatching == threading.get_ident()

    def _served_by_program(self) -> None:
        """The program serves the daemon from its own loop: deliver from now on, and keep subscribed."""
        if not self._own_loop and not self._closed:
            self._own_loop = True
            self._serving.set()
            self._start_keeper()

    def _connection_lost(self) -> None:
        """A connection to the daemon closed (the ES's, when it stops): check the ES now."""
        if not self._closed:
            self._check_now.set()

    def _call_es(self, method: str, *args: t.Any, **kwargs: t.Any) -> t.Any:
        try:
            return super()._call_es(method, *args, **kwargs)
        except (errors.CommunicationError, errors.NamingError):
            self._es_trouble = True
            self._check_now.set()  # a failed call: the ES may be gone or replaced
            raise

    def _reconnect(self) -> None:
        super()._reconnect()
        self._es_trouble = True
        self._check_now.set()  # possibly another ES now: make sure it knows our subscriptions

    def _start_keeper(self) -> None:
        with self._keeper_lock:
            if self._keeper is None:
                self._keeper = threading.Thread(target=self._keep_subscribed, name="es-subscriber-keeper", daemon=True)
                self._keeper.start()

    def _keep_subscribed(self) -> None:
        """While served: check the ES at each notice (or heartbeat) and recover what it lost."""
        while True:
            # jittered, so that many subscribers started together do not check in together
            interval = self.heartbeat * random.uniform(0.5, 1.5) if self.heartbeat else None
            noticed = self._check_now.wait(interval)
            with self._keeper_lock:
                if self._closed or not self._serving.is_set():
                    self._keeper = None
                    return
            self._check_now.clear()
            self._recover(periodic=not noticed)

    def _recover(self, periodic: bool) -> None:
        """Make sure the ES holds our subscriptions; retry with capped backoff while none answers.

        After a notice (not ``periodic``), subscriptions are made again at once
        only on an ES that is new to us: one that was unreachable or failed a
        call meanwhile, or another URI. An ES that answered all along and no
        longer knows us dropped us on purpose (a pattern that ran out of time,
        a subscriber too slow); then it is the heartbeat's turn, as before, so
        that what the ES removed is not pushed back at once, again and again.
        """
        delay = RECOVERY_FIRST_DELAY
        outage_since: float | None = None
        while not self._closed and self._serving.is_set():
            try:
                with self._subscriptions_lock:
                    subjects, patterns = list(self._subjects.values()), list(self._patterns.values())
                    if not (subjects or patterns):
                        return
                    if self._call_es("hasSubscriptions", self._callback, keep_connection=False):
                        if outage_since is not None:
                            log.warning("Event Service %s answers again after %.1f s and still holds our "
                                        "subscriptions", self.ES_uri, time.monotonic() - outage_since)
                        self._es_trouble = False
                        return
                    if not (periodic or self._es_trouble or str(self.ES_uri) != self._subscribed_at):
                        log.warning("the Event Service %s dropped this subscriber (it removes unreachable and slow "
                                    "subscribers, and patterns that run out of time); subscribing again at the "
                                    "next heartbeat", self.ES_uri)
                        return
                    log.warning("the Event Service %s does not know this subscriber (restarted, or it dropped us); "
                                "subscribing again to %d subjects and %d patterns", self.ES_uri, len(subjects),
                                len(patterns))
                    if subjects:
                        self._call_es("subscribe", subjects, self._callback, keep_connection=False)
                    if patterns:
                        self._call_es("subscribeMatch", patterns, self._callback, keep_connection=False)
                    self._subscribed_at = str(self.ES_uri)
                    self._es_trouble = False
                    self._policy_applied = False
                    self._apply_queue_policy(raise_errors=False)
            except (ValueError, TypeError) as error:  # the new ES refuses what the old one took (other limits)
                log.error("the Event Service %s refused our subscriptions: %s", self.ES_uri, error)
                return
            except errors.PyroError as error:
                if outage_since is None:
                    outage_since = time.monotonic()
                    log.warning("Event Service unreachable (%s); trying again with backoff up to %.0f s",
                                error, RECOVERY_MAX_DELAY)
                else:
                    log.debug("Event Service still unreachable: %s", error)
                self._check_now.clear()  # our own failed calls set it: wait the backoff out
                self._check_now.wait(delay * random.uniform(0.5, 1.0))
                delay = min(delay * 2, RECOVERY_MAX_DELAY)
                continue
            outage = "" if outage_since is None else f" after {time.monotonic() - outage_since:.1f} s"
            log.warning("subscriptions re-established on the Event Service %s%s; events published meanwhile "
                        "are lost", self.ES_uri, outage)
            self._notify_reconnected()
            return

    def _notify_reconnected(self) -> None:
        with self._dispatch_lock:
            try:
                self.esReconnected()
            except Exception:
                log.exception("esReconnected() raised")

    def _apply_queue_policy(self, raise_errors: bool = True) -> None:
        """Ask the ES for our queue policy once we are subscribed (call with the subscriptions lock)."""
        if self._queue_policy is None or self._policy_applied or not (self._subjects or self._patterns):
            return
        policy, queuesize = self._queue_policy
        try:
            self._call_es("setQueuePolicy", self._callback, policy, queuesize, keep_connection=False)
        except AttributeError as error:
            failure: Exception = RuntimeError(
                f"this Event Service offers no per-subscriber queue policy (setQueuePolicy): {error}")
        except (ValueError, TypeError) as error:
            failure = error
        else:
            self._policy_applied = True
            return
        if raise_errors:
            raise failure
        log.warning("could not set queue policy %s/%s on the Event Service: %s", policy, queuesize, failure)

    def _callback_proxy(self) -> t.Any:
        self._get_daemon()
        return self._callback

    def _get_daemon(self) -> SubscriberDaemon:
        with self._daemon_lock:  # listen() in one thread and subscribe() in another may race here
            if self._daemon is None:
                self._daemon = self._build_daemon(pyro_config.HOST, 0)
            return self._daemon

    def _build_daemon(self, host: str, port: int) -> SubscriberDaemon:
        with _daemon_construction:
            previous = pyro_config.SERVERTYPE
            pyro_config.SERVERTYPE = "thread" if self._threaded else "multiplex"
            try:
                daemon = SubscriberDaemon(self, host, port)
            finally:
                pyro_config.SERVERTYPE = previous
        uri = daemon.register(self._sink, self._object_id)
        self._object_id = uri.object
        daemon.serve_directly(uri.object, "marshalled_events", self._sink.marshalled_events)  # the ES's deliveries
        self._callback = daemon.proxyFor(self._sink)
        return daemon

    def _rebuild_daemon(self) -> None:
        old = self._daemon
        assert old is not None  # setThreading() checked
        port = old.sock.getsockname()[1]
        old.close()
        self._daemon = self._build_daemon(pyro_config.HOST, port)  # same host, port and object id: same URI


def _checked_policy(policy: t.Any, queuesize: t.Any) -> tuple[str, int | None]:
    if policy not in QUEUE_POLICIES:
        raise ValueError(f"queue policy must be one of {', '.join(QUEUE_POLICIES)}, not {policy!r}")
    if queuesize is not None and (not isinstance(queuesize, int) or isinstance(queuesize, bool) or queuesize < 1):
        raise ValueError(f"queuesize must be a whole number >= 1 or None, not {queuesize!r}")
    return policy, queuesize
