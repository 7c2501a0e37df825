"""The Subscriber skeleton: a callback object in its own daemon, event() called once per event, in order."""
from __future__ import annotations

import logging
import marshal
import random
import threading
import typing as t

from Pyro5 import config as pyro_config
from Pyro5 import core, errors
from Pyro5.server import expose

from ..core.event import Event
from ..pyro.daemon import GuardedDaemon
from .base import Client, Subjects, texts

__all__ = ["Subscriber"]

log = logging.getLogger(__name__)

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


class Subscriber(Client):
    """Receives events: subclass it and override ``event(event)``.

    :param ident: the passphrase the ES requires, if any; the subscriber's own
        daemon then accepts calls only from holders of it (no event injection)
    :param esURI: the ES's URI; None finds it through the name server
    :param nsHost: the name server's host (default: Pyro5's NS_HOST)
    :param nsPort: the name server's port (default: Pyro5's NS_PORT)
    Raises NamingError when there is no name server or no ES registered in it.

    ``event()`` is never called concurrently for one Subscriber and runs in
    the order the ES accepted the events, whatever ``setThreading`` says.
    Events are handled only while ``listen()`` runs; what arrives in between
    waits (at the ES, for up to its delivery timeout).

    While listening, the subscriber checks every ``heartbeat`` seconds that the
    ES still holds its subscriptions, and subscribes again when it does not
    (the ES was restarted, or dropped it as unreachable). Events published
    meanwhile are not replayed.
    """

    #: mean seconds between subscription checks while listening (jittered by +-50%); 0 turns them off
    heartbeat: float = 10.0

    def __init__(self, ident: str | None = None, esURI: str | core.URI | None = None,
                 nsHost: str | None = None, nsPort: int | None = None) -> None:
        super().__init__(ident, esURI, nsHost, nsPort)
        with self._es_lock:
            self._es._pyroBind()  # fail now, not at the first subscribe
            self._es._pyroRelease()  # subscribers hold no ES connection between calls
        self._threaded = True
        self._daemon: GuardedDaemon | None = None
        self._sink = _EventSink(self)
        self._object_id: str | None = None
        self._callback: t.Any = None
        self._listening = threading.Event()
        self._not_listening = threading.Event()
        self._not_listening.set()
        self._abort = threading.Event()
        self._closed = False
        self._dispatching: int | None = None
        self._dispatch_lock = threading.Lock()
        self._daemon_lock = threading.Lock()
        self._subjects: set[str] = set()
        self._patterns: set[str] = set()

    # -- subscriptions ---------------------------------------------------

    def subscribe(self, subjects: Subjects) -> None:
        """Receive events of these exact subjects (case-insensitive)."""
        self._call_es("subscribe", subjects, self._callback_proxy(), keep_connection=False)
        self._subjects.update(texts(subjects))

    def subscribeMatch(self, subjectPatterns: Subjects) -> None:
        """Receive events whose subject matches one of these regex patterns (case-insensitive, anchored at the start)."""
        self._call_es("subscribeMatch", subjectPatterns, self._callback_proxy(), keep_connection=False)
        self._patterns.update(texts(subjectPatterns))

    def unsubscribe(self, subjects: Subjects) -> None:
        """Stop receiving these exact subjects and patterns."""
        self._call_es("unsubscribe", subjects, self._callback_proxy(), keep_connection=False)
        removed = set(texts(subjects))
        self._subjects -= removed
        self._patterns -= removed

    # -- receiving -------------------------------------------------------

    def event(self, event: Event) -> None:
        """Called for every event received; override it. The default logs the event."""
        log.info("%s", event)

    def setThreading(self, threaded: bool) -> None:
        """Serve calls on the subscriber's daemon in a thread pool (True, default) or in one thread.

        Either way ``event()`` is called one event at a time in accepted order.
        Call it before ``listen()``; the subscriber's URI stays the same.
        """
        threaded = bool(threaded)
        if self._listening.is_set():
            raise RuntimeError("setThreading() must be called before listen()")
        with self._daemon_lock:
            if threaded != self._threaded:
                self._threaded = threaded
                if self._daemon is not None:
                    self._rebuild_daemon()

    def listen(self) -> None:
        """Serve incoming events until ``abort()``."""
        daemon = self._get_daemon()
        self._not_listening.clear()
        self._listening.set()
        if self.heartbeat:
            threading.Thread(target=self._keep_subscribed, name="es-subscriber-heartbeat", daemon=True).start()
        try:
            daemon.requestLoop(lambda: not self._abort.is_set())
        finally:
            self._listening.clear()
            self._abort.clear()
            self._not_listening.set()

    def listenInThread(self) -> threading.Thread:
        """Run ``listen()`` in a daemon thread and return it; ``abort()`` stops it."""
        self._get_daemon()
        thread = threading.Thread(target=self.listen, name="es-subscriber-listen", daemon=True)
        thread.start()
        return thread

    def abort(self) -> None:
        """Make ``listen()`` return promptly; may be called from inside ``event()``."""
        self._abort.set()
        daemon = self._daemon
        if daemon is not None:
            daemon.wakeup()

    def close(self) -> None:
        """Leave the ES (drop every subscription) and shut the subscriber's daemon down."""
        if self._callback is not None and (self._subjects or self._patterns):
            try:
                self._call_es("unsubscribeAll", self._callback, keep_connection=False)
            except errors.PyroError as error:
                log.info("could not unsubscribe from the Event Service: %s", error)
        self._subjects.clear()
        self._patterns.clear()
        self._closed = True
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

    # -- internals -------------------------------------------------------

    def _dispatch(self, events: t.Iterable[Event]) -> None:
        # in threaded mode, open connections are served even outside listen(): hold them until it runs again
        while not self._listening.wait(0.2):
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

    def _keep_subscribed(self) -> None:
        # jittered, so that many subscribers started together do not check in together
        while not self._not_listening.wait(self.heartbeat * random.uniform(0.5, 1.5)):
            subjects, patterns = list(self._subjects), list(self._patterns)
            if not (subjects or patterns):
                continue
            try:
                if self._call_es("hasSubscriptions", self._callback, keep_connection=False):
                    continue
                log.warning("the Event Service does not know this subscriber (restarted?); subscribing again")
                if subjects:
                    self._call_es("subscribe", subjects, self._callback, keep_connection=False)
                if patterns:
                    self._call_es("subscribeMatch", patterns, self._callback, keep_connection=False)
            except errors.PyroError as error:
                log.info("Event Service not reachable for the subscription check: %s", error)

    def _callback_proxy(self) -> t.Any:
        self._get_daemon()
        return self._callback

    def _get_daemon(self) -> GuardedDaemon:
        with self._daemon_lock:  # listen() in one thread and subscribe() in another may race here
            if self._daemon is None:
                self._daemon = self._build_daemon(pyro_config.HOST, 0)
            return self._daemon

    def _build_daemon(self, host: str, port: int) -> GuardedDaemon:
        with _daemon_construction:
            previous = pyro_config.SERVERTYPE
            pyro_config.SERVERTYPE = "thread" if self._threaded else "multiplex"
            try:
                daemon = GuardedDaemon(host, port, authenticator=self._authenticator)
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
