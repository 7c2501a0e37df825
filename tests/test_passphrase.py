"""The ident passphrase: required everywhere it is set, proven without being sent, not replayable."""
from __future__ import annotations

import base64
import socket
import threading
import time

import pytest
from Pyro5 import core, errors, protocol, serializers, socketutil
from Pyro5.client import Proxy
from Pyro5.server import Daemon, expose

import eventservice
from conftest import LOCALHOST, WAIT, free_port, read_line
from eventservice import PassphraseError
from eventservice.pyro import naming
from eventservice.pyro.auth import Authenticator, AuthProxy

pytestmark = pytest.mark.network

PASSPHRASE = "secret"
#: long and unlikely enough that finding it in captured bytes can only mean a leak
WIRE_PASSPHRASE = "Wire-Tap-Passphrase-7f3a9c"
ES = "bin/es"



class Relay:
    """A TCP relay on 127.0.0.1 to ``target`` that records every byte of every connection, both ways."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.listener = socket.create_server((LOCALHOST, 0))
        self.port = self.listener.getsockname()[1]
        self.connections: list[dict[str, bytearray]] = []  # per connection: {"sent": ..., "received": ...}
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._start(self._accept)

    def uri(self, object_id: str = eventservice.EVENTSERVER_NAME) -> str:
        return f"PYRO:{object_id}@{LOCALHOST}:{self.port}"

    def wire(self) -> bytes:
        """Every byte that crossed the relay, in either direction."""
        with self._lock:
            return b"".join(bytes(c["sent"]) + bytes(c["received"]) for c in self.connections)

    def _start(self, target, *args) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.target, timeout=WAIT)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            record = {"sent": bytearray(), "received": bytearray()}
            with self._lock:
                self._sockets += [client, server]
                self.connections.append(record)
            self._start(self._pump, client, server, record["sent"])
            self._start(self._pump, server, client, record["received"])

    def _pump(self, source: socket.socket, sink: socket.socket, recorded: bytearray) -> None:
        while True:
            try:
                data = source.recv(65536)
            except OSError:
                data = b""
            if not data:
                break
            with self._lock:
                recorded += data
            try:
                sink.sendall(data)
            except OSError:
                break
        try:
            sink.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def close(self) -> None:
        try:
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        except OSError:
            pass
        with self._lock:
            for sock in self._sockets:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        for thread in self._threads:
            thread.join(WAIT)
        self.listener.close()
        for sock in self._sockets:
            sock.close()


@pytest.fixture
def relay_to():
    """Factory: ``relay_to(uri)`` -> a recording Relay in front of that URI's host and port."""
    relays: list[Relay] = []

    def make(uri) -> Relay:
        uri = core.URI(str(uri))
        relay = Relay((uri.host, uri.port))
        relays.append(relay)
        return relay

    yield make
    for relay in relays:
        relay.close()


class _Bytes:
    """Just enough of a connection for ``protocol.recv_stub`` to parse recorded bytes."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.position = 0

    def recv(self, size: int) -> bytes:
        chunk = self.data[self.position:self.position + size]
        self.position += size
        return chunk


def first_message(recorded: bytes) -> bytes:
    """The raw bytes of the first Pyro message in ``recorded`` (which must be a MSG_CONNECT)."""
    reader = _Bytes(recorded)
    message = protocol.recv_stub(reader)
    assert message.type == protocol.MSG_CONNECT
    return recorded[:reader.position]


def send_raw(uri, data: bytes) -> tuple[int, object]:
    """Send ``data`` on a fresh connection to ``uri``'s daemon; return (reply type, reply payload)."""
    uri = core.URI(str(uri))
    sock = socket.create_connection((uri.host, uri.port), timeout=WAIT)
    with socketutil.SocketConnection(sock) as connection:
        connection.send(data)
        reply = protocol.recv_stub(connection)
    payload = serializers.serializers_by_id[reply.serializer_id].loads(reply.data)
    return reply.type, payload


class Recorder:
    """An impostor 'Event Service' that knows no passphrase and records what it is sent."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    @expose
    def publish(self, subjects, message):
        self.calls.append((subjects, message))
        return 0


@pytest.fixture
def impostor():
    """Factory: ``impostor(port=0)`` -> (uri, Recorder): a plain Pyro5 daemon posing as the ES."""
    daemons: list[tuple[Daemon, threading.Thread]] = []

    def make(port: int = 0):
        daemon = Daemon(host=LOCALHOST, port=port)
        recorder = Recorder()
        uri = daemon.register(recorder, eventservice.EVENTSERVER_NAME)
        thread = threading.Thread(target=daemon.requestLoop, daemon=True)
        thread.start()
        daemons.append((daemon, thread))
        return uri, recorder

    yield make
    for daemon, thread in daemons:
        daemon.shutdown()
        thread.join(WAIT)


# -- the passphrase at the ES -------------------------------------------------


def test_clients_with_right_ident_work_through_stock_name_server(start_es, collectors):
    """With ident 'secret' on ES and clients, a stock name server finds the ES and events flow."""
    start_es(ident=PASSPHRASE)
    subscriber = collectors(ident=PASSPHRASE)
    subscriber.subscribe("IDENT.TEST")
    with eventservice.Publisher(ident=PASSPHRASE) as publisher:
        assert publisher.publish("IDENT.TEST", "ok") == 1
    assert subscriber.take(1)[0].msg == "ok"


@pytest.mark.parametrize("client", [eventservice.Publisher, eventservice.Subscriber])
def test_wrong_ident_is_refused_with_passphrase_error(start_es, client):
    """A wrong ident gets PassphraseError (a Pyro5 SecurityError) saying the passphrase was refused."""
    start_es(ident=PASSPHRASE)
    with pytest.raises(PassphraseError, match="passphrase refused") as failure:
        client(ident="wrong")
    assert isinstance(failure.value, errors.SecurityError)


@pytest.mark.parametrize("client", [eventservice.Publisher, eventservice.Subscriber])
def test_missing_ident_is_refused_with_passphrase_error(start_es, client):
    """No ident against an ES that requires one gets PassphraseError saying the passphrase was refused."""
    start_es(ident=PASSPHRASE)
    with pytest.raises(errors.PyroError, match="passphrase refused") as failure:
        client()
    assert isinstance(failure.value, PassphraseError)


def test_client_refuses_es_that_cannot_prove_the_passphrase(impostor):
    """A client with an ident refuses an 'ES' that does not know the passphrase."""
    uri, recorder = impostor()
    with pytest.raises(PassphraseError, match="could not prove"):
        eventservice.Publisher(ident=PASSPHRASE, esURI=uri)
    assert recorder.calls == []


def test_publisher_never_publishes_to_impostor_that_took_over_the_es_port(processes, pyro_settings, impostor):
    """After the ES dies and an impostor takes its port, publishing keeps failing and nothing reaches it."""
    pyro_settings.NS_PORT = free_port()
    server = processes.spawn(ES, "-N", "-n", LOCALHOST, "-i", PASSPHRASE)
    uri = core.URI(read_line(server, expect="Event Service URI:").split("URI:", 1)[1].strip())
    publisher = eventservice.Publisher(ident=PASSPHRASE, esURI=uri)
    assert publisher.publish("IMPOSTOR.TEST", "to the real ES") == 0
    server.kill()
    server.communicate(timeout=WAIT)
    _, recorder = impostor(uri.port)
    for attempt in range(2):
        with pytest.raises(PassphraseError):
            publisher.publish("IMPOSTOR.TEST", f"confidential {attempt}")
    publisher.close()
    assert recorder.calls == []


# -- what crosses the wire ------------------------------------------------------


def test_passphrase_never_crosses_the_wire(start_es, collectors, relay_to):
    """All bytes between clients and ES, captured by a relay, never contain the passphrase."""
    es = start_es(ident=WIRE_PASSPHRASE, use_ns=False)
    relay = relay_to(es.uri)
    subscriber = collectors(ident=WIRE_PASSPHRASE, esURI=relay.uri())
    subscriber.subscribe("WIRE.TEST")
    with eventservice.Publisher(ident=WIRE_PASSPHRASE, esURI=relay.uri()) as publisher:
        assert publisher.publish("WIRE.TEST", "wire payload") == 1
    assert subscriber.take(1)[0].msg == "wire payload"
    wire = relay.wire()
    assert b"wire payload" in wire  # the relay did see the traffic
    secret = WIRE_PASSPHRASE.encode()
    for form in (secret, secret.hex().encode(), base64.b64encode(secret), WIRE_PASSPHRASE.encode("utf-16-le")):
        assert form not in wire


def test_replayed_handshake_is_refused(start_es, relay_to):
    """The handshake a client sent, replayed byte for byte on a new connection, gets no MSG_CONNECTOK."""
    es = start_es(ident=PASSPHRASE, use_ns=False)
    relay = relay_to(es.uri)
    with eventservice.Publisher(ident=PASSPHRASE, esURI=relay.uri()) as publisher:
        publisher.publish("REPLAY.TEST", 1)
    handshake = first_message(bytes(relay.connections[0]["sent"]))
    reply_type, reply = send_raw(es.uri, handshake)
    assert reply_type == protocol.MSG_CONNECTFAIL
    assert "passphrase refused" in str(reply) and "replayed" in str(reply)


def test_subscriber_daemon_refuses_injected_events(start_es, collectors):
    """Calls to a subscriber's callback without the passphrase are refused; only the ES's events arrive."""
    start_es(ident=PASSPHRASE)
    subscriber = collectors(ident=PASSPHRASE)
    subscriber.subscribe("INJECT.TEST")
    callback = subscriber._callback._pyroUri
    with Proxy(callback) as intruder:
        with pytest.raises(errors.PyroError, match="passphrase refused"):
            intruder.events([("INJECT.TEST", "forged batch", time.time())])
    with AuthProxy(callback, Authenticator("wrong")) as intruder:
        with pytest.raises(errors.PyroError, match="passphrase refused"):
            intruder.event(eventservice.Event("INJECT.TEST", "forged event"))
    with eventservice.Publisher(ident=PASSPHRASE) as publisher:
        assert publisher.publish("INJECT.TEST", "genuine") == 1
    assert [event.msg for event in subscriber.take(1)] == ["genuine"]
    assert subscriber.nothing_more()


# -- the embedded name server ---------------------------------------------------


def test_embedded_name_server_with_ident_refuses_plain_proxy(start_es, pyro_settings):
    """A stock Pyro5 proxy without the passphrase cannot use the ES's embedded name server."""
    start_es(ident=PASSPHRASE, embedded_ns=True)
    with Proxy(f"PYRO:{core.NAMESERVER_NAME}@{LOCALHOST}:{pyro_settings.NS_PORT}") as ns:
        with pytest.raises(errors.PyroError, match="passphrase refused"):
            ns.lookup(eventservice.EVENTSERVER_NAME)


def test_embedded_name_server_with_ident_serves_passphrase_holders(start_es, collectors):
    """With the passphrase, locate_ns reaches the embedded name server and clients find the ES."""
    es = start_es(ident=PASSPHRASE, embedded_ns=True)
    with naming.locate_ns(LOCALHOST, authenticator=Authenticator(PASSPHRASE)) as ns:
        assert str(ns.lookup(eventservice.EVENTSERVER_NAME)) == str(es.uri)
    subscriber = collectors(ident=PASSPHRASE)
    subscriber.subscribe("EMBEDDED.IDENT")
    with eventservice.Publisher(ident=PASSPHRASE) as publisher:
        assert publisher.publish("EMBEDDED.IDENT", "found") == 1
    assert subscriber.take(1)[0].msg == "found"


def test_embedded_name_server_refuses_wrong_ident(start_es):
    """Publisher(ident='wrong') against the embedded name server gets PassphraseError."""
    start_es(ident=PASSPHRASE, embedded_ns=True)
    with pytest.raises(PassphraseError, match="passphrase refused"):
        eventservice.Publisher(ident="wrong")


def test_embedded_name_server_refuses_missing_ident_as_passphrase_error(start_es):
    """Publisher() without ident against a protected name server is told the passphrase was refused."""
    start_es(ident=PASSPHRASE, embedded_ns=True)
    with pytest.raises(PassphraseError, match="passphrase refused"):
        eventservice.Publisher()


# -- the es command -------------------------------------------------------------


def start_es_command(processes, pyro_settings, *options: str):
    """Run 'es -n 127.0.0.1 --ns --ns-port PORT <options>' and point Pyro5's NS_PORT at it."""
    ns_port = free_port()
    server = processes.spawn(ES, "-n", LOCALHOST, "--ns", "--ns-port", str(ns_port), *options)
    read_line(server, expect="Event Service URI:")
    pyro_settings.NS_PORT = ns_port
    return server


def test_es_command_with_ident_requires_it(processes, pyro_settings):
    """'es -i secret --ns': Publisher(ident='secret') publishes, a wrong ident is refused."""
    start_es_command(processes, pyro_settings, "-i", PASSPHRASE)
    with eventservice.Publisher(ident=PASSPHRASE) as publisher:
        assert publisher.publish("CLI.IDENT", 1) == 0
    with pytest.raises(PassphraseError, match="passphrase refused"):
        eventservice.Publisher(ident="wrong")


def test_es_command_reads_ident_from_file(processes, pyro_settings, tmp_path):
    """'es --ident-file FILE' requires the passphrase on the file's first line and never prints it."""
    ident_file = tmp_path / "ident"
    ident_file.write_text(WIRE_PASSPHRASE + "\nignored\n", encoding="utf-8")
    server = start_es_command(processes, pyro_settings, "--ident-file", str(ident_file))
    with eventservice.Publisher(ident=WIRE_PASSPHRASE) as publisher:
        assert publisher.publish("CLI.IDENTFILE", 1) == 0
    with pytest.raises(PassphraseError, match="passphrase refused"):
        eventservice.Publisher(ident="ignored")
    server.kill()
    out, err = server.communicate(timeout=WAIT)
    assert WIRE_PASSPHRASE not in out + err
