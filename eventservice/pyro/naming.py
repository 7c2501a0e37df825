"""Finding the name server and the Event Service in it, passphrase-aware.

Pyro5's ``locate_ns`` broadcasts when given no host and always makes plain
proxies, which a passphrase-protected name server refuses. These helpers go
straight to the configured (or given) host and port with a proxy that proves
the passphrase, and fail fast with a :class:`Pyro5.errors.NamingError` that
says what to start.
"""
from __future__ import annotations

import logging
import typing as t

from Pyro5 import config, core, errors
from Pyro5.client import Proxy

from . import auth

__all__ = ["EVENTSERVER_NAME", "locate_ns", "lookup_es", "es_proxy", "is_alive"]

log = logging.getLogger(__name__)

#: the well-known name of the Event Service in the name server
EVENTSERVER_NAME = "Pyro.EventService"

#: seconds to wait for a name server that does not answer
LOOKUP_TIMEOUT = 5.0


def locate_ns(
    host: str | None = None,
    port: int | None = None,
    authenticator: auth.Authenticator | None = None,
) -> Proxy:
    """A connected proxy to the name server at ``host:port`` (default: Pyro5's NS_HOST/NS_PORT).

    Raises NamingError when no name server answers there, and PassphraseError
    when it refuses the passphrase.
    """
    host = host or config.NS_HOST
    port = port or config.NS_PORT
    uri = core.URI(f"PYRO:{core.NAMESERVER_NAME}@{host}:{port}")
    # a stock Pyro5 name server checks no passphrase and cannot answer the proof: accept that
    proxy = auth.make_proxy(uri, authenticator, require_answer=False)
    proxy._pyroTimeout = LOOKUP_TIMEOUT
    try:
        proxy._pyroBind()
    except auth.PassphraseError:
        raise
    except errors.PyroError as error:
        raise errors.NamingError(
            f"no name server answers at {host}:{port} ({error}); start one with 'es --ns' "
            "(name server and Event Service in one process) or 'python -m Pyro5.nameserver', "
            "or pass esURI to reach the Event Service directly"
        ) from error
    return proxy


def lookup_es(
    host: str | None = None,
    port: int | None = None,
    authenticator: auth.Authenticator | None = None,
) -> core.URI:
    """The URI registered under EVENTSERVER_NAME; NamingError when there is none."""
    with locate_ns(host, port, authenticator) as ns:
        try:
            return ns.lookup(EVENTSERVER_NAME)
        except errors.NamingError as error:
            location = f"{host or config.NS_HOST}:{port or config.NS_PORT}"
            raise errors.NamingError(
                f"no Event Service is registered as {EVENTSERVER_NAME!r} in the name server at {location}; "
                "start one with 'es'"
            ) from error


def es_proxy(
    esURI: str | core.URI | None = None,
    authenticator: auth.Authenticator | None = None,
    ns_host: str | None = None,
    ns_port: int | None = None,
) -> Proxy:
    """A proxy to the Event Service: at ``esURI`` when given, else as found in the name server."""
    uri = core.URI(str(esURI)) if esURI is not None else lookup_es(ns_host, ns_port, authenticator)
    return auth.make_proxy(uri, authenticator)


def is_alive(uri: t.Any, authenticator: auth.Authenticator | None = None, timeout: float = 2.0) -> bool:
    """True if something answers a ping at ``uri`` (used to spot stale registrations)."""
    proxy = auth.make_proxy(uri, authenticator)
    proxy._pyroTimeout = timeout
    try:
        with proxy:
            proxy.ping()
        return True
    except auth.PassphraseError:
        return True  # alive, just not ours to talk to
    except (errors.PyroError, AttributeError):
        return False
