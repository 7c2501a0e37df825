"""The Event Service's intake: one event loop serves every client connection, as Redis and NATS do.

One thread (the one that runs ``requestLoop``, or a caller's own loop through
``sockets``/``events``) accepts connections, runs TLS handshakes without
blocking, reads whatever each ready connection sent, and answers complete
requests in the order they came. There is no thread per connection: a client
that trickles bytes costs a socket, and any connection silent for
``idle_timeout`` (before or during its TLS or passphrase handshake, half-way
through a request, or idle) is closed.

Requests:
- the skeletons' publishes (plain marshalled calls of ``serve_directly``
  methods) are answered right here, past Pyro5's general request handling;
- any other request (any serializer, any exposed method) goes to Pyro5's
  ``Daemon.handleRequest``, on the loop too;
- except calls that may block or take long (``serve_in_thread``: checking a
  new pattern in the helper process, a publish naming many subjects), direct
  or not, which run in a few worker threads while their connection waits;
- a publish that meets a full queue under the blocking policy *parks* its
  client: the reply waits and the loop stops reading from that connection
  until the queues have room again (or their subscribers are removed). No
  thread blocks.

Delivery shares the loop (``drive``): the dispatcher's subscriber
connections sit in the same selector, and each pass of the loop first starts
the delivery round that the previous pass's publishes made due. One thread
then does all the work of a publish, with no hand-off between threads.
"""
from __future__ import annotations

import collections
import logging
import marshal
import selectors
import socket
import ssl
import threading
import time
import typing as t

from Pyro5 import config as pyro_config
from Pyro5 import errors, protocol, serializers, socketutil
from Pyro5.server import Daemon

from ..pyro import compat, wire
from ..pyro.auth import AuthDaemonMixin, Authenticator
from .connectors import ConnectorPool
from .delivery import Dispatcher
from .mailbox import Mailbox
from .service import PARKING

__all__ = ["CallPredicate", "EventLoop", "LoopDaemon"]

log = logging.getLogger(__name__)

_WOULD_BLOCK = (BlockingIOError, InterruptedError, ssl.SSLWantReadError, ssl.SSLWantWriteError)
_MARSHAL_ID = serializers.serializers["marshal"].serializer_id
_COMPRESSED = protocol.FLAGS_COMPRESSED
#: most connections accepted per readiness of the listening socket (others wait for the next round)
ACCEPTS_PER_ROUND = 64
#: a client whose unsent replies exceed this is not read from until they are sent
MAX_BACKLOG = 1 << 20
#: threads for requests that may block
WORKERS = 8

#: decides from a call's (args, kwargs) whether it runs in a worker thread
CallPredicate = t.Callable[[t.Sequence[t.Any], t.Mapping[str, t.Any]], bool]

# connection states
_TLS, _CONNECT, _READY, _BUSY, _PARKED, _CLOSING, _CLOSED = range(7)


class _Connection(socketutil.SocketConnection):
    """What Pyro5's daemon reads a request from and writes its answer to: the request's bytes, collected output."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__(sock)
        self.pending = b""
        self.sent: list[bytes] = []

    def send(self, data: bytes) -> None:
        self.sent.append(data)

    def recv(self, size: int) -> bytes:
        chunk, self.pending = self.pending[:size], self.pending[size:]
        if len(chunk) < size:
            raise errors.ConnectionClosedError("receiving: not enough data")
        return chunk

    def take_output(self) -> bytes:
        sent, self.sent = self.sent, []
        return b"".join(sent)


class _Client:
    __slots__ = ("active", "addr", "conn", "events", "inbox", "outbox", "reply", "sock", "state", "waiting")

    def __init__(self, sock: socket.socket, addr: t.Any, state: int) -> None:
        self.sock = sock
        self.addr = addr
        self.conn = _Connection(sock)
        self.state = state
        self.inbox = bytearray()
        self.outbox = bytearray()
        self.active = time.monotonic()  # last time bytes came or went
        self.events = 0  # what the selector watches for
        self.waiting: list[t.Any] = []  # parked: the full queues it waits for
        self.reply = b""  # parked: the answer it gets when they have room


class EventLoop:
    """A Pyro5 transport server (the object a daemon's ``transportServer`` is) as one selector loop.

    :param daemon: the Pyro5 daemon whose objects it serves
    :param host, port: where to listen
    :param idle_timeout: seconds a connection may stay silent before it is closed (None: forever)
    :param max_connections: connections served at once; more are closed at once
    """

    def __init__(self, daemon: LoopDaemon, host: str, port: int, idle_timeout: float | None,
                 max_connections: int) -> None:
        self.daemon = daemon
        self.idle_timeout = idle_timeout
        self.max_connections = max_connections
        self.direct_calls: dict[tuple[str, str], t.Callable[..., t.Any]] = {}
        #: methods whose calls run in a worker thread: always (None) or when the predicate holds for (args, kwargs)
        self.worker_methods: dict[str, CallPredicate | None] = {}
        self.sock = socketutil.create_socket(bind=(host, port), reuseaddr=pyro_config.SOCK_REUSE, timeout=None,
                                             noinherit=True, nodelay=pyro_config.SOCK_NODELAY)
        self.sock.setblocking(False)
        bound_host, bound_port = self.sock.getsockname()[:2]
        host = host or bound_host
        self.locationStr = f"[{host}]:{bound_port}" if ":" in host else f"{host}:{bound_port}"
        self._tls: ssl.SSLContext | None = None
        if pyro_config.SSL:
            self._tls = socketutil.get_ssl_context(servercert=pyro_config.SSL_SERVERCERT,
                                                   serverkey=pyro_config.SSL_SERVERKEY,
                                                   keypassword=pyro_config.SSL_SERVERKEYPASSWD,
                                                   cacerts=pyro_config.SSL_CACERTS)
        self._clients: dict[int, _Client] = {}  # by file descriptor
        self._selector = selectors.DefaultSelector()
        self._selector.register(self.sock, selectors.EVENT_READ, None)
        self._wake_receiver, self._wake_sender = socket.socketpair()
        self._wake_receiver.setblocking(False)
        self._wake_sender.setblocking(False)
        self._selector.register(self._wake_receiver, selectors.EVENT_READ, None)
        self._ready: collections.deque[_Client] = collections.deque()  # clients with work for the loop (thread-safe)
        self._finished: collections.deque[tuple[_Client, bytes, list[t.Any], bool]] = collections.deque()
        self._workers = ConnectorPool(_run, WORKERS, name="es-request")
        self._next_reap = time.monotonic()
        self._dispatcher: Dispatcher | None = None
        self._alarm: _Alarm | None = None  # for callers' own loops only (events())
        self.shutting_down = False

    def drive(self, dispatcher: Dispatcher) -> None:
        """Run ``dispatcher``'s deliveries on this loop (before any subscriber joins)."""
        dispatcher.drive_from(self._selector, self.wakeup)
        self._dispatcher = dispatcher

    # -- Pyro5's transport server interface --------------------------------

    @property
    def sockets(self) -> list[t.Any]:
        """The listening socket, the wake-up socket and every connection the loop reads or writes."""
        return [key.fileobj for key in self._selector.get_map().values()]

    @property
    def selector(self) -> selectors.BaseSelector:
        return self._selector

    def connections(self) -> int:
        """Client connections open now."""
        return len(self._clients)

    def loop(self, loopCondition: t.Callable[[], bool] = lambda: True) -> None:
        """Serve until ``loopCondition()`` is false (checked at least every POLLTIMEOUT and at ``wakeup()``)."""
        select = self._selector.select
        dispatcher = self._dispatcher
        while not self.shutting_down and loopCondition():
            timeout = 0.0 if self._ready or self._finished else min(pyro_config.POLLTIMEOUT, self._reap_due())
            if dispatcher is not None:
                due = dispatcher.run_due(time.monotonic())  # delivers what the last pass accepted
                if due is not None and due < timeout:
                    timeout = due
            for key, mask in select(timeout):
                self._handle(key.fileobj, key.data, mask)
            self._after_events()

    def events(self, eventsockets: t.Iterable[t.Any]) -> None:
        """Serve what is ready on ``eventsockets`` (some of ``sockets``), for a caller's own select loop.

        Such a loop sees sockets, not timers: when deliveries wait (rounds are
        spaced, calls expire), an alarm makes a socket of ``sockets`` ready at
        the time they are due, so the loop calls again.
        """
        watched = self._selector.get_map()
        for sock in eventsockets:
            try:
                key = watched.get(sock)
            except ValueError:  # closed meanwhile
                continue
            if key is not None:
                self._handle(key.fileobj, key.data, key.events)
        self._after_events()
        if self._dispatcher is not None:
            now = time.monotonic()
            due = self._dispatcher.run_due(now)
            if self._alarm is None:
                self._alarm = _Alarm(self.wakeup)
            self._alarm.ring_at(None if due is None else now + due)

    def wakeup(self) -> None:
        """Make the loop look at its condition and its queues now."""
        try:
            self._wake_sender.send(b"\0")
        except OSError:  # full of wake-ups already, or closed
            pass

    def combine_loop(self, server: t.Any) -> None:
        raise TypeError("the Event Service's loop does not combine with other daemons; use sockets/events")

    def shutdown(self) -> None:
        self.shutting_down = True
        self.wakeup()

    def close(self) -> None:
        """Close every connection and the listening socket."""
        self.shutting_down = True
        for client in list(self._clients.values()):
            self._close(client)
        self._workers.stop()
        if self._alarm is not None:
            self._alarm.stop()
        for sock in (self.sock, self._wake_receiver, self._wake_sender):
            try:
                self._selector.unregister(sock)
            except (KeyError, ValueError, OSError):
                pass
            sock.close()
        self._selector.close()

    # -- the loop ------------------------------------------------------------

    def _handle(self, sock: t.Any, client: t.Any, mask: int) -> None:
        if type(client) is Mailbox:
            self._dispatcher.handle(client, mask)  # type: ignore[union-attr]
            return
        if client is None:
            if sock is self.sock:
                self._accept()
            else:
                try:
                    while self._wake_receiver.recv(4096):
                        pass
                except OSError:
                    pass
            return
        if client.state == _CLOSED:
            return
        if mask & selectors.EVENT_WRITE and client.outbox:
            self._flush(client)
        if mask & selectors.EVENT_READ and client.state != _CLOSED:
            if client.state == _TLS:
                self._tls_handshake(client)
            else:
                self._receive(client)

    def _after_events(self) -> None:
        while self._finished:
            client, output, full, ended = self._finished.popleft()
            if client.state == _BUSY:
                self._answered(client, output, full, ended)
        while self._ready:
            client = self._ready.popleft()
            if client.state == _PARKED:
                self._unpark(client)
        now = time.monotonic()
        if now >= self._next_reap:
            self._reap(now)

    def _accept(self) -> None:
        for _ in range(ACCEPTS_PER_ROUND):
            try:
                sock, addr = self.sock.accept()
            except _WOULD_BLOCK:
                return
            except OSError as error:  # out of file descriptors, say: the client waits in the backlog
                log.error("cannot accept a connection: %s", error)
                return
            if len(self._clients) >= self.max_connections or self.shutting_down:
                log.warning("refused a connection from %s: %d connections served already (max_connections)",
                            addr, len(self._clients))
                sock.close()
                continue
            sock.setblocking(False)
            if self._tls is not None:
                try:
                    sock = self._tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
                except (OSError, ValueError) as error:
                    log.debug("TLS refused %s: %s", addr, error)
                    sock.close()
                    continue
            client = _Client(sock, addr, _TLS if self._tls is not None else _CONNECT)
            self._clients[sock.fileno()] = client
            self._watch(client, selectors.EVENT_READ)
            if client.state == _TLS:
                self._tls_handshake(client)

    def _tls_handshake(self, client: _Client) -> None:
        try:
            client.sock.do_handshake()  # type: ignore[attr-defined]
        except ssl.SSLWantReadError:
            self._watch(client, selectors.EVENT_READ)
            return
        except ssl.SSLWantWriteError:
            self._watch(client, selectors.EVENT_READ | selectors.EVENT_WRITE)
            return
        except (OSError, ValueError) as error:
            log.info("TLS handshake with %s failed: %s", client.addr, error)
            self._close(client)
            return
        client.active = time.monotonic()
        client.state = _CONNECT
        self._watch(client, selectors.EVENT_READ)
        self._receive(client)  # the client may have sent its first request with the handshake's end

    def _receive(self, client: _Client) -> None:
        sock = client.sock
        inbox = client.inbox
        while True:
            try:
                chunk = sock.recv(wire.READ_SIZE)
            except _WOULD_BLOCK:
                break
            except OSError:
                chunk = b""
            if not chunk:
                self._close(client)
                return
            inbox += chunk
            if len(chunk) < wire.READ_SIZE and not (isinstance(sock, ssl.SSLSocket) and sock.pending()):
                break
        client.active = time.monotonic()
        self._serve(client)

    def _serve(self, client: _Client) -> None:
        """Answer the complete requests in the client's inbox, in order, while it may be answered."""
        inbox = client.inbox
        while client.state in (_CONNECT, _READY) and len(client.outbox) < MAX_BACKLOG:
            if len(inbox) < compat.HEADER_SIZE:
                if len(inbox) >= 6 and not self._valid_start(client):
                    return
                break
            try:
                header = compat.parse_header(inbox)  # checks the size limit
            except errors.ProtocolError as error:
                log.info("closing connection from %s: %s", client.addr, error)
                self._close(client)
                return
            size = compat.HEADER_SIZE + header.annotations_size + header.data_size
            if len(inbox) < size:
                break
            if len(inbox) == size:  # the usual case: one request, all of it
                raw = bytes(inbox)
                inbox.clear()
            else:
                raw = bytes(inbox[:size])
                del inbox[:size]
            payload = raw[compat.HEADER_SIZE:]
            if header.flags & _COMPRESSED and not compat.inflated_size_ok(header, payload,
                                                                          pyro_config.MAX_MESSAGE_SIZE):
                log.warning("closing connection from %s: compressed request inflates beyond MAX_MESSAGE_SIZE (%d)",
                            client.addr, pyro_config.MAX_MESSAGE_SIZE)
                self._close(client)
                return
            if client.state == _CONNECT:
                self._connect_request(client, header, raw)
            else:
                self._request(client, header, raw, payload)
        self._update_watch(client)

    def _valid_start(self, client: _Client) -> bool:
        try:
            protocol.ReceivingMessage.validate(bytes(client.inbox[:6]))
        except errors.ProtocolError as error:
            log.info("closing connection from %s: %s", client.addr, error)
            self._close(client)
            return False
        return True

    def _connect_request(self, client: _Client, header: compat.Header, raw: bytes) -> None:
        if header.type != protocol.MSG_CONNECT:
            log.info("closing connection from %s: it sent a request before connecting", client.addr)
            self._close(client)
            return
        conn = client.conn
        conn.pending = raw
        try:
            accepted = compat.daemon_handshake(self.daemon, conn)
        except Exception as error:  # Pyro5 answers refusals itself; this is a bug or a broken connection
            log.warning("handshake with %s failed: %s", client.addr, error)
            accepted = False
        self._send(client, conn.take_output())
        if accepted:
            client.state = _READY
        else:
            self._close_after_sending(client)

    def _request(self, client: _Client, header: compat.Header, raw: bytes, payload: bytes) -> None:
        call = None
        if (header.type == protocol.MSG_INVOKE and not header.flags and header.serializer_id == _MARSHAL_ID
                and not header.annotations_size):
            try:
                call = marshal.loads(payload)
                object_id, method, args, kwargs = call
            except (ValueError, EOFError, TypeError):
                call = None  # Pyro5 reports it
            else:
                function = self.direct_calls.get((object_id, method))
                if function is not None and not kwargs and isinstance(args, (list, tuple)):
                    if self._in_worker(method, args, kwargs):
                        self._start_work(client, self._work_direct, client, header.seq, function, args)
                    else:
                        self._send_result(client, *self._call_direct(client, header.seq, function, args))
                    return
        elif header.type == protocol.MSG_INVOKE and self.worker_methods:
            call = _call_of(header, payload)
        conn = client.conn
        conn.pending = raw
        if call is not None and self._in_worker(call[1], call[2], call[3]):
            self._start_work(client, self._work, client)
            return
        full: list[t.Any] = []
        PARKING.full = full
        try:
            self.daemon.handleRequest(conn)
        except Exception as error:  # Pyro5 answered what it could; the connection ends (as in Pyro5's servers)
            log.debug("closing connection from %s: %s", client.addr, error)
            self._send(client, conn.take_output())
            self._close_after_sending(client)
            return
        finally:
            PARKING.full = None
        self._send_result(client, conn.take_output(), full)

    def _call_direct(self, client: _Client, seq: int, function: t.Callable[..., t.Any],
                     args: t.Any) -> tuple[bytes, list[t.Any]]:
        """Run a direct call: its answer's bytes, and the full queues its publish met."""
        full: list[t.Any] = []
        PARKING.full = full
        try:
            output = wire.encode_result(seq, function(*args))
        except Exception as error:  # answered as Pyro5 answers it
            conn = client.conn
            compat.send_exception(self.daemon, conn, seq, _MARSHAL_ID, error)
            output = conn.take_output()
        finally:
            PARKING.full = None
        return output, full

    def _send_result(self, client: _Client, output: bytes, full: list[t.Any]) -> None:
        if full:
            client.state = _PARKED
            client.waiting = full
            client.reply = output
            self._update_watch(client)
            self._unpark(client, serve=False)
        else:
            self._send(client, output)

    # -- parking ---------------------------------------------------------------

    def _unpark(self, client: _Client, serve: bool = True) -> None:
        """Send a parked client its reply once every queue it waits for has room; else wait for the next."""
        waiting = client.waiting
        while waiting:
            if waiting[-1].on_room(lambda: self._schedule(client)):
                return
            waiting.pop()
        client.state = _READY
        reply, client.reply = client.reply, b""
        self._send(client, reply)
        if serve:
            self._serve(client)  # what it sent meanwhile
        else:
            self._update_watch(client)

    def _schedule(self, client: _Client) -> None:
        """Have the loop look at a parked client (from any thread)."""
        self._ready.append(client)
        self.wakeup()

    # -- worker threads (requests that may block or take long) -------------------

    def _in_worker(self, method: str, args: t.Any, kwargs: t.Any) -> bool:
        if method not in self.worker_methods:
            return False
        when = self.worker_methods[method]
        try:
            return when is None or when(args, kwargs if isinstance(kwargs, dict) else {})
        except Exception:  # malformed arguments: the method itself refuses them, at once
            return False

    def _start_work(self, client: _Client, work: t.Callable[..., None], *args: t.Any) -> None:
        """Run ``work(*args)`` in a worker; the client is not read from until it has its answer."""
        client.state = _BUSY
        self._update_watch(client)
        self._workers.submit(work, *args)

    def _work_direct(self, client: _Client, seq: int, function: t.Callable[..., t.Any], args: t.Any) -> None:
        output, full = self._call_direct(client, seq, function, args)
        self._finished.append((client, output, full, False))
        self.wakeup()

    def _work(self, client: _Client) -> None:
        conn = client.conn
        full: list[t.Any] = []
        ended = False
        PARKING.full = full
        try:
            self.daemon.handleRequest(conn)
        except Exception as error:  # Pyro5 answered what it could; the connection ends
            log.debug("request from %s ended its connection: %s", client.addr, error)
            ended = True
        finally:
            PARKING.full = None
        self._finished.append((client, conn.take_output(), full, ended))
        self.wakeup()

    def _answered(self, client: _Client, output: bytes, full: list[t.Any], ended: bool) -> None:
        if ended:
            self._send(client, output)
            self._close_after_sending(client)
            return
        client.state = _READY
        self._send_result(client, output, full)
        if client.state == _READY:
            self._serve(client)

    # -- sending and closing ---------------------------------------------------

    def _send(self, client: _Client, data: bytes) -> None:
        if not data or client.state == _CLOSED:
            return
        if client.outbox:
            client.outbox += data
            return
        try:
            sent = client.sock.send(data)
        except _WOULD_BLOCK:
            sent = 0
        except OSError:
            self._close(client)
            return
        if sent < len(data):
            client.outbox += data[sent:]
            self._update_watch(client)

    def _flush(self, client: _Client) -> None:
        try:
            sent = client.sock.send(client.outbox)
        except _WOULD_BLOCK:
            return
        except OSError:
            self._close(client)
            return
        client.active = time.monotonic()
        del client.outbox[:sent]
        if not client.outbox:
            if client.state == _CLOSING:  # closing once sent
                self._close(client)
                return
            self._serve(client)
        self._update_watch(client)

    def _close_after_sending(self, client: _Client) -> None:
        if client.outbox:
            client.state = _CLOSING
            self._update_watch(client)
        else:
            self._close(client)

    def _update_watch(self, client: _Client) -> None:
        state = client.state
        if state == _CLOSED:
            return
        events = selectors.EVENT_WRITE if client.outbox else 0
        if state in (_CONNECT, _READY) and len(client.outbox) < MAX_BACKLOG:
            events |= selectors.EVENT_READ
        self._watch(client, events)

    def _watch(self, client: _Client, events: int) -> None:
        if events == client.events:
            return
        if not events:
            self._selector.unregister(client.sock)
        elif not client.events:
            self._selector.register(client.sock, events, client)
        else:
            self._selector.modify(client.sock, events, client)
        client.events = events

    def _close(self, client: _Client) -> None:
        if client.state == _CLOSED:
            return
        client.state = _CLOSED
        self._watch(client, 0)
        self._clients.pop(client.sock.fileno(), None)
        client.waiting = []
        try:
            self.daemon.clientDisconnect(client.conn)
        except Exception:
            log.exception("error in clientDisconnect")
        client.conn.close()

    def _reap_due(self) -> float:
        return max(0.0, self._next_reap - time.monotonic())

    def _reap(self, now: float) -> None:
        """Close connections silent for longer than the idle timeout (parked and busy ones wait for us)."""
        timeout = self.idle_timeout
        self._next_reap = now + (min(1.0, timeout / 4) if timeout else 60.0)
        if not timeout:
            return
        limit = now - timeout
        for client in [client for client in self._clients.values()
                       if client.active < limit and client.state not in (_BUSY, _PARKED, _CLOSED)]:
            log.info("closing connection from %s: silent for %g s (idle_timeout)", client.addr, timeout)
            self._close(client)


def _call_of(header: compat.Header, payload: bytes) -> tuple[t.Any, str, t.Any, t.Any] | None:
    """(object id, method, args, kwargs) of a request (None if it does not say): decides where a request runs."""
    if header.flags & protocol.FLAGS_KEEPSERIALIZED:
        return None
    serializer = serializers.serializers_by_id.get(header.serializer_id)
    if serializer is None or header.flags & protocol.FLAGS_COMPRESSED:
        return None
    try:
        call = serializer.loadsCall(payload[header.annotations_size:])
    except Exception:
        return None  # Pyro5 reports it
    return call if isinstance(call, tuple) and len(call) == 4 and isinstance(call[1], str) else None


def _run(work: t.Callable[..., None], *args: t.Any) -> None:
    work(*args)


class _Alarm:
    """Calls ``ring()`` at a set time (monotonic) from a thread of its own: the timer a caller's own select loop
    lacks. One thread, started at the first ``ring_at``; setting a new time replaces the old one."""

    def __init__(self, ring: t.Callable[[], None]) -> None:
        self._ring = ring
        self._due: float | None = None
        self._stopped = False
        self._changed = threading.Condition(threading.Lock())
        self._thread: threading.Thread | None = None

    def ring_at(self, due: float | None) -> None:
        """Ring at ``due`` (at once if it is past; None: not at all)."""
        with self._changed:
            sooner = due is not None and (self._due is None or due < self._due)
            self._due = due  # a later time (or none): the thread finds it when it wakes for the old one
            if self._thread is None and due is not None and not self._stopped:
                self._thread = threading.Thread(target=self._run, name="es-own-loop-alarm", daemon=True)
                self._thread.start()
            elif sooner:
                self._changed.notify()

    def stop(self) -> None:
        with self._changed:
            self._stopped = True
            self._changed.notify()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(5.0)

    def _run(self) -> None:
        with self._changed:
            while not self._stopped:
                if self._due is None:
                    self._changed.wait()
                    continue
                delay = self._due - time.monotonic()
                if delay > 0:
                    self._changed.wait(delay)
                    continue
                self._due = None
                self._ring()  # a write to the wake-up socket: never blocks


class LoopDaemon(AuthDaemonMixin, Daemon):
    """The Event Service's Pyro5 daemon: Pyro5's object registry and request handling, served by an EventLoop.

    :param authenticator: the passphrase check (None: none)
    Everything of Pyro5's daemon surface stays: ``register``, ``uriFor``,
    ``requestLoop``, ``sockets`` and ``events`` for a caller's own loop,
    ``shutdown``, ``close``.
    """

    transportServer: EventLoop

    def __init__(self, host: str, port: int = 0, *, authenticator: Authenticator | None = None,
                 idle_timeout: float | None = None, max_connections: int = 1000) -> None:
        self.authenticator = authenticator
        compat.new_daemon_shell(self, lambda **kwargs: Daemon.__init__(self, **kwargs))
        self.transportServer = EventLoop(self, host, port, idle_timeout, max_connections)
        self.locationStr = self.transportServer.locationStr
        self.natLocationStr = None

    def serve_directly(self, object_id: str, method: str, function: t.Callable[..., t.Any]) -> None:
        """Answer plain marshalled calls of ``method`` on ``object_id`` with ``function(*args)``, on the loop."""
        self.transportServer.direct_calls[(object_id, method)] = function

    def serve_in_thread(self, method: str, when: CallPredicate | None = None) -> None:
        """Run calls of ``method`` (of any object) in a worker thread: it may block, or take long when ``when(args,
        kwargs)`` holds (checked on the loop, so it must be cheap). Calls of one connection still run in order."""
        self.transportServer.worker_methods[method] = when

    def wakeup(self) -> None:
        """Make a running requestLoop check its loop condition now."""
        server = self.transportServer
        if server is not None:
            server.wakeup()

