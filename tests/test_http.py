"""The monitoring endpoint (``es --http``) of a real ``es`` process: JSON, Prometheus, the page, tokens, bad requests.

Every test starts ``es`` as a subprocess on 127.0.0.1 (free ports) and talks
HTTP to it over real sockets; publishers and subscribers are the real
skeletons. Every wait is bounded.
"""
from __future__ import annotations

import json
import os
import socket
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

import eventservice
from conftest import LOCALHOST, WAIT, read_line, wait_until
from eventservice.server.monitor import parse_address
from test_tls import certificates  # noqa: F401 (a fixture: a throw-away CA and a certificate for 127.0.0.1)

pytestmark = pytest.mark.network

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never a proxy from the environment


class MonitoredES:
    """An ``es -N --http`` process: its Pyro URI, its monitoring base URL and PID."""

    def __init__(self, process, uri: str, url: str) -> None:
        self.process = process
        self.uri = uri
        self.url = url
        self.port = urllib.parse.urlsplit(url).port

    def get(self, path: str, headers: dict[str, str] | None = None, context: ssl.SSLContext | None = None):
        """(status, headers, body bytes) of GET ``path``; HTTP errors are answers too."""
        request = urllib.request.Request(self.url.rstrip("/") + path, headers=headers or {})
        try:
            if context is not None:
                response = urllib.request.urlopen(request, timeout=WAIT, context=context)
            else:
                response = _OPENER.open(request, timeout=WAIT)
            with response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as error:
            with error:
                return error.code, dict(error.headers), error.read()

    def json(self, path: str, **kwargs):
        status, _, body = self.get(path, **kwargs)
        assert status == 200, (path, status, body)
        return json.loads(body)

    def raw(self, data: bytes, timeout: float = WAIT) -> bytes:
        """Send ``data`` on a fresh connection and read the whole answer."""
        with socket.create_connection((LOCALHOST, self.port), timeout=timeout) as sock:
            sock.sendall(data)
            return _read_all(sock)

    def threads(self) -> int:
        return len(os.listdir(f"/proc/{self.process.pid}/task"))


def _read_all(sock: socket.socket) -> bytes:
    answer = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return answer
        answer += chunk


def _status(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


@pytest.fixture
def start_monitored(processes):
    """Factory: ``start_monitored(*es args, http="127.0.0.1:0", env=None)`` -> MonitoredES."""

    def start(*args: str, http: str = "127.0.0.1:0", env: dict[str, str] | None = None) -> MonitoredES:
        process = processes.spawn("-m", "eventservice.server", "-N", "-n", LOCALHOST, "--http", http, *args, env=env)
        uri = read_line(process, expect="Event Service URI").split(": ", 1)[1].strip()
        url = read_line(process, expect="Monitoring").split(": ", 1)[1].strip()
        return MonitoredES(process, uri, url)

    return start


@pytest.fixture
def monitored(start_monitored):
    return start_monitored(env={"EVENTSERVICE_HTTP_REQUEST_TIMEOUT": "1.5"})


def _subscriber_uri(subscriber: eventservice.Subscriber) -> str:
    return str(subscriber._callback._pyroUri)


SECRET = "message-contents-never-shown-7f3a"


def test_stats_and_subscribers_agree_with_what_was_published_and_delivered(monitored, collectors):
    exact = collectors(esURI=monitored.uri)
    exact.subscribe("HTTP.A")
    pattern = collectors(esURI=monitored.uri)
    pattern.subscribeMatch(r"^HTTP\.")
    with eventservice.Publisher(esURI=monitored.uri) as publisher:
        for n in range(20):
            publisher.publish("HTTP.A", (SECRET, n))
        for n in range(5):
            publisher.publish("HTTP.B", (SECRET, n))
    exact.take(20)
    pattern.take(25)

    def delivered() -> bool:
        return monitored.json("/stats")["counters"]["delivered"] == 45

    wait_until(delivered, message="/stats counting 45 deliveries")
    stats = monitored.json("/stats")
    assert stats["counters"]["published"] == 25
    assert stats["gauges"]["subscribers"] == 2
    assert stats["gauges"]["subscriptions_exact"] == 1 and stats["gauges"]["subscriptions_pattern"] == 1
    assert stats["gauges"]["queued"] == 0
    assert stats["version"] == eventservice.__version__ and stats["uptime"] > 0

    listing = monitored.json("/subscribers")
    assert listing["count"] == 2
    by_uri = {entry["uri"]: entry for entry in listing["subscribers"]}
    assert set(by_uri) == {_subscriber_uri(exact), _subscriber_uri(pattern)}
    assert (by_uri[_subscriber_uri(exact)]["subjects"], by_uri[_subscriber_uri(exact)]["patterns"]) == (1, 0)
    assert (by_uri[_subscriber_uri(pattern)]["subjects"], by_uri[_subscriber_uri(pattern)]["patterns"]) == (0, 1)
    assert by_uri[_subscriber_uri(exact)]["delivered"] == 20
    assert by_uri[_subscriber_uri(pattern)]["delivered"] == 25
    assert all(entry["queued"] == 0 and entry["dropped"] == 0 for entry in listing["subscribers"])
    assert listing["partial"] is ("note" in listing)  # an older ES says its list is partial, and why

    for path in ("/stats", "/subscribers", "/api/status", "/metrics", "/"):
        status, _, body = monitored.get(path)
        assert status == 200 and SECRET.encode() not in body, path


def test_metrics_parse_with_prometheus_clients_parser_and_match_stats(monitored, collectors):
    subscriber = collectors(esURI=monitored.uri)
    subscriber.subscribe("METRICS.X")
    with eventservice.Publisher(esURI=monitored.uri) as publisher:
        for n in range(7):
            publisher.publish(["METRICS.X", "METRICS.UNHEARD"], n)
    subscriber.take(7)
    wait_until(lambda: monitored.json("/stats")["counters"]["delivered"] == 7, message="7 deliveries counted")

    status, headers, body = monitored.get("/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4")
    text = body.decode()
    families = {family.name: family for family in text_string_to_metric_families(text)}
    published = families["eventservice_events_published"]
    assert published.type == "counter" and published.documentation
    assert [sample.value for sample in published.samples if sample.name.endswith("_total")] == [7.0]
    delivered = families["eventservice_events_delivered"]
    assert [sample.value for sample in delivered.samples if sample.name.endswith("_total")] == [7.0]
    assert families["eventservice_subscribers"].type == "gauge"
    assert [sample.value for sample in families["eventservice_subscribers"].samples] == [1.0]
    assert families["eventservice_uptime_seconds"].type == "gauge"
    assert families["eventservice_build_info"].samples[0].labels == {"version": eventservice.__version__}
    for name in families:
        assert f"# HELP {name}" in text and f"# TYPE {name}" in text
    labels = {label for family in families.values() for sample in family.samples for label in sample.labels}
    assert labels <= {"reason", "kind", "version"}  # never a label per subject or subscriber
    assert "METRICS.X" not in text and _subscriber_uri(subscriber) not in text


def test_status_feed_shows_busiest_subjects_and_a_rate(monitored):
    with eventservice.Publisher(esURI=monitored.uri) as publisher:

        def busy() -> bool:
            for _ in range(20):
                publisher.publish("RATE.BUSY", SECRET)
            publisher.publish("RATE.QUIET", SECRET)
            status = monitored.json("/api/status")
            rates = dict(status["subjects"])
            history = status["history"]
            return rates.get("RATE.BUSY", 0) > rates.get("RATE.QUIET", 0) > 0 and bool(history) and history[-1][1] > 0

        wait_until(busy, interval=0.1, message="the status feed showing RATE.BUSY busier than RATE.QUIET")
    status = monitored.json("/api/status")
    assert status["uri"] == monitored.uri
    assert [subject for subject, _ in status["subjects"][:2]] == ["RATE.BUSY", "RATE.QUIET"]
    assert "http_token" not in status["settings"] and status["settings"]["queuesize"] == 1000
    assert status["endpoint"] == {"tls": False, "token": False}


def test_the_page_is_self_contained(monitored):
    status, headers, body = monitored.get("/")
    assert status == 200 and headers["Content-Type"] == "text/html; charset=utf-8"
    page = body.decode().replace('"http://www.w3.org/2000/svg"', "SVG-NAMESPACE")  # a name, not a fetch
    assert "<script" in page and 'fetch("api/status"' in page
    for reference in ("http://", "https://", "//cdn", "src=", "@import", "url("):
        assert reference not in page, reference  # no external scripts, fonts or styles
    assert "default-src 'none'" in headers["Content-Security-Policy"]
    assert 'name="viewport"' in page  # phone-sized screens


def test_bad_requests_get_the_right_status_and_the_es_goes_on(monitored, collectors):
    assert monitored.get("/nope")[0] == 404
    assert monitored.get("/stats/../../etc/passwd")[0] == 404
    answer = monitored.raw(b"POST /stats HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
    assert _status(answer) == 405 and b"Allow: GET, HEAD" in answer
    assert _status(monitored.raw(b"DELETE / HTTP/1.1\r\nHost: x\r\n\r\n")) == 405
    assert _status(monitored.raw(b"BREW /pot HTTP/1.1\r\nHost: x\r\n\r\n")) == 501
    assert _status(monitored.raw(b"GARBAGE\r\n\r\n")) == 400
    huge = b"GET /stats HTTP/1.1\r\nHost: x\r\n" + b"X-Filler: " + b"a" * 20000 + b"\r\n\r\n"
    assert _status(monitored.raw(huge)) == 431
    many = b"GET /stats HTTP/1.1\r\n" + b"".join(b"X-%d: y\r\n" % n for n in range(3000)) + b"\r\n"
    assert _status(monitored.raw(many)) == 431
    head = monitored.raw(b"HEAD /stats HTTP/1.1\r\nHost: x\r\n\r\n")
    assert _status(head) == 200 and head.endswith(b"\r\n\r\n")  # headers only

    subscriber = collectors(esURI=monitored.uri)
    subscriber.subscribe("STILL.HERE")
    with eventservice.Publisher(esURI=monitored.uri) as publisher:
        publisher.publish("STILL.HERE", 1)
    assert subscriber.take(1)[0].msg == 1
    assert monitored.get("/stats")[0] == 200


def test_slow_clients_time_out_with_408_while_others_are_served(monitored, collectors):
    """Slowloris: a head that never ends, one trickling a byte at a time; both get 408 (timeout 1.5 s here)."""
    threads_before = monitored.threads()
    silent = socket.create_connection((LOCALHOST, monitored.port), timeout=WAIT)
    silent.sendall(b"GET /stats HTTP/1.1\r\nHost: x\r\n")
    trickler = socket.create_connection((LOCALHOST, monitored.port), timeout=WAIT)
    with silent, trickler:
        assert monitored.get("/stats")[0] == 200  # served meanwhile
        subscriber = collectors(esURI=monitored.uri)
        subscriber.subscribe("SLOW.CLIENTS")
        with eventservice.Publisher(esURI=monitored.uri) as publisher:
            publisher.publish("SLOW.CLIENTS", "through")
        assert subscriber.take(1)[0].msg == "through"
        answer = b""
        trickler.settimeout(0.2)
        deadline = time.monotonic() + WAIT
        while not answer and time.monotonic() < deadline:
            try:
                trickler.sendall(b"X")  # one header byte at a time, forever
                answer = trickler.recv(65536)
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                break
        assert _status(answer) == 408
        assert _status(_read_all(silent)) == 408
    assert monitored.threads() <= threads_before + 8  # the fixed pool, however many clients came


def test_connections_beyond_the_limit_get_503_and_threads_stay_bounded(start_monitored):
    monitored = start_monitored()  # the default 10 s for a request head: the held connections keep their slots
    threads_before = monitored.threads()
    held = []
    try:
        for _ in range(40):
            held.append(socket.create_connection((LOCALHOST, monitored.port), timeout=WAIT))
            held[-1].sendall(b"GET /stats HTTP/1.1\r\n")  # an unfinished head holds its slot
        refused = 0
        for sock in held[32:]:
            answer = _read_all(sock)
            refused += _status(answer) == 503
        assert refused == 8
        assert monitored.threads() <= threads_before + 8
    finally:
        for sock in held:
            sock.close()
    wait_until(lambda: monitored.get("/stats")[0] == 200, message="the endpoint answering again")


def test_a_token_is_required_everywhere_when_set(start_monitored, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("s3cret-token\n")
    es = start_monitored("--http-token-file", str(token_file))
    for path in ("/", "/stats", "/subscribers", "/metrics", "/api/status", "/nope"):
        status, headers, body = es.get(path)
        assert status == 401 and headers["WWW-Authenticate"].startswith("Bearer"), path
        assert b"s3cret" not in body
    assert es.get("/stats", headers={"Authorization": "Bearer wrong-token"})[0] == 401
    assert es.get("/stats", headers={"Authorization": "Bearer s3cret-tokenX"})[0] == 401
    assert es.get("/stats?token=s3cret-toke")[0] == 401
    assert es.get("/stats", headers={"Authorization": "Bearer s3cret-token"})[0] == 200
    assert es.get("/metrics", headers={"Authorization": "bearer s3cret-token"})[0] == 200
    assert es.get("/stats?token=s3cret-token")[0] == 200
    assert es.get("/?token=s3cret-token")[0] == 200
    status = es.json("/api/status?token=s3cret-token")
    assert status["endpoint"]["token"] is True and "s3cret-token" not in json.dumps(status)


def test_with_a_passphrase_a_non_loopback_bind_without_token_is_refused(processes):
    es = processes.spawn("-m", "eventservice.server", "-N", "-n", LOCALHOST, "-i", "passphrase", "--http", "0.0.0.0:0")
    _, errors = es.communicate(timeout=WAIT)
    assert es.returncode == 1
    assert "passphrase" in errors and "--http-token" in errors


def test_with_a_passphrase_loopback_serves_without_token(start_monitored):
    es = start_monitored("-i", "passphrase")
    assert es.get("/stats")[0] == 200


def test_https_with_ssl_cert(start_monitored, certificates):  # noqa: F811 (the fixture imported above)
    ca, cert, key = certificates
    es = start_monitored("--ssl-ca", ca, "--ssl-cert", cert, "--ssl-key", key)
    assert es.url.startswith("https://127.0.0.1:")
    context = ssl.create_default_context(cafile=ca)
    assert es.json("/stats", context=context)["counters"]["published"] == 0
    assert es.json("/api/status", context=context)["endpoint"]["tls"] is True
    try:
        answer = es.raw(b"GET /stats HTTP/1.1\r\nHost: x\r\n\r\n")  # plain HTTP to the HTTPS port
    except ConnectionResetError:
        answer = b"(reset)"
    assert b'"counters"' not in answer
    assert es.get("/stats", context=context)[0] == 200  # and it still serves TLS clients


def test_environment_variable_turns_it_on_and_port_in_use_is_a_clear_error(processes):
    es = processes.spawn("-m", "eventservice.server", "-N", "-n", LOCALHOST, env={"EVENTSERVICE_HTTP": "127.0.0.1:0"})
    url = read_line(es, expect="Monitoring").split(": ", 1)[1].strip()
    port = urllib.parse.urlsplit(url).port
    second = processes.spawn("-m", "eventservice.server", "-N", "-n", LOCALHOST, "--http", f"127.0.0.1:{port}")
    _, errors = second.communicate(timeout=WAIT)
    assert second.returncode == 1 and "cannot start" in errors and "Traceback" not in errors


def test_without_prometheus_client_metrics_says_what_to_install(processes):
    code = ("import sys; sys.modules['prometheus_client'] = None; "
            "from eventservice.server.cli import main; sys.exit(main(sys.argv[1:]))")
    process = processes.spawn("-c", code, "-N", "-n", LOCALHOST, "--http", "127.0.0.1:0")
    read_line(process, expect="Event Service URI")
    es = MonitoredES(process, "", read_line(process, expect="Monitoring").split(": ", 1)[1].strip())
    status, _, body = es.get("/metrics")
    assert status == 501 and b"eventservice[monitoring]" in body
    assert es.get("/stats")[0] == 200


@pytest.mark.parametrize(("text", "expected"), [
    ("8080", ("127.0.0.1", 8080)),
    ("0.0.0.0:9000", ("0.0.0.0", 9000)),
    ("localhost:0", ("localhost", 0)),
    ("[::1]:8080", ("::1", 8080)),
    (":8080", ("127.0.0.1", 8080)),
])
def test_http_address_forms(text, expected):
    assert parse_address(text) == expected


@pytest.mark.parametrize("text", ["", "http", "host:port", "70000", "1.2.3.4:-1"])
def test_bad_http_addresses_are_refused_by_name(text):
    with pytest.raises(ValueError, match="--http"):
        parse_address(text)


def test_cli_refuses_token_problems_by_name(processes, tmp_path):
    empty = tmp_path / "empty"
    empty.write_text("\n")
    cases = [
        (("--http", "0", "--http-token-file", str(empty)), "holds no token"),
        (("--http", "0", "--http-token-file", str(tmp_path / "missing")), "missing"),
        (("--http-token", "abc"), "needs --http"),
        (("--http", "nonsense"), "--http wants [HOST:]PORT"),
    ]
    for args, expected in cases:
        es = processes.spawn("-m", "eventservice.server", "-N", "-n", LOCALHOST, *args)
        _, errors = es.communicate(timeout=WAIT)
        assert es.returncode == 1 and expected in errors and "Traceback" not in errors, (args, errors)


def test_starter_in_process_serves_and_shutdown_closes_the_endpoint(start_es):
    running = start_es(use_ns=False, http="127.0.0.1:0")
    monitor = running.starter.monitor
    assert monitor is not None
    es = MonitoredES(None, str(running.uri), monitor.url)
    assert es.json("/stats")["counters"]["published"] == 0
    running.stop()
    with pytest.raises(OSError):
        socket.create_connection((LOCALHOST, es.port), timeout=WAIT).close()


def test_endpoint_is_off_by_default(start_es):
    running = start_es(use_ns=False)
    assert running.starter.monitor is None and running.service.subject_rates() is None
