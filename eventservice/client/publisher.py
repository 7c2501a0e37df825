"""The Publisher skeleton: synchronous or pipelined publishes to the Event Service."""
from __future__ import annotations

import collections
import threading
import time
import typing as t

from Pyro5 import config as pyro_config
from Pyro5 import core, errors, serializers

from ..core.subjects import as_texts
from .base import Client, Subjects

__all__ = ["Publisher"]


class Publisher(Client):
    """Publishes events; safe to share between threads.

    :param ident: the passphrase the ES requires, if any
    :param esURI: the ES's URI; None finds it through the name server
    :param pipeline: 0 (default) makes ``publish`` synchronous; N > 0 turns on
        pipelined mode with at most N publishes on their way (see ``publish``)
    :param nsHost: the name server's host (default: Pyro5's NS_HOST)
    :param nsPort: the name server's port (default: Pyro5's NS_PORT)
    :param reconnectTimeout: seconds a publish keeps trying to reach an Event
        Service again after the connection was lost (an ES restart), finding it
        anew through the name server each time; only then it raises
        CommunicationError (default 30; 0: one retry at once)
    Raises NamingError when there is no name server or no ES registered in it.
    Publishes made while no ES runs are not kept: a publish either reaches an
    ES or raises.
    """

    def __init__(self, ident: str | None = None, esURI: str | core.URI | None = None, pipeline: int = 0,
                 nsHost: str | None = None, nsPort: int | None = None, reconnectTimeout: float = 30.0) -> None:
        super().__init__(ident, esURI, nsHost, nsPort)
        with self._es_lock:
            self._es._pyroBind()
        if not isinstance(pipeline, int) or pipeline < 0:
            raise ValueError(f"pipeline must be a whole number >= 0, not {pipeline!r}")
        if not isinstance(reconnectTimeout, (int, float)) or reconnectTimeout < 0:
            raise ValueError(f"reconnectTimeout must be a number of seconds >= 0, not {reconnectTimeout!r}")
        self._publish_retry_for = float(reconnectTimeout)
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
            return self._call_es("publish", subjects, msg, serializer=_fast_serializer(msg),
                                 retry_for=self._publish_retry_for)
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
            try:
                limit = self._call_es("limits")["max_message_size"]
            except errors.CommunicationError:
                return  # no ES to ask: the original error says it all
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
        self._stop_retrying.set()  # a publish waiting for an ES to come back gives up now
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
                refused = self._client._call_es("publishBatch", batch, serializer=_fast_serializer(batch),
                                                retry_for=self._client._publish_retry_for)
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
