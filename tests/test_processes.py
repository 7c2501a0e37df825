"""The Event Service across processes: missing name servers, the ``es`` command, dead subscribers, load."""
from __future__ import annotations

import concurrent.futures
import os
import re
import select
import signal
import subprocess
import threading
import time

import pytest
from Pyro5 import errors
from Pyro5.client import Proxy

import eventservice
from conftest import LOCALHOST, WAIT, bounded, flat_stats, free_port, read_line, wait_until

pytestmark = pytest.mark.network

ES = "bin/es"

#: a subscriber process: subscribes to argv[1], prints 'ready', then 'event <msg>' per event
SUBSCRIBER_SCRIPT = """
import sys
import eventservice

class Printer(eventservice.Subscriber):
    def event(self, event):
        print("event", event.msg, flush=True)

subscriber = Printer()
subscriber.subscribe(sys.argv[1])
print("ready", flush=True)
subscriber.listen()
"""



def es_uri(process) -> str:
    """The URI an ``es`` process prints once it serves."""
    line = read_line(process, expect="Event Service URI:")
    return line.split("Event Service URI:", 1)[1].strip()


def ns_lookup(nameserver, name: str = eventservice.EVENTSERVER_NAME) -> str:
    """What the name server has under ``name``, via a plain Pyro5 proxy."""
    with Proxy(nameserver.uri) as ns:
        return str(ns.lookup(name))


def sigterm_handled(process) -> bool:
    """True once ``process`` catches SIGTERM (Linux: SigCgt in /proc; elsewhere assume so)."""
    try:
        with open(f"/proc/{process.pid}/status", encoding="ascii") as status:
            caught = next(line for line in status if line.startswith("SigCgt:"))
    except (OSError, StopIteration):
        return True
    return bool(int(caught.split()[1], 16) & (1 << (signal.SIGTERM - 1)))


def stop(process) -> None:
    """SIGTERM ``process`` once it handles SIGTERM; fail unless it exits within WAIT."""
    wait_until(lambda: sigterm_handled(process), message="the ES to install its SIGTERM handler")
    process.send_signal(signal.SIGTERM)
    try:
        process.communicate(timeout=WAIT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{process.args} still running {WAIT}s after SIGTERM")


@pytest.mark.parametrize("client", [eventservice.Publisher, eventservice.Subscriber])
def test_client_without_name_server_raises_naming_error_quickly(pyro_settings, client):
    """Publisher() or Subscriber() with no name server fails fast with a NamingError that says what to start."""
    pyro_settings.NS_PORT = free_port()
    with pytest.raises(errors.NamingError) as failure:
        bounded(client)  # no waiting for a name server that is not there
    assert "es --ns" in str(failure.value) or "Pyro5.nameserver" in str(failure.value)


def test_clients_with_name_server_but_no_event_service_raise_naming_error(nameserver):
    """A name server without 'Pyro.EventService' gives a NamingError telling to start 'es'."""
    for client in (eventservice.Publisher, eventservice.Subscriber):
        with pytest.raises(errors.NamingError) as failure:
            client()
        assert "'es'" in str(failure.value)
        assert eventservice.EVENTSERVER_NAME in str(failure.value)


def test_es_without_name_server_serves_clients_given_its_uri(pyro_settings, processes, collectors):
    """'es -N -p PORT' needs no name server: clients given esURI publish and receive."""
    pyro_settings.NS_PORT = free_port()  # nothing there: any name server use would fail
    port = free_port()
    server = processes.spawn(ES, "-N", "-n", LOCALHOST, "-p", str(port))
    uri = es_uri(server)
    assert uri == f"PYRO:{eventservice.EVENTSERVER_NAME}@{LOCALHOST}:{port}"
    subscriber = collectors(esURI=uri)
    subscriber.subscribe("NONS.TEST")
    with eventservice.Publisher(esURI=uri) as publisher:
        assert publisher.publish("NONS.TEST", "hello") == 1
    [event] = subscriber.take(1)
    assert (event.subject, event.msg) == ("NONS.TEST", "hello")


def test_es_command_registers_in_stock_name_server(nameserver, processes):
    """'es' prints its PYRO URI and registers it as 'Pyro.EventService' in a stock Pyro5 name server."""
    server = processes.spawn(ES, "-n", LOCALHOST)
    uri = es_uri(server)
    assert uri.startswith(f"PYRO:{eventservice.EVENTSERVER_NAME}@{LOCALHOST}:")
    assert ns_lookup(nameserver) == uri


def test_second_es_on_same_name_server_refuses_to_start(nameserver, processes):
    """A second 'es' against a name server with a live ES exits non-zero saying one is already running."""
    first = processes.spawn(ES, "-n", LOCALHOST)
    uri = es_uri(first)
    second = processes.spawn(ES, "-n", LOCALHOST)
    _, err = second.communicate(timeout=WAIT)
    assert second.returncode != 0
    assert "already running" in err
    assert first.poll() is None
    assert ns_lookup(nameserver) == uri


def test_sigterm_stops_es_promptly_and_unregisters_it(nameserver, processes):
    """SIGTERM makes 'es' exit 0 (within the bounded wait) and removes its name server registration."""
    server = processes.spawn(ES, "-n", LOCALHOST)
    es_uri(server)
    stop(server)
    assert server.returncode == 0
    with pytest.raises(errors.NamingError):
        ns_lookup(nameserver)


def sigterm_on_uri(process, timeout: float = WAIT) -> None:
    """SIGTERM ``process`` the moment its stdout shows the ES URI (read straight from the pipe, bounded)."""
    seen = b""
    deadline = time.monotonic() + timeout
    while b"Event Service URI:" not in seen:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not select.select([process.stdout], [], [], remaining)[0]:
            pytest.fail(f"{process.args} printed no URI within {timeout}s: {seen!r}")
        chunk = os.read(process.stdout.fileno(), 4096)
        if not chunk:
            pytest.fail(f"{process.args} ended before printing its URI: {seen!r}")
        seen += chunk
    process.send_signal(signal.SIGTERM)


def test_sigterm_right_after_uri_is_printed_still_stops_cleanly(pyro_settings, processes):
    """SIGTERM sent as soon as 'es' printed its URI is handled: exit 0, not death by signal."""
    pyro_settings.NS_PORT = free_port()
    codes = []
    for _ in range(3):
        server = processes.spawn(ES, "-N", "-n", LOCALHOST)
        sigterm_on_uri(server)
        server.communicate(timeout=WAIT)
        codes.append(server.returncode)
    assert codes == [0, 0, 0]


def test_new_es_replaces_stale_registration_of_killed_es(nameserver, processes):
    """After 'kill -9' of an ES its registration is stale; a new 'es' replaces it and starts."""
    killed = processes.spawn(ES, "-n", LOCALHOST)
    stale = es_uri(killed)
    killed.kill()
    killed.communicate(timeout=WAIT)
    assert ns_lookup(nameserver) == stale  # nothing cleaned up after kill -9
    replacement = processes.spawn(ES, "-n", LOCALHOST)
    uri = es_uri(replacement)
    assert uri != stale
    assert ns_lookup(nameserver) == uri
    with eventservice.Publisher() as publisher:
        assert publisher.publish("STALE.TEST", 1) == 0


def test_python_m_eventservice_server_runs_and_stops_on_sigterm(nameserver, processes):
    """'python -m eventservice.server' prints the URI, registers, and exits 0 on SIGTERM."""
    server = processes.spawn("-m", "eventservice.server", "-n", LOCALHOST)
    uri = es_uri(server)
    assert uri.startswith("PYRO:")
    assert ns_lookup(nameserver) == uri
    stop(server)
    assert server.returncode == 0


def test_es_help_lists_options_and_exits_zero(processes):
    """'es -h' prints usage with every classic and new option and exits 0."""
    helper = processes.spawn(ES, "-h")
    out, _ = helper.communicate(timeout=WAIT)
    assert helper.returncode == 0
    assert out.startswith("usage: es")
    for option in ("-n", "-p", "-N", "-i", "--ns", "--ns-port", "--ns-host", "--ident-file"):
        assert re.search(rf"(^|[\s\[,]){re.escape(option)}\b", out), option


def test_es_with_embedded_name_server_is_found_by_clients(pyro_settings, processes, collectors):
    """'es --ns --ns-port PORT' runs its own name server; clients pointed at that port find the ES."""
    ns_port = free_port()
    server = processes.spawn(ES, "-n", LOCALHOST, "--ns", "--ns-port", str(ns_port))
    ns_line = read_line(server, expect="Name server URI:")
    assert f"{LOCALHOST}:{ns_port}" in ns_line
    uri = es_uri(server)
    pyro_settings.NS_PORT = ns_port
    with Proxy(f"PYRO:Pyro.NameServer@{LOCALHOST}:{ns_port}") as ns:
        assert str(ns.lookup(eventservice.EVENTSERVER_NAME)) == uri
    subscriber = collectors()
    subscriber.subscribe("EMBEDDED.NS")
    with eventservice.Publisher() as publisher:
        assert publisher.publish("EMBEDDED.NS", 42) == 1
    assert subscriber.take(1)[0].msg == 42


def test_killed_subscriber_process_is_removed_and_does_not_block_publishers(start_es, processes, collectors):
    """After 'kill -9' of a subscriber process, publishing goes on, the ES drops it, live ones get everything."""
    es = start_es(queuesize=3)
    doomed = processes.spawn("-c", SUBSCRIBER_SCRIPT, "DEAD.TEST")
    read_line(doomed, expect="ready")
    live = collectors()
    live.subscribe("DEAD.TEST")
    assert flat_stats(es.service)["subscribers"] == 2
    publisher = eventservice.Publisher()
    assert publisher.publish("DEAD.TEST", 0) == 2
    read_line(doomed, expect="event 0")  # the ES now holds a connection to the doomed subscriber
    doomed.kill()
    doomed.communicate(timeout=WAIT)

    done = threading.Event()

    def publish_more() -> None:
        for number in range(1, 21):
            publisher.publish("DEAD.TEST", number)
        done.set()

    threading.Thread(target=publish_more, daemon=True).start()
    assert done.wait(WAIT), "publishing blocked on the dead subscriber's full queue"
    wait_until(lambda: flat_stats(es.service)["subscribers"] == 1, message="the ES to drop the dead subscriber")
    assert [event.msg for event in live.take(21)] == list(range(21))
    publisher.close()


def test_hung_subscriber_process_delays_publishers_at_most_the_delivery_timeout(start_es, processes, collectors):
    """A stopped (SIGSTOP) subscriber is dropped after delivery_timeout; blocked publishers then go on."""
    es = start_es(queuesize=3, delivery_timeout=1.0)
    hung = processes.spawn("-c", SUBSCRIBER_SCRIPT, "HUNG.TEST")
    read_line(hung, expect="ready")
    live = collectors()
    live.subscribe("HUNG.TEST")
    publisher = eventservice.Publisher()
    publisher.publish("HUNG.TEST", 0)
    read_line(hung, expect="event 0")
    os.kill(hung.pid, signal.SIGSTOP)  # the processes fixture SIGKILLs it afterwards

    done = threading.Event()

    def publish_more() -> None:
        for number in range(1, 21):
            publisher.publish("HUNG.TEST", number)
        done.set()

    threading.Thread(target=publish_more, daemon=True).start()
    # stopped, the subscriber never answers: without the 1 s delivery timeout the publisher would block for good
    assert done.wait(WAIT), "publishing stayed blocked on the hung subscriber"
    wait_until(lambda: flat_stats(es.service)["subscribers"] == 1, message="the ES to drop the hung subscriber")
    assert [event.msg for event in live.take(21)] == list(range(21))
    publisher.close()


def test_publisher_reconnects_after_es_restart_on_same_port(nameserver, processes, collectors):
    """A Publisher keeps working across an ES restart (same port, same name server)."""
    port = free_port()
    first = processes.spawn(ES, "-n", LOCALHOST, "-p", str(port))
    es_uri(first)
    publisher = eventservice.Publisher()
    assert publisher.publish("RESTART.TEST", "before") == 0
    stop(first)
    second = processes.spawn(ES, "-n", LOCALHOST, "-p", str(port))
    es_uri(second)
    subscriber = collectors()
    subscriber.subscribe("RESTART.TEST")
    assert publisher.publish("RESTART.TEST", "after") == 1
    assert subscriber.take(1)[0].msg == "after"
    publisher.close()


def test_es_serves_500_concurrent_client_connections(pyro_settings, processes, collectors):
    """500 Publishers connected at once each publish once; a subscriber gets all 500 events."""
    count = 500
    pyro_settings.NS_PORT = free_port()
    server = processes.spawn(ES, "-N", "-n", LOCALHOST)
    uri = es_uri(server)
    subscriber = collectors(esURI=uri)
    subscriber.subscribe("LOAD.TEST")
    publishers: list[eventservice.Publisher] = []
    try:
        with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
            publishers.extend(pool.map(lambda _: eventservice.Publisher(esURI=uri), range(count)))
            assert all(p._es._pyroConnection is not None for p in publishers)
            if os.path.isdir(f"/proc/{server.pid}/fd"):  # the ES holds every connection open
                assert len(os.listdir(f"/proc/{server.pid}/fd")) >= count
            queued = list(pool.map(lambda item: item[1].publish("LOAD.TEST", item[0]), enumerate(publishers)))
        assert queued == [1] * count
        assert all(p._es._pyroConnection is not None for p in publishers)
        received = sorted(event.msg for event in subscriber.take(count, timeout=30))
        assert received == list(range(count))
    finally:
        for publisher in publishers:
            publisher.close()


def test_starter_shutdown_drops_connected_publishers(start_es):
    """After an in-process ES shuts down, a connected Publisher gets an error instead of a silent 0."""
    es = start_es(use_ns=False)
    publisher = eventservice.Publisher(esURI=es.uri, reconnectTimeout=0)  # no waiting for an ES to come back
    assert publisher.publish("SHUTDOWN.TEST", "before") == 0
    es.stop()
    with pytest.raises(errors.CommunicationError):
        publisher.publish("SHUTDOWN.TEST", "after")
    publisher.close()
