"""The HTTP monitoring endpoint: JSON, Prometheus metrics and a live status page (``es --http``).

Read-only, beside the Event Service in threads of its own:

    GET /             the status page (page.html, self-contained; polls /api/status every second)
    GET /api/status   what the page shows, as JSON
    GET /stats        stats(): counters and gauges, plus uptime and version
    GET /subscribers  one entry per subscriber
    GET /metrics      Prometheus exposition (needs prometheus_client: eventservice[monitoring])

Security: it never shows a message. With a token (``--http-token``) every path
needs it, as ``Authorization: Bearer TOKEN`` or ``?token=TOKEN``, compared in
constant time. An Event Service with a passphrase serves the endpoint without a
token only on a loopback address; a wider bind without a token is refused at
start, so the endpoint is no way around the passphrase. With TLS on (``--ssl-cert``)
it serves HTTPS with the same certificate.
"""
from __future__ import annotations

import collections
import hmac
import importlib.metadata
import importlib.resources
import ipaddress
import json
import logging
import socket
import ssl
import threading
import time
import typing as t

from Pyro5 import config as pyro_config

from ...core.config import Settings
from ...core.rates import SubjectRates
from . import metrics
from .httpserver import BoundedHTTPServer, Response
from .views import split_stats, subscriber_list

__all__ = ["Monitor", "parse_address"]

log = logging.getLogger(__name__)

HISTORY_SECONDS = 300  # the page's chart: the last five minutes, one point a second
TOP_SUBJECTS = 15
PAGE_SUBSCRIBERS = 50  # the page lists the subscribers with the deepest queues; /subscribers lists all
_SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",  # keeps a ?token= out of other sites' logs
}
_PAGE_HEADERS = {
    **_SECURITY_HEADERS,
    "Content-Type": "text/html; charset=utf-8",
    "X-Frame-Options": "DENY",
    # nothing from elsewhere: no external scripts, fonts, images or connections
    "Content-Security-Policy": "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
                               "connect-src 'self'; img-src data:; frame-ancestors 'none'; base-uri 'none'",
}


def parse_address(text: str) -> tuple[str, int]:
    """(host, port) from ``[HOST:]PORT`` (``[::1]:8080`` for IPv6); the host defaults to 127.0.0.1."""
    host, sep, port_text = text.strip().rpartition(":")
    if not sep:
        host = ""
    host = host.strip("[]") or "127.0.0.1"
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError(f"--http wants [HOST:]PORT, got {text!r}") from None
    if not 0 <= port <= 65535:
        raise ValueError(f"--http port must be 0-65535, got {port}")
    return host, port


def is_loopback(host: str) -> bool:
    """True if every address ``host`` resolves to is a loopback address."""
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(str(info[4][0]).split("%")[0]).is_loopback for info in infos)


def _version() -> str:
    try:
        return importlib.metadata.version("eventservice")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _ssl_context() -> ssl.SSLContext | None:
    """A server context from Pyro5's TLS settings (``es --ssl-*``), or None when TLS is off."""
    if not pyro_config.SSL:
        return None
    if not pyro_config.SSL_SERVERCERT:
        raise ValueError("--http with TLS needs the server certificate (--ssl-cert)")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pyro_config.SSL_SERVERCERT, pyro_config.SSL_SERVERKEY or None)
    if pyro_config.SSL_REQUIRECLIENTCERT:  # the ES takes only clients with a certificate: so does its monitor
        context.load_verify_locations(pyro_config.SSL_CACERTS)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def _json(status: int, value: t.Any) -> Response:
    body = json.dumps(value, separators=(",", ":"), allow_nan=False, default=str).encode()
    return status, {**_SECURITY_HEADERS, "Content-Type": "application/json"}, body


def _text(status: int, text: str, **headers: str) -> Response:
    return status, {**_SECURITY_HEADERS, "Content-Type": "text/plain; charset=utf-8", **headers}, text.encode()


class Monitor:
    """Serves the monitoring endpoint of ``service`` until :meth:`close`.

    :param service: the EventService (read through ``stats()``, ``subscribers()``, ``subject_rates()``)
    :param uri: the Event Service's URI, shown on the page
    :param settings: the ES settings; ``settings.http`` is where to serve, ``settings.http_token`` the token
    :param has_passphrase: the ES has a passphrase (then a non-loopback bind needs a token)
    Raises ValueError for a bad address or a bind the passphrase forbids, OSError when the port is taken.
    """

    def __init__(self, service: t.Any, uri: t.Any, settings: Settings, has_passphrase: bool) -> None:
        host, port = parse_address(settings.http)
        token = settings.http_token
        if has_passphrase and not token and not is_loopback(host):
            raise ValueError(f"--http {settings.http}: the Event Service has a passphrase, so its monitor serves a "
                             "non-loopback address only with a token (--http-token or --http-token-file)")
        self._service = service
        self._uri = str(uri)
        self._settings = settings
        self._token = token.encode() if token else None
        self._version = _version()
        self._started = time.time()
        rates = getattr(service, "subject_rates", None)
        self._rates: SubjectRates | None = rates() if callable(rates) else None
        self._history: collections.deque[tuple[float, float, float]] = collections.deque(maxlen=HISTORY_SECONDS)
        self._last_sample: tuple[float, float, float] | None = None  # monotonic time, published, delivered
        self._exposition = metrics.exposition(self._metric_values)
        self._stopping = threading.Event()
        self._sampler = threading.Thread(target=self._sample_loop, name="es-http-sampler", daemon=True)
        context = _ssl_context()
        self._server = BoundedHTTPServer(host, port, self._app, context, request_timeout=settings.http_request_timeout)
        self._sampler.start()
        log.info("monitoring endpoint at %s", self.url)

    @property
    def url(self) -> str:
        """Where the status page is, e.g. ``http://127.0.0.1:8080/``."""
        return self._server.url

    def close(self) -> None:
        """Stop serving and sampling."""
        self._stopping.set()
        self._server.close()
        self._sampler.join(5)

    # -- what is served ----------------------------------------------------

    def _app(self, method: str, path: str, query: dict[str, list[str]], headers: t.Mapping[str, str]) -> Response:
        if not self._authorized(query, headers):
            return _text(401, "401 this endpoint needs its token: 'Authorization: Bearer TOKEN' or ?token=TOKEN\n",
                         **{"WWW-Authenticate": 'Bearer realm="eventservice"'})
        try:
            if path == "/":
                return 200, _PAGE_HEADERS, _page()
            if path == "/api/status":
                return _json(200, self.status())
            if path == "/stats":
                return _json(200, self.stats())
            if path == "/subscribers":
                subscribers, note = subscriber_list(self._service)
                return _json(200, {"count": len(subscribers), "subscribers": subscribers, "partial": note is not None,
                                   **({"note": note} if note else {})})
            if path == "/metrics":
                if self._exposition is None:
                    return _text(501, "501 /metrics needs prometheus_client: pip install 'eventservice[monitoring]'\n")
                return 200, {**_SECURITY_HEADERS, "Content-Type": metrics.CONTENT_TYPE}, self._exposition.render()
        except Exception as error:  # a failure of this request only; the ES goes on
            log.exception("monitoring endpoint: %s failed", path)
            return _text(500, f"500 {type(error).__name__}\n")
        return _text(404, f"404 no such path: {path[:200]}; try /, /stats, /subscribers, /metrics\n")

    def _authorized(self, query: dict[str, list[str]], headers: t.Mapping[str, str]) -> bool:
        if self._token is None:
            return True
        given = ""
        authorization = headers.get("Authorization", "")
        if authorization[:7].lower() == "bearer ":
            given = authorization[7:].strip()
        elif query.get("token"):
            given = query["token"][0]
        return hmac.compare_digest(given.encode(), self._token)

    def _counters_gauges(self) -> tuple[dict[str, t.Any], dict[str, t.Any]]:
        counters, gauges = split_stats(self._service.stats())
        gauges.setdefault("uptime", time.time() - self._started)
        return counters, gauges

    def _metric_values(self) -> tuple[dict[str, t.Any], dict[str, t.Any], str]:
        counters, gauges = self._counters_gauges()
        return counters, gauges, self._version

    def stats(self) -> dict[str, t.Any]:
        """GET /stats: the counters and gauges of stats(), uptime and version."""
        counters, gauges = self._counters_gauges()
        return {"version": self._version, "uptime": gauges["uptime"], "counters": counters, "gauges": gauges}

    def status(self) -> dict[str, t.Any]:
        """GET /api/status: everything the page shows."""
        counters, gauges = self._counters_gauges()
        subscribers, note = subscriber_list(self._service)
        deepest = sorted(subscribers, key=lambda entry: entry.get("queued", 0), reverse=True)[:PAGE_SUBSCRIBERS]
        rates = self._rates
        settings = {name: value for name, value in vars(self._settings).items() if name != "http_token"}
        return {
            "version": self._version, "uri": self._uri, "uptime": gauges["uptime"], "now": time.time(),
            "counters": counters, "gauges": gauges,
            "history": list(self._history),
            "subjects": [[subject, round(rate, 3)] for subject, rate in rates.top(TOP_SUBJECTS)] if rates else None,
            "other_subjects_rate": round(rates.other_rate(), 3) if rates else 0.0,
            "subscribers": {"count": len(subscribers), "shown": deepest, "partial": note is not None, "note": note},
            "settings": settings,
            "endpoint": {"tls": self._server.scheme == "https", "token": self._token is not None},
        }

    # -- sampling ------------------------------------------------------------

    def _sample_loop(self) -> None:
        while not self._stopping.wait(1.0 - time.monotonic() % 1.0):
            try:
                self._sample()
            except Exception:  # keep sampling: a failed read must not end the chart
                log.exception("monitoring endpoint: sampling stats() failed")

    def _sample(self) -> None:
        now = time.monotonic()
        counters, _ = split_stats(self._service.stats())
        published, delivered = float(counters.get("published", 0)), float(counters.get("delivered", 0))
        if self._rates is not None:
            self._rates.tick(now)
        last, self._last_sample = self._last_sample, (now, published, delivered)
        if last is None or now <= last[0]:
            return
        elapsed = now - last[0]
        # max(0, ...): an older service's "delivered" sums live subscribers only, and drops when one leaves
        self._history.append((round(time.time(), 3), round(max(0.0, published - last[1]) / elapsed, 2),
                              round(max(0.0, delivered - last[2]) / elapsed, 2)))


def _page() -> bytes:
    global _PAGE
    if _PAGE is None:
        _PAGE = importlib.resources.files(__package__).joinpath("page.html").read_bytes()
    return _PAGE


_PAGE: bytes | None = None
