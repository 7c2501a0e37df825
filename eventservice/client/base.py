"""What both client skeletons share: finding the Event Service, the passphrase, one reusable connection."""
from __future__ import annotations

import logging
import threading
import typing as t

from Pyro5 import config as pyro_config
from Pyro5 import core, errors

from ..core.subjects import as_texts
from ..pyro import auth, naming, wire

__all__ = ["Client", "Subjects", "texts"]

log = logging.getLogger(__name__)

Subjects = t.Union[str, t.List[str], t.Tuple[str, ...]]


def texts(value: Subjects) -> list[str]:
    """Subjects or patterns as a list of str; TypeError/ValueError naming what is wrong."""
    return as_texts(value, "subjects")


class Client:
    """What both skeletons share: finding the ES, the passphrase, one reusable proxy."""

    def __init__(self, ident: str | None, esURI: str | core.URI | None, nsHost: str | None, nsPort: int | None) -> None:
        self._authenticator = auth.Authenticator(ident) if ident else None
        self._esURI = esURI
        self._ns_location = (nsHost, nsPort)
        self._es_lock = threading.RLock()
        self._es = naming.es_node_proxy(esURI, self._authenticator, *self._ns_location)
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
        self._es = naming.es_node_proxy(self._esURI, self._authenticator, *self._ns_location)
