"""Keeping the Event Service registered in its name server across name-server restarts.

A stock ``python -m Pyro5.nameserver`` forgets everything when it restarts
(unless it keeps a storage), and new clients then get ``NamingError``. A
:class:`RegistrationWatcher` looks the registration up every
``CHECK_SECONDS`` and registers the ES again when it is missing. While the
name server does not answer, it retries with a capped backoff (at most
``MAX_BACKOFF_SECONDS`` between tries), so it registers again within
``MAX_BACKOFF_SECONDS`` plus one lookup of the name server answering again.
It logs the outage once and the recovery once.

With ``es --ns`` the name server lives in the ES's own process and cannot
restart without it; the watcher then only brings back a registration that was
removed by hand (``nsc remove``). It never replaces another Event Service
that answers under the same name.
"""
from __future__ import annotations

import logging
import threading
import time
import typing as t

from Pyro5 import errors

from ..pyro import auth, naming

__all__ = ["CHECK_SECONDS", "MAX_BACKOFF_SECONDS", "RegistrationWatcher"]

log = logging.getLogger(__name__)

#: seconds between checks while the name server answers
CHECK_SECONDS = 1.0
#: first and longest wait between tries while the name server does not answer
FIRST_BACKOFF_SECONDS = 0.25
MAX_BACKOFF_SECONDS = 2.0


class RegistrationWatcher:
    """A thread that keeps ``name`` -> ``uri`` registered in the name server at ``ns_host:ns_port``.

    :param authenticator: proves the ES's passphrase to a name server that wants it (``es --ns``)
    :param check_interval: seconds between checks while all is well
    :param max_backoff: longest wait between tries while the name server is down
    """

    def __init__(self, name: str, uri: t.Any, ns_host: str | None, ns_port: int | None,
                 authenticator: auth.Authenticator | None = None,
                 check_interval: float = CHECK_SECONDS, max_backoff: float = MAX_BACKOFF_SECONDS) -> None:
        if not check_interval > 0 or not max_backoff > 0:
            raise ValueError("check_interval and max_backoff must be greater than 0")
        self.name = name
        self.uri = str(uri)
        self._ns_location = (ns_host, ns_port)
        self._authenticator = authenticator
        self._check_interval = check_interval
        self._max_backoff = max_backoff
        self._stop = threading.Event()
        self._working = threading.Lock()  # held while a check may register: stop() waits for it
        self._thread: threading.Thread | None = None
        self._down_since: float | None = None
        self._yielded_to: str | None = None
        #: times this watcher registered the ES again (for tests and monitoring)
        self.reregistrations = 0

    def start(self) -> RegistrationWatcher:
        """Start checking in a daemon thread; returns self."""
        self._thread = threading.Thread(target=self._run, name="es-registration", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop checking. Once this returns, the watcher registers nothing more (a check under way is
        waited for, up to twice the name-server lookup timeout)."""
        self._stop.set()
        if self._working.acquire(timeout=naming.LOOKUP_TIMEOUT * 2):  # a check under way ends within its timeouts
            self._working.release()

    def check(self) -> bool:
        """Look the registration up once and register again if it is missing; True if the name server answered."""
        with self._working:
            if self._stop.is_set():
                return True
            try:
                with naming.locate_ns(*self._ns_location, authenticator=self._authenticator) as ns:
                    self._recovered()
                    try:
                        registered: str | None = str(ns.lookup(self.name))
                    except errors.NamingError:
                        registered = None
                    if registered != self.uri and self._may_register(registered):
                        ns.register(self.name, self.uri)
                        self.reregistrations += 1
                        log.warning("registered %s as %s again (the name server had %s)",
                                    self.uri, self.name, registered or "nothing")
                return True
            except errors.PyroError as error:  # NamingError, CommunicationError, PassphraseError
                self._lost(error)
                return False

    # -- internals -------------------------------------------------------

    def _run(self) -> None:
        backoff = FIRST_BACKOFF_SECONDS
        while not self._stop.wait(self._check_interval if self._down_since is None else backoff):
            backoff = FIRST_BACKOFF_SECONDS if self.check() else min(backoff * 2, self._max_backoff)

    def _may_register(self, registered: str | None) -> bool:
        """Register over nothing or a dead ES; leave a live other ES alone (logged once)."""
        if registered is None or not naming.is_alive(registered, self._authenticator):
            self._yielded_to = None
            return True
        if self._yielded_to != registered:
            self._yielded_to = registered
            log.error("another live Event Service is registered as %s (%s); not registering %s over it",
                      self.name, registered, self.uri)
        return False

    def _lost(self, error: Exception) -> None:
        if self._down_since is None:
            self._down_since = time.monotonic()
            log.warning("lost the name server: %s; will register %s again when it answers", error, self.name)

    def _recovered(self) -> None:
        if self._down_since is not None:
            log.warning("name server answers again after %.1f s", time.monotonic() - self._down_since)
            self._down_since = None
