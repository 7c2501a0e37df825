"""Finding the name server and the Event Service in it, passphrase-aware.

Pyro5's ``locate_ns`` broadcasts when given no host and always makes plain
proxies, which a passphrase-protected name server refuses. These helpers go
straight to the configured (or given) host and port with a proxy that proves
the passphrase, and fail fast with a :class:`Pyro5.errors.NamingError` that
says what to start.
"""
from __future__ import annotations

import logging
import random
import socket
import typing as t

from Pyro5 import config, core, errors
from Pyro5.client import Proxy

from . import auth

__all__ = [
    "EVENTSERVER_NAME",
    "NODE_METADATA",
    "es_node_proxy",
    "es_proxy",
    "find_es_nodes",
    "is_alive",
    "locate_ns",
    "lookup_es",
    "lookup_es_node",
    "node_metadata",
    "node_name",
]

log = logging.getLogger(__name__)

#: the well-known name of the Event Service in the name server
EVENTSERVER_NAME = "Pyro.EventService"

#: Pyro5 metadata every Event Service node of a backbone registers with (besides "host:<its host name>")
NODE_METADATA = "eventservice.node"

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


# -- several Event Services (es --backbone) ----------------------------------


def node_name(uri: core.URI) -> str:
    """The name a backbone node registers under, besides EVENTSERVER_NAME: one per node."""
    return f"{EVENTSERVER_NAME}.{uri.host}:{uri.port}"


def node_metadata() -> set[str]:
    """The metadata a backbone node registers with: NODE_METADATA and ``host:<this machine's name>``."""
    return {NODE_METADATA, f"host:{socket.gethostname()}"}


def find_es_nodes(
    host: str | None = None,
    port: int | None = None,
    authenticator: auth.Authenticator | None = None,
) -> list[core.URI]:
    """The URIs of the registered backbone nodes, preferred first: those on this machine, then the others,
    each group shuffled so clients spread over the nodes. Empty when no node is registered; nodes
    that died may still be listed (see ``lookup_es_node``)."""
    own_host = f"host:{socket.gethostname()}"
    with locate_ns(host, port, authenticator) as ns:
        found = ns.yplookup(meta_all=[NODE_METADATA], return_metadata=True)
    local: list[core.URI] = []
    remote: list[core.URI] = []
    for uri, metadata in found.values():
        (local if own_host in metadata else remote).append(core.URI(str(uri)))
    random.shuffle(local)
    random.shuffle(remote)
    return local + remote


def lookup_es_node(
    host: str | None = None,
    port: int | None = None,
    authenticator: auth.Authenticator | None = None,
) -> core.URI:
    """The Event Service a client should use: the first backbone node (see ``find_es_nodes``) that
    answers, else whatever is registered as EVENTSERVER_NAME (a single Event Service)."""
    for uri in find_es_nodes(host, port, authenticator):
        if is_alive(uri, authenticator, timeout=1.0):
            return uri
        log.info("Event Service node %s does not answer; trying the next", uri)
    return lookup_es(host, port, authenticator)


def es_node_proxy(
    esURI: str | core.URI | None = None,
    authenticator: auth.Authenticator | None = None,
    ns_host: str | None = None,
    ns_port: int | None = None,
) -> Proxy:
    """``es_proxy``, but without ``esURI`` it picks a live backbone node, preferring one on this machine."""
    uri = core.URI(str(esURI)) if esURI is not None else lookup_es_node(ns_host, ns_port, authenticator)
    return auth.make_proxy(uri, authenticator)
