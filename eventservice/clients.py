"""Publisher and Subscriber skeletons: the Event Service without the Pyro plumbing.

Both find the Event Service through the name server (or take its URI), prove
the passphrase when given one, and reuse their connection. A Subscriber runs
its own Pyro5 daemon holding a small callback object; the ES delivers batches
of events to it in order, and the skeleton calls ``event()`` for each, one at a
time.
"""
from __future__ import annotations

import collections
import logging
import marshal
import random
import threading
import time
import typing as t

from Pyro5 import config as pyro_config
from Pyro5 import core, errors, serializers
from Pyro5.server import expose

from . import auth, naming, wire
from .daemon import GuardedDaemon
from .event import Event
from .subjects import as_texts

__all__ = ["Publisher", "Subscriber"]

log = logging.getLogger("eventservice.clients")

Subjects = t.Union[str, t.List[str], t.Tuple[str, ...]]

# Pyro5 reads SERVERTYPE when a daemon is built; we set it only around our own construction.
_daemon_construction = threading.Lock()


class _Client:
    """What both skeletons share: finding the ES, the passphrase, one reusable proxy."""

    def __init__(self, ident: str | None, esURI: str | core.URI | None, nsHost: str | None, nsPort: int | None) -> None:
        self._authenticator = auth.Authenticator(ident) if ident else None
        self._esURI = esURI
        self._ns_location = (nsHost, nsPort)
        self._es_lock = threading.RLock()
        self._es = naming.es_proxy(esURI, self._authenticator, *self._ns_location)
        self._seq = 0  # of the calls on self._es

    def getES(self) -> t.Any:
        """A new proxy to the Event Service, owned by the calling thread."""
        return auth.make_proxy(self._es._pyroUri, self._authenticator)

    def _call_es(self, method: str, *args: t.Any, keep_connection: bool = True, serializer: str | None = None) -> t.Any:
        """Call the ES from any thread; after a lost connection, find the ES again and retry once.

        ``serializer`` overrides Pyro5's configured one for this call (see ``_fast_serializer``).
        """
        with self._es_lock:
            self._es._pyroClaimOwnership()
            try:
                return self._invoke(method, args, serializer)
            except errors.CommunicationError as error:  # lost or refused connection: the ES may have restarted
                if isinstance(error, (errors.TimeoutError, auth.PassphraseError)):
                    raise
                log.info("Event Service connection failed (%s); looking it up again", error)
                self._reconnect()
                return self._invoke(method, args, serializer)
            finally:
                if not keep_connection:
                    self._es._pyroRelease()

    def _invoke(self, method: str, args: tuple[t.Any, ...], serializer: str | None) -> t.Any:
        es = self._es
        if es._pyroConnection is None:
            es._pyroBind()  # connects and proves the passphrase
        self._seq = (self._seq + 1) & 0xFFFF
        try:
            return wire.call(es._pyroConnection, method, args, serializer or pyro_config.SERIALIZER, self._seq)
        except (errors.CommunicationError, KeyboardInterrupt):
            es._pyroRelease()  # a reply that comes late must not answer the next call
            raise

    def _reconnect(self) -> None:
        self._es._pyroRelease()
        self._es = naming.es_proxy(self._esURI, self._authenticator, *self._ns_location)


class Publisher(_Client):
    """Publishes events; safe to share between threads.

    :param ident: the passphrase the ES requires, if any
    :param esURI: the ES's URI; None finds it through the name server
    :param pipeline: 0 (default) makes ``publish`` synchronous; N > 0 turns on
        pipelined mode with at most N publishes on their way (see ``publish``)
    :param nsHost: the name server's host (default: Pyro5's NS_HOST)
    :param nsPort: the name server's port (default: Pyro5's NS_PORT)
    Raises NamingError when there is no name server or no ES registered in it.
    """

    def __init__(self, ident: str | None = None, esURI: str | core.URI | None = None, pipeline: int = 0,
                 nsHost: str | None = None, nsPort: int | None = None) -> None:
        super().__init__(ident, esURI, nsHost, nsPort)
        with self._es_lock:
            self._es._pyroBind()
        if not isinstance(pipeline, int) or pipeline < 0:
            raise ValueError(f"pipeline must be a whole number >= 0, not {pipeline!r}")
        self._pipeline = _Pipeline(self, pipeline) if pipeline else None

    def publish(self, subjects: Subjects, msg: t.Any) -> int | None:
        """Publish ``msg`` under each subject.

        Synchronous (default): returns how many events the ES queued, once the
        ES accepted them; it blocks while a receiving subscriber's queue is
        full, under the default policy.

        Pipelined: checks the arguments, queues the publish and returns None at
        once; a sender thread ships queued publishes in order, many per call.
        It blocks only while ``pipeline`` publishes are on their way (back
        pressure). An error the ES reports for an earlier publish is raised by
        the next ``publish`` or ``flush``.
        """
        if self._pipeline is not None:
            subjects = as_texts(subjects, "subjects")
            if _fast_serializer(msg) is None:
                self._check_serializable(msg)  # here, not in the batch it would spoil for its neighbours
            self._pipeline.put(subjects, msg)
            return None
        try:
            return self._call_es("publish", subjects, msg, serializer=_fast_serializer(msg))
        except errors.CommunicationError as error:
            self._explain_failure(msg, error)
            raise
        except TypeError as error:
            self._explain_failure(msg, error)
            raise

    @staticmethod
    def _check_serializable(msg: t.Any) -> int:
        """The message's serialized size; TypeError if the configured serializer cannot carry it."""
        try:
            return len(serializers.serializers[pyro_config.SERIALIZER].dumps(msg))
        except Exception as failure:
            raise TypeError(f"the message cannot be sent with the {pyro_config.SERIALIZER} serializer: {failure}") from None

    def _explain_failure(self, msg: t.Any, error: Exception) -> None:
        """Turn what Pyro5 reports about an unsendable or oversized message into a clear error."""
        if hasattr(error, "_pyroTraceback"):
            return  # raised by the ES, with its own message
        try:
            size = self._check_serializable(msg)
        except TypeError as failure:
            raise failure from error
        if isinstance(error, errors.CommunicationError):
            limit = self._call_es("limits")["max_message_size"]
            if size > limit:
                raise ValueError(f"the message is {size} bytes when serialized; the Event Service accepts at most "
                                 f"{limit} bytes (setting max_message_size)") from error

    def flush(self, timeout: float | None = None) -> None:
        """Wait until every pipelined publish was accepted by the ES; raise the first error.

        Raises TimeoutError if that takes longer than ``timeout`` seconds. A no-op
        for a synchronous Publisher.
        """
        if self._pipeline is not None:
            self._pipeline.flush(timeout)

    def close(self) -> None:
        """Flush pipelined publishes, then drop the connection to the ES."""
        try:
            if self._pipeline is not None:
                self._pipeline.close()
        finally:
            with self._es_lock:
                self._es._pyroClaimOwnership()
                self._es._pyroRelease()

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, *exc_info: t.Any) -> None:
        self.close()


_PLAIN_SCALARS = frozenset((str, int, float, bool, type(None)))


def _is_plain(value: t.Any, depth: int = 0) -> bool:
    kind = type(value)
    if kind in _PLAIN_SCALARS:
        return True
    if depth > 16:
        return False
    if kind is tuple or kind is list:
        return all(_is_plain(item, depth + 1) for item in value)
    if kind is dict:
        return all(type(key) in (str, int) and _is_plain(item, depth + 1) for key, item in value.items())
    return False


def _fast_serializer(payload: t.Any) -> str | None:
    """'marshal' where it carries ``payload`` exactly as the configured serializer would, else None.

    For built-in scalars, tuples, lists and dicts, serpent (Pyro5's default)
    and marshal give the receiver the same values, and marshal costs a
    fraction of serpent's parsing on the Event Service. Any other type, or
    another configured serializer (json and msgpack turn tuples into lists),
    keeps the configured one.
    """
    if pyro_config.SERIALIZER in ("serpent", "marshal") and _is_plain(payload):
        return "marshal"
    return None


_REMOTE_ERRORS: dict[str, type[Exception]] = {"TypeError": TypeError, "ValueError": ValueError}


class _Pipeline:
    """The pipelined Publisher's queue and sender thread: order kept, errors kept, bounded."""

    def __init__(self, client: Publisher, window: int) -> None:
        self._client = client
        self._window = window
        self._pending: collections.deque[tuple[list[str], t.Any]] = collections.deque()
        self._in_flight = 0
        self._sent = 0  # publishes handed to the ES so far, to number errors
        self._error: Exception | None = None
        self._closed = False
        self._condition = threading.Condition()
        self._thread = threading.Thread(target=self._send_loop, name="es-publisher-pipeline", daemon=True)
        self._thread.start()

    def put(self, subjects: list[str], msg: t.Any) -> None:
        with self._condition:
            self._raise_error()
            if self._closed:
                raise RuntimeError("publish() on a closed Publisher")
            while len(self._pending) + self._in_flight >= self._window:
                self._condition.wait()
                self._raise_error()
            self._pending.append((subjects, msg))
            if len(self._pending) == 1:
                self._condition.notify_all()

    def flush(self, timeout: float | None) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._condition:
            while self._pending or self._in_flight:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise TimeoutError(f"{len(self._pending) + self._in_flight} publishes not accepted within {timeout}s")
                self._condition.wait(remaining)
            self._raise_error()

    def close(self) -> None:
        try:
            self.flush(None)
        finally:
            with self._condition:
                self._closed = True
                self._condition.notify_all()
            self._thread.join()

    def _raise_error(self) -> None:
        error, self._error = self._error, None
        if error is not None:
            raise error

    def _send_loop(self) -> None:
        while True:
            with self._condition:
                while not self._pending and not self._closed:
                    self._condition.wait()
                if not self._pending:
                    return
                batch = list(self._pending)
                self._pending.clear()
                self._in_flight = len(batch)
            error = None
            try:
                refused = self._client._call_es("publishBatch", batch, serializer=_fast_serializer(batch))
                if refused:
                    index, kind, message = refused[0]
                    error = _REMOTE_ERRORS.get(kind, errors.PyroError)(
                        f"pipelined publish #{self._sent + index + 1} refused: {message}")
            except Exception as failure:  # kept for the caller's next publish()/flush()
                error = failure
            with self._condition:
                self._sent += len(batch)
                self._in_flight = 0
                if error is not None and self._error is None:
                    self._error = error
                self._condition.notify_all()


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


class Subscriber(_Client):
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
        self._subjects.update(_texts(subjects))

    def subscribeMatch(self, subjectPatterns: Subjects) -> None:
        """Receive events whose subject matches one of these regex patterns (case-insensitive, anchored at the start)."""
        self._call_es("subscribeMatch", subjectPatterns, self._callback_proxy(), keep_connection=False)
        self._patterns.update(_texts(subjectPatterns))

    def unsubscribe(self, subjects: Subjects) -> None:
        """Stop receiving these exact subjects and patterns."""
        self._call_es("unsubscribe", subjects, self._callback_proxy(), keep_connection=False)
        texts = set(_texts(subjects))
        self._subjects -= texts
        self._patterns -= texts

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
        port = old.sock.getsockname()[1]
        old.close()
        self._daemon = self._build_daemon(pyro_config.HOST, port)  # same host, port and object id: same URI


def _texts(value: Subjects) -> list[str]:
    return as_texts(value, "subjects")
