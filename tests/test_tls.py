"""TLS on every hop: ES and its embedded name server (an `es` process) and subscriber callbacks.

A throw-away CA and a certificate for 127.0.0.1 are made at run time.
"""
from __future__ import annotations

import datetime
import ipaddress
import socket
import ssl

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from Pyro5 import core, errors
from Pyro5.api import Proxy

import eventservice
from conftest import LOCALHOST, WAIT, Collector, read_line
from eventservice.pyro import compat

pytestmark = pytest.mark.network


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write_key(path, key) -> None:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))


def _valid_for_a_day(builder: x509.CertificateBuilder) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.timezone.utc)
    return builder.not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))


@pytest.fixture(scope="module")
def certificates(tmp_path_factory):
    """(ca, cert, key) file paths: a CA and a certificate it signed for 127.0.0.1.

    They carry what strict X.509 checking (Python 3.13's default VERIFY_X509_STRICT) demands and README's
    TLS section asks of users' certificates: key identifiers (SKI and AKI), the CA's
    critical basic constraints and key usage, and a SAN naming the address clients connect to.
    """
    folder = tmp_path_factory.mktemp("tls")
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca = (_valid_for_a_day(x509.CertificateBuilder()).subject_name(_name("eventservice test CA"))
          .issuer_name(_name("eventservice test CA"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                                       encipher_only=False, decipher_only=False), critical=True)
          .add_extension(ca_ski, critical=False)
          .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (_valid_for_a_day(x509.CertificateBuilder()).subject_name(_name("127.0.0.1")).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            # one certificate serves the ES, the subscriber daemons and the two-way TLS clients
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = folder / "ca.pem", folder / "cert.pem", folder / "key.pem"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(paths[2], key)
    return tuple(str(path) for path in paths)


def _handshake_in_memory(client: ssl.SSLContext, server: ssl.SSLContext, hostname: str) -> ssl.SSLObject:
    """A TLS handshake between two contexts through memory buffers; the client side, handshake done."""
    client_in, client_out, server_in, server_out = (ssl.MemoryBIO() for _ in range(4))
    client_side = client.wrap_bio(client_in, client_out, server_hostname=hostname)
    server_side = server.wrap_bio(server_in, server_out, server_side=True)
    pending = [client_side, server_side]
    for _ in range(10):  # TLS 1.3 needs 2 round trips, TLS 1.2 3
        for side in list(pending):
            try:
                side.do_handshake()
                pending.remove(side)
            except ssl.SSLWantReadError:
                pass
        server_in.write(client_out.read())
        client_in.write(server_out.read())
        if not pending:
            return client_side
    pytest.fail(f"handshake unfinished: {pending}")


def test_test_certificates_pass_strict_x509_checking_on_every_python(certificates):
    """What Python 3.13 demands by default (VERIFY_X509_STRICT: AKI, CA key usage, ...) is demanded here on 3.10 too."""
    ca, cert, key = certificates
    client = ssl.create_default_context(cafile=ca)
    client.verify_flags |= ssl.VERIFY_X509_STRICT
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert, key)
    client_side = _handshake_in_memory(client, server, "127.0.0.1")
    assert client_side.getpeercert()["subjectAltName"] == (("IP Address", "127.0.0.1"),)


@pytest.fixture
def plain_afterwards():
    """Whatever a test switches on, leave this process without Pyro5's cached TLS contexts."""
    yield
    compat.reset_ssl_contexts()


def _start_tls_es(processes, pyro_settings, certificates, *extra: str):
    ca, cert, key = certificates
    es_process = processes.spawn("bin/es", "--ns", "-n", "127.0.0.1", "--ns-port", "0", "-p", "0",
                                 "--ssl-ca", ca, "--ssl-cert", cert, "--ssl-key", key, *extra)
    ns_line = read_line(es_process, expect="Name server URI")
    es_line = read_line(es_process, expect="Event Service URI")
    pyro_settings.NS_PORT = int(ns_line.strip().rsplit(":", 1)[1])
    es_process.es_port = int(es_line.strip().rsplit(":", 1)[1])
    return es_process


def test_tls_carries_events_end_to_end(processes, pyro_settings, certificates, plain_afterwards, collectors):
    """With TLS on in the ES process and here, publish and delivery work as usual."""
    _start_tls_es(processes, pyro_settings, certificates)
    eventservice.use_tls(*certificates)
    subscriber = collectors()
    subscriber.subscribe("SECRET.NEWS")
    eventservice.Publisher().publish("SECRET.NEWS", ("confidential", 1))
    [event] = subscriber.take(1)
    assert event.msg == ("confidential", 1)


def test_plain_client_cannot_talk_to_a_tls_service(processes, pyro_settings, certificates, plain_afterwards):
    """A client without TLS gets no answer from the TLS name server or Event Service."""
    _start_tls_es(processes, pyro_settings, certificates)
    with pytest.raises(errors.PyroError):
        eventservice.Publisher()


def test_subscriber_callbacks_are_served_over_tls(processes, pyro_settings, certificates, plain_afterwards, collectors):
    """The subscriber's own daemon serves TLS: a plain Pyro5 proxy cannot reach it."""
    _start_tls_es(processes, pyro_settings, certificates)
    eventservice.use_tls(*certificates)
    subscriber = collectors()
    subscriber.subscribe("X")
    callback_uri = subscriber._callback._pyroUri
    pyro_settings.SSL = False
    with pytest.raises(errors.CommunicationError):
        with Proxy(callback_uri) as plain:
            plain._pyroTimeout = WAIT
            plain._pyroBind()


def test_two_way_tls_refuses_clients_without_certificate(processes, pyro_settings, certificates, plain_afterwards):
    """With --ssl-require-client-cert, a TLS client that shows no certificate is refused."""
    _start_tls_es(processes, pyro_settings, certificates, "--ssl-require-client-cert")
    ca, _, _ = certificates
    eventservice.use_tls(ca)  # trusts the server, shows no certificate
    with pytest.raises(errors.PyroError):
        eventservice.Publisher()


def test_two_way_tls_accepts_clients_with_certificate(processes, pyro_settings, certificates, plain_afterwards):
    """With --ssl-require-client-cert, a client with a CA-signed certificate gets through."""
    _start_tls_es(processes, pyro_settings, certificates, "--ssl-require-client-cert")
    eventservice.use_tls(*certificates, require_client_cert=True)
    receiver = Collector()
    try:
        receiver.listenInThread()
        receiver.subscribe("TWO.WAY")
        assert eventservice.Publisher().publish("TWO.WAY", 1) == 1
        assert receiver.take(1)[0].msg == 1
    finally:
        receiver.close()


def test_use_tls_names_a_missing_file(tmp_path):
    """A wrong path is reported by name, before anything connects."""
    missing = str(tmp_path / "nope.pem")
    with pytest.raises(FileNotFoundError, match=r"nope\.pem"):
        eventservice.use_tls(missing)


def test_a_silent_connection_does_not_lock_new_tls_clients_out(processes, pyro_settings, certificates,
                                                               plain_afterwards, collectors):
    """A raw TCP connection that never starts its TLS handshake sits on the ES's port (and on a subscriber's):
    a new TLS publisher and subscriber are served while it stays open, long before any idle limit.

    The clients give up after 5 s (COMMTIMEOUT); the ES's idle limit is 60 s. Were the TLS handshake run
    in the accepting thread, the silent connection would hold every new client until then.
    """
    es_process = _start_tls_es(processes, pyro_settings, certificates, "--idle-timeout", "60")
    eventservice.use_tls(*certificates)
    pyro_settings.COMMTIMEOUT = 5.0
    with socket.create_connection((LOCALHOST, es_process.es_port)) as silent_at_es:
        publisher = eventservice.Publisher()
        subscriber = collectors()
        daemon_port = subscriber._callback_proxy()._pyroUri.port
        with socket.create_connection((LOCALHOST, daemon_port)) as silent_at_subscriber:
            subscriber.subscribe("THROUGH")  # the ES connects to the subscriber's daemon now
            assert publisher.publish("THROUGH", 1) == 1
            assert subscriber.take(1)[0].msg == 1
            with Proxy(core.URI(f"PYRO:{core.DAEMON_NAME}@{LOCALHOST}:{daemon_port}")) as daemon:
                assert daemon.ping() is None  # a new TLS client of the subscriber's daemon, served
            silent_at_subscriber.setblocking(True)
        silent_at_es.settimeout(0.1)
        with pytest.raises(socket.timeout):
            silent_at_es.recv(1)  # still open: the ES did not just close it
        publisher.close()
