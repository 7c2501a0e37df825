"""What both client skeletons share: finding the Event Service, the passphrase, one reusable connection."""
from __future__ import annotations

import logging
import threading
import time
import typing as t

from Pyro5 import config as pyro_config
from Pyro5 import core, errors

from ..core.subjects import as_texts
from ..pyro import auth, naming, wire

__all__ = ["Client", "Subjects", "texts"]

log = logging.getLogger(__name__)

Subjects = str | list[str] | tuple[str, ...]

#: first and longest pause between attempts to reach the Event Service again
RETRY_FIRST_DELAY = 0.05
RETRY_MAX_DELAY = 1.0


def texts(value: Subjects) -> list[str]:
    """Subjects or patterns as a list of str; TypeError/ValueError naming what is wrong."""
    return as_texts(value, "subjects")


class Client:
    """What both skeletons share: finding the ES, the passphrase, one reusable proxy."""

    def __init__(self, ident: str | None, esURI: str | core.URI | None, nsHost: str | None, nsPort: int | None) -> None:
        self._es_ident = ident
        self._authenticator = auth.Authenticator(ident) if ident else None
        self._esURI = esURI
        self._ns_location = (nsHost, nsPort)
        self._unreachable_since: float | None = None  # when calls started failing to reach any ES
        self._stop_retrying = threading.Event()
        self._es_lock = threading.RLock()
        self._es = naming.es_node_proxy(esURI, self._authenticator, *self._ns_location)
        self._seq = 0  # of the calls on self._es

    # -- Pyro3's attributes ----------------------------------------------

    @property
    def ES_uri(self) -> core.URI:
        """The URI of the Event Service in use (Pyro3's attribute); found again after a reconnect."""
        return self._es._pyroUri

    @property
    def ES_ident(self) -> str | None:
        """The passphrase given as ``ident`` (Pyro3's attribute); it never leaves this process."""
        return self._es_ident

    def getES(self) -> t.Any:
        """A new proxy to the Event Service, owned by the calling thread."""
        return auth.make_proxy(self._es._pyroUri, self._authenticator)

    def _call_es(self, method: str, *args: t.Any, keep_connection: bool = True, serializer: str | None = None,
                 retry_for: float = 0.0) -> t.Any:
        """Call the ES from any thread; after a lost connection, find the ES again and retry.

        ``retry_for``: seconds of outage (counted from the first failed call) during
        which calls keep trying, with capped backoff, to reach an Event Service
        again (found anew through the name server each time); 0 retries once at once.
        ``serializer`` overrides Pyro5's configured one for this call (see ``_fast_serializer``).
        """
        with self._es_lock:
            self._es._pyroClaimOwnership()
            try:
                try:
                    return self._invoke(method, args, serializer)
                except errors.CommunicationError as error:  # lost or refused connection: the ES may have restarted
                    if isinstance(error, (errors.TimeoutError, auth.PassphraseError, errors.ProtocolError)):
                        raise  # a timeout, a refused passphrase, a request too large to send: retrying cannot help
                    log.info("Event Service connection failed (%s); looking it up again", error)
                    return self._call_again(method, args, serializer, retry_for)
            finally:
                if not keep_connection:
                    self._es._pyroRelease()

    def _call_again(self, method: str, args: tuple[t.Any, ...], serializer: str | None, retry_for: float) -> t.Any:
        """Find the ES again and retry, with capped backoff, until ``retry_for`` seconds of outage."""
        now = time.monotonic()
        if self._unreachable_since is None:
            self._unreachable_since = now
        deadline = self._unreachable_since + retry_for
        delay = RETRY_FIRST_DELAY
        attempts = 0
        while True:
            attempts += 1
            reached = False
            try:
                self._reconnect()
                if self._es._pyroConnection is None:
                    self._es._pyroBind()  # connects and proves the passphrase
                reached = True
                result = self._invoke(method, args, serializer)
            except (errors.CommunicationError, errors.NamingError) as error:
                if isinstance(error, (errors.TimeoutError, auth.PassphraseError)):
                    raise
                if reached and isinstance(error, errors.CommunicationError):
                    # a reachable ES dropped this very call again: it refuses the request (too large, say);
                    # waiting for it to come back would only delay the error by reconnectTimeout
                    raise errors.CommunicationError(f"the Event Service closed the connection on {method} again, "
                                                    f"right after it accepted a new one: {error}") from error
                remaining = deadline - time.monotonic()
                if retry_for <= 0:
                    raise  # no patience asked for: the error as it is
                if self._stop_retrying.is_set():
                    raise errors.CommunicationError(f"closed while waiting for an Event Service: {error}") from error
                if remaining <= 0:
                    raise errors.CommunicationError(
                        f"no Event Service reachable for {retry_for:g} s "
                        f"(reconnectTimeout); last error: {error}") from error
                if attempts == 1:
                    log.warning("Event Service unreachable (%s); trying again for up to %.1f s", error, remaining)
                self._stop_retrying.wait(min(delay, remaining))
                delay = min(delay * 2, RETRY_MAX_DELAY)
                continue
            if attempts > 1:
                log.warning("Event Service reachable again at %s after %.1f s", self._es._pyroUri, time.monotonic() - now)
            return result

    def _invoke(self, method: str, args: tuple[t.Any, ...], serializer: str | None) -> t.Any:
        es = self._es
        if es._pyroConnection is None:
            es._pyroBind()  # connects and proves the passphrase
        self._seq = (self._seq + 1) & 0xFFFF
        try:
            result = wire.call(es._pyroConnection, method, args, serializer or pyro_config.SERIALIZER, self._seq)
        except (errors.CommunicationError, KeyboardInterrupt):
            es._pyroRelease()  # a reply that comes late must not answer the next call
            raise
        self._unreachable_since = None
        return result

    def _reconnect(self) -> None:
        self._es._pyroRelease()
        self._es = naming.es_node_proxy(self._esURI, self._authenticator, *self._ns_location)
