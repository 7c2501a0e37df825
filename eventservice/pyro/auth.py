"""The ``ident`` passphrase: proving it on every connection without sending it.

Pyro5's connection handshake is one message from the proxy and one reply, so
the proof has to go first: the proxy sends ``HMAC(key, object id | time |
nonce)``; the daemon checks the MAC in constant time, that the time is within
a window of its own clock and that it has not seen the nonce before in that
window (replay protection), and that it hosts that object. The daemon answers
with its own MAC over the proxy's nonce, so the proxy knows it reached a
holder of the passphrase too. The key is derived from the passphrase with
PBKDF2, so a captured handshake does not make guessing the passphrase cheap.

What one message first cannot do: bind the proof to one daemon instance. A
handshake captured on the wire can be replayed once, within the window, at
another daemon that hosts the same object id under the same passphrase (a
second ES, or the same ES restarted). Use TLS where that matters.

A refused handshake reaches the client as :class:`PassphraseError`.
"""
from __future__ import annotations

import functools
import hashlib
import hmac
import logging
import secrets
import threading
import time
import typing as t

from Pyro5 import errors
from Pyro5.client import Proxy

__all__ = ["Authenticator", "AuthProxy", "RefusalAwareProxy", "AuthDaemonMixin", "PassphraseError", "make_proxy"]

log = logging.getLogger(__name__)

_PROTOCOL = "eventservice-ident-1"
_REFUSED = "passphrase refused"


class PassphraseError(errors.SecurityError):
    """The other side refused the passphrase (wrong, missing, or a replayed proof)."""


@functools.lru_cache(maxsize=8)
def _derive_key(passphrase: str) -> bytes:
    return hashlib.pbkdf2_hmac("sha256", passphrase.encode("utf-8"), _PROTOCOL.encode(), 100_000)


class Authenticator:
    """Makes and checks handshake proofs for one passphrase.

    :param passphrase: the shared secret (``ident``)
    :param window: seconds of clock difference tolerated between the two sides
    """

    def __init__(self, passphrase: str, window: float = 120.0) -> None:
        if not isinstance(passphrase, str) or not passphrase:
            raise ValueError("the passphrase (ident) must be a non-empty string")
        self._key = _derive_key(passphrase)
        self._window = window
        self._seen: dict[str, float] = {}  # nonce -> time it may be forgotten
        self._seen_lock = threading.Lock()

    def _mac(self, *parts: str) -> str:
        return hmac.new(self._key, "|".join((_PROTOCOL, *parts)).encode("utf-8"), hashlib.sha256).hexdigest()

    def client_proof(self, object_id: str) -> dict[str, t.Any]:
        """The handshake data a proxy sends to reach ``object_id``."""
        stamp = repr(time.time())
        nonce = secrets.token_hex(16)
        return {"auth": _PROTOCOL, "object": object_id, "time": stamp, "nonce": nonce,
                "mac": self._mac("client", object_id, stamp, nonce)}

    def check_client_proof(self, data: t.Any, hosted: t.Container[str]) -> dict[str, str]:
        """Accept a proxy's proof and return the daemon's answer; raise PassphraseError otherwise."""
        if not isinstance(data, dict) or data.get("auth") != _PROTOCOL:
            raise PassphraseError(f"{_REFUSED}: this server requires a passphrase (ident) and none was given")
        try:
            object_id, stamp, nonce, mac = (str(data[name]) for name in ("object", "time", "nonce", "mac"))
            sent_at = float(stamp)
        except (KeyError, ValueError, TypeError):
            raise PassphraseError(f"{_REFUSED}: malformed proof") from None
        if not hmac.compare_digest(mac, self._mac("client", object_id, stamp, nonce)):
            raise PassphraseError(f"{_REFUSED}: wrong passphrase (ident)")
        now = time.time()
        if abs(now - sent_at) > self._window:
            raise PassphraseError(
                f"{_REFUSED}: proof is {now - sent_at:.0f}s old; clocks differ by more than {self._window:.0f}s")
        if object_id not in hosted:
            raise PassphraseError(f"{_REFUSED}: proof was made for another server")
        with self._seen_lock:
            self._forget_expired(now)
            if nonce in self._seen:
                raise PassphraseError(f"{_REFUSED}: replayed proof")
            self._seen[nonce] = now + 2 * self._window
        return {"auth": _PROTOCOL, "mac": self._mac("server", nonce)}

    def check_server_answer(self, sent: dict[str, t.Any], answer: t.Any) -> None:
        """Raise PassphraseError unless the daemon's answer proves it holds the passphrase."""
        expected = self._mac("server", sent["nonce"])
        if not isinstance(answer, dict) or not hmac.compare_digest(str(answer.get("mac", "")), expected):
            raise PassphraseError(f"{_REFUSED}: the server could not prove it knows the passphrase (ident)")

    def _forget_expired(self, now: float) -> None:
        # dicts keep insertion order and expiry times only grow, so the oldest are first
        while self._seen:
            nonce, expiry = next(iter(self._seen.items()))
            if expiry > now:
                break
            del self._seen[nonce]


class RefusalAwareProxy(Proxy):
    """A plain Pyro5 proxy that reports a refused passphrase as PassphraseError."""

    def _pyroInvoke(self, *args: t.Any, **kwargs: t.Any) -> t.Any:
        try:
            return super()._pyroInvoke(*args, **kwargs)
        except errors.CommunicationError as error:
            _raise_if_refused(error)
            raise

    def _pyroBind(self) -> bool:
        try:
            return super()._pyroBind()
        except errors.CommunicationError as error:
            _raise_if_refused(error)
            raise

    def _pyroGetMetadata(self, *args: t.Any, **kwargs: t.Any) -> None:
        try:
            super()._pyroGetMetadata(*args, **kwargs)
        except errors.CommunicationError as error:
            _raise_if_refused(error)
            raise


class AuthProxy(RefusalAwareProxy):
    """A Pyro5 proxy that proves the passphrase at every (re)connect.

    :param require_answer: also demand that the daemon proves the passphrase back
        (False for a name server that may be a stock Pyro5 one)
    """

    def __init__(self, uri: t.Any, authenticator: Authenticator, require_answer: bool = True) -> None:
        super().__init__(uri)
        self.__dict__["_es_auth"] = authenticator
        self.__dict__["_es_require_answer"] = require_answer
        self.__dict__["_es_sent"] = None

    def __getstate__(self) -> t.Any:  # a serialized AuthProxy travels as a plain proxy: no proof leaves
        uri, oneway, methods, attrs, _, serializer = super().__getstate__()
        return uri, oneway, methods, attrs, "hello", serializer

    def __copy__(self) -> AuthProxy:
        return AuthProxy(self._pyroUri, self._es_auth, self._es_require_answer)

    @property
    def _pyroHandshake(self) -> dict[str, t.Any]:
        sent = self._es_auth.client_proof(self._pyroUri.object)
        self.__dict__["_es_sent"] = sent
        return sent

    @_pyroHandshake.setter
    def _pyroHandshake(self, value: t.Any) -> None:
        pass  # Proxy.__init__ assigns the default; the proof is made fresh per connect instead

    def _pyroValidateHandshake(self, response: t.Any) -> None:
        if self._es_require_answer:
            try:
                self._es_auth.check_server_answer(self._es_sent, response)
            except PassphraseError:
                self._pyroRelease()  # Pyro5 keeps the connection it just made: never use it
                raise


def _raise_if_refused(error: Exception) -> None:
    if _REFUSED in str(error):
        raise PassphraseError(str(error)) from error


class AuthDaemonMixin:
    """Daemon side: refuse every connection without a valid, fresh proof.

    Set ``self.authenticator`` (None accepts everyone, as a plain daemon does).
    """

    authenticator: Authenticator | None = None
    objectsById: dict[str, t.Any]

    def validateHandshake(self, conn: t.Any, data: t.Any) -> t.Any:
        if self.authenticator is None:
            return super().validateHandshake(conn, data)  # type: ignore[misc]
        try:
            return self.authenticator.check_client_proof(data, self.objectsById)
        except PassphraseError as refusal:
            log.warning("refused connection from %s: %s", _peer(conn), refusal)
            raise


def _peer(conn: t.Any) -> str:
    try:
        host, port = conn.sock.getpeername()[:2]
        return f"{host}:{port}"
    except (OSError, AttributeError, TypeError):
        return "?"


def make_proxy(uri: t.Any, authenticator: Authenticator | None, require_answer: bool = True) -> Proxy:
    """A proxy that proves the passphrase when there is one; either way a refusal raises PassphraseError."""
    if authenticator is None:
        return RefusalAwareProxy(uri)
    return AuthProxy(uri, authenticator, require_answer)
