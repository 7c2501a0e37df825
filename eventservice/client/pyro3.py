"""Pyro3 names on the client skeletons that have no Pyro5 meaning: each fails saying what to use instead.

Pyro3's Subscriber was a Pyro object (``Pyro.core.ObjBase``), so ported code
may call that base class's methods on it; the few that fit Pyro5 live on the
Subscriber itself (getDaemon, getProxy, getAttrProxy, GUID). The name server
proxy offered as ``Subscriber.NS`` speaks Pyro5's name server API and also
takes Pyro3's method names where they have a Pyro5 counterpart.
"""
from __future__ import annotations

import typing as t

from Pyro5 import config, core, errors
from Pyro5.client import Proxy

from ..pyro import auth

__all__ = ["Pyro3NameServerProxy", "Pyro3ObjectMethods", "name_server_proxy"]


def _unsupported(name: str, instead: str) -> t.Callable[..., t.NoReturn]:
    def method(self: t.Any, *args: t.Any, **kwargs: t.Any) -> t.NoReturn:
        raise NotImplementedError(f"{name}() is Pyro3 API with no Pyro5 counterpart: {instead}")

    method.__name__ = name
    method.__doc__ = f"Pyro3's {name}(); not available on Pyro5: {instead}."
    return method


class Pyro3ObjectMethods:
    """Pyro3's ``ObjBase`` methods that cannot work on Pyro5: each raises NotImplementedError saying why."""

    setGUID = _unsupported("setGUID", "a Subscriber's object id is chosen by its daemon; see GUID()")
    delegateTo = _unsupported("delegateTo", "subclass Subscriber and override event(), or call your object from it")
    setPyroDaemon = _unsupported("setPyroDaemon", "the Subscriber owns its daemon; serve it with getDaemon()")
    setCodeValidator = _unsupported("setCodeValidator", "Pyro5 has no mobile code")
    remote_supply_code = _unsupported("remote_supply_code", "Pyro5 has no mobile code")
    remote_retrieve_code = _unsupported("remote_retrieve_code", "Pyro5 has no mobile code")
    getLocalStorage = _unsupported("getLocalStorage", "use Pyro5.callcontext.current_context inside event()")
    Pyro_dyncall = _unsupported("Pyro_dyncall", "Pyro5 calls exposed methods itself; override event()")


class Pyro3NameServerProxy(Proxy):
    """Pyro5's name server proxy that also takes Pyro3's names where they fit: resolve, unregister, flatlist.

    Pyro5's name server has no groups: createGroup, deleteGroup and names
    starting with ':' (Pyro3's root group) fail with an error saying so.
    """

    def resolve(self, name: str) -> core.URI:
        """Pyro3's resolve(name): Pyro5's lookup(name)."""
        return self.lookup(_flat(name))

    def unregister(self, name: str) -> int:
        """Pyro3's unregister(name): Pyro5's remove(name)."""
        return self.remove(_flat(name))

    def flatlist(self) -> list[tuple[str, str]]:
        """Pyro3's flatlist(): (name, uri) pairs of everything registered."""
        return sorted(self.list().items())

    createGroup = _unsupported("createGroup", "Pyro5's name server has no groups; use dotted names and "
                               "list(prefix=...)")
    deleteGroup = _unsupported("deleteGroup", "Pyro5's name server has no groups; remove(prefix=...) removes "
                               "names by prefix")
    fullName = _unsupported("fullName", "Pyro5's name server has no groups: a name is used as written")


def _flat(name: str) -> str:
    if isinstance(name, str) and name.startswith(":"):
        raise errors.NamingError(f"{name!r} is a Pyro3 group path; Pyro5's name server has no groups: use "
                                 f"{name.lstrip(':')!r} (the Event Service is {'Pyro.EventService'!r})")
    return name


class _PlainNameServerProxy(Pyro3NameServerProxy, auth.RefusalAwareProxy):
    pass


class _AuthNameServerProxy(Pyro3NameServerProxy, auth.AuthProxy):
    pass


def name_server_proxy(host: str | None, port: int | None, authenticator: auth.Authenticator | None) -> Proxy:
    """An unconnected proxy to the name server at host:port; it connects on its first call, in that thread."""
    uri = core.URI(f"PYRO:{core.NAMESERVER_NAME}@{host or config.NS_HOST}:{port or config.NS_PORT}")
    if authenticator is None:
        return _PlainNameServerProxy(uri)
    return _AuthNameServerProxy(uri, authenticator, require_answer=False)  # a stock name server proves nothing
