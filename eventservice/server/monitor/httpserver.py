"""A small read-only HTTP(S) server with bounded threads, memory and time per client.

It runs beside the Event Service in threads of its own (never on the ES's
loop): one accepting thread and a fixed pool of workers. Each connection
carries one request (HTTP/1.0 style, closed after the answer) and is bounded:

- at most ``max_connections`` are served or waiting at once; more get 503 at once;
- the request head (request line and headers) may take ``header_limit`` bytes
  (16 KiB) or gets 431, and must arrive within ``request_timeout`` seconds in
  total, however slowly it trickles (slowloris), or gets 408;
- methods other than GET and HEAD get 405, unknown paths whatever ``app`` says (404).

``app(method, path, query, headers)`` returns ``(status, headers, body)``.
"""
from __future__ import annotations

import concurrent.futures
import http.server
import io
import logging
import socket
import ssl
import threading
import time
import typing as t
import urllib.parse

__all__ = ["App", "BoundedHTTPServer", "Response"]

log = logging.getLogger(__name__)

Response = tuple[int, dict[str, str], bytes]
App = t.Callable[[str, str, dict[str, list[str]], t.Any], Response]  # headers: an email.message.Message


class _HeadError(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def _read_head(sock: socket.socket, deadline: float, limit: int) -> bytes:
    """The request head up to its blank line, read before ``deadline`` (monotonic) and within ``limit`` bytes."""
    data = bytearray()
    while b"\r\n\r\n" not in data and b"\n\n" not in data:
        if len(data) > limit:
            raise _HeadError(431, "Request Header Fields Too Large")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _HeadError(408, "Request Timeout")
        sock.settimeout(remaining)
        try:
            chunk = sock.recv(4096)
        except TimeoutError:  # socket.timeout is TimeoutError
            raise _HeadError(408, "Request Timeout") from None
        if not chunk:
            break  # the client closed: parse what came (an incomplete head gets 400)
        data += chunk
    ends = [end for end in (data.find(b"\r\n\r\n"), data.find(b"\n\n")) if end >= 0]
    if min(ends, default=len(data)) > limit:
        raise _HeadError(431, "Request Header Fields Too Large")
    return bytes(data)


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server
    server_version = "eventservice-monitor"
    default_request_version = "HTTP/1.0"  # errors for a garbled request line still get a status line
    _refused = False

    def setup(self) -> None:
        server = self.server
        deadline = time.monotonic() + server.request_timeout
        sock: socket.socket = self.request
        sock.settimeout(server.request_timeout)
        if server.ssl_context is not None:
            sock = server.ssl_context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
            try:
                sock.do_handshake()  # bounded by the socket timeout; a failure ends this connection only
            except OSError:
                sock.close()
                raise
        self.connection = sock
        self.wfile = sock.makefile("wb")
        try:
            head = _read_head(sock, deadline, server.header_limit)
        except _HeadError as error:
            self._refused = True
            body = f"{error.status} {error.reason}\n".encode()
            sock.settimeout(max(0.1, deadline + 1.0 - time.monotonic()))
            self.wfile.write(f"HTTP/1.0 {error.status} {error.reason}\r\nContent-Type: text/plain; charset=utf-8\r\n"
                             f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
            head = b""
        sock.settimeout(server.request_timeout)  # for writing the answer: a client that does not read is dropped
        self.rfile = io.BytesIO(head)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            if isinstance(self.connection, ssl.SSLSocket):  # it took over the accepted socket
                self.connection.close()

    def handle(self) -> None:
        if not self._refused:
            self.handle_one_request()

    def _answer(self, send_body: bool) -> None:
        parts = urllib.parse.urlsplit(self.path)
        status, headers, body = self.server.app(self.command, parts.path, urllib.parse.parse_qs(parts.query), self.headers)
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        if send_body:
            self.wfile.write(body)

    def do_GET(self) -> None:
        self._answer(True)

    def do_HEAD(self) -> None:
        self._answer(False)

    def _not_allowed(self) -> None:
        body = f"405 {self.command} not allowed: this endpoint is read-only (GET, HEAD)\n".encode()
        self.send_response(405)
        self.send_header("Allow", "GET, HEAD")
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_TRACE = do_CONNECT = _not_allowed

    def version_string(self) -> str:
        return self.server_version

    def log_message(self, format: str, *args: t.Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)


class _Server(http.server.HTTPServer):
    """HTTPServer whose connections run in a fixed pool, at most ``max_connections`` at once."""

    daemon_threads = True
    request_queue_size = 64

    def __init__(self, address: tuple[str, int], app: App, ssl_context: ssl.SSLContext | None, workers: int,
                 max_connections: int, header_limit: int, request_timeout: float) -> None:
        self.app = app
        self.ssl_context = ssl_context
        self.header_limit = header_limit
        self.request_timeout = request_timeout
        self._slots = threading.BoundedSemaphore(max_connections)
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="es-http")
        host = address[0]
        if ":" in host:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)

    def process_request(self, request: t.Any, client_address: t.Any) -> None:
        if not self._slots.acquire(blocking=False):
            try:
                request.settimeout(0.0)  # never let a full server wait on this client
                request.send(b"HTTP/1.0 503 Service Unavailable\r\nContent-Length: 0\r\nRetry-After: 1\r\n"
                             b"Connection: close\r\n\r\n")
            except OSError:
                pass
            self.shutdown_request(request)
            return
        try:
            self._pool.submit(self._work, request, client_address)
        except RuntimeError:  # the pool is shut down: closing
            self._slots.release()
            self.shutdown_request(request)

    def _work(self, request: t.Any, client_address: t.Any) -> None:
        try:
            self.finish_request(request, client_address)
        except (OSError, ssl.SSLError) as error:
            log.debug("HTTP client %s: %s", client_address, error)
        except Exception:
            log.exception("HTTP request from %s failed", client_address)
        finally:
            self.shutdown_request(request)
            self._slots.release()

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.server_close()


class BoundedHTTPServer:
    """Serves ``app`` on ``host:port`` from its own threads until :meth:`close`.

    :param ssl_context: serve HTTPS with this server-side context (None: plain HTTP)
    :param workers: threads answering requests
    :param max_connections: connections answered or waiting at once; more get 503
    :param header_limit: most bytes of a request head (431 beyond)
    :param request_timeout: seconds a client has to send its request head (408 after)
    """

    def __init__(self, host: str, port: int, app: App, ssl_context: ssl.SSLContext | None = None, workers: int = 8,
                 max_connections: int = 32, header_limit: int = 16 * 1024, request_timeout: float = 10.0) -> None:
        self._server = _Server((host, port), app, ssl_context, workers, max_connections, header_limit, request_timeout)
        self.host = host
        self.port: int = self._server.server_address[1]
        self.scheme = "https" if ssl_context is not None else "http"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.5},
                                        name="es-http-accept", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        """The base URL, e.g. ``http://127.0.0.1:8080/``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}/"

    def close(self) -> None:
        """Stop accepting, close the listening socket; requests under way end with their timeouts."""
        self._server.shutdown()
        self._thread.join(5)
        self._server.close()
