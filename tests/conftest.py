"""Shared fixtures: a real Pyro5 name server, a real Event Service, collecting subscribers, subprocesses.

Everything binds to 127.0.0.1 on free ports; every fixture stops what it
started; every wait is bounded.
"""
from __future__ import annotations

import os
import queue
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from Pyro5 import config as pyro_config
from Pyro5 import nameserver as pyro_nameserver

import eventservice
from eventservice.core import config as es_config

ROOT = Path(__file__).resolve().parent.parent
LOCALHOST = "127.0.0.1"
WAIT = 10.0  # seconds any single expected thing may take before a test fails


def flat_stats(stats_or_service) -> dict:
    """An ES's stats() counters and gauges in one dict (takes the service or its stats())."""
    stats = stats_or_service if isinstance(stats_or_service, dict) else stats_or_service.stats()
    assert set(stats) == {"counters", "gauges"}, stats
    return {**stats["counters"], **stats["gauges"]}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (just now)."""
    with socket.socket() as sock:
        sock.bind((LOCALHOST, 0))
        return sock.getsockname()[1]


def wait_until(predicate, timeout: float = WAIT, interval: float = 0.01, message: str = "condition") -> None:
    """Poll ``predicate`` until true; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)


def bounded(function, *args, timeout: float = WAIT):
    """``function(*args)`` in a daemon thread: its result, or what it raised, raised here; fail past ``timeout``.

    For calls that must return but, broken, would hang: the test fails within ``timeout`` instead.
    """
    outcome: queue.Queue = queue.Queue()

    def run() -> None:
        try:
            outcome.put((True, function(*args)))
        except BaseException as error:  # handed to the caller
            outcome.put((False, error))

    threading.Thread(target=run, name=f"bounded-{getattr(function, '__name__', 'call')}", daemon=True).start()
    try:
        returned, value = outcome.get(timeout=timeout)
    except queue.Empty:
        pytest.fail(f"{function!r} still running after {timeout}s")
    if not returned:
        raise value
    return value


@pytest.fixture(autouse=True)
def pyro_settings():
    """Give each test Pyro5 defaults bound to 127.0.0.1, and restore whatever it changed."""
    saved = pyro_config.as_dict()
    pyro_config.reset(use_environment=False)
    pyro_config.HOST = LOCALHOST
    pyro_config.NS_HOST = LOCALHOST
    yield pyro_config
    for name, value in saved.items():
        setattr(pyro_config, name, value)


class NameServer:
    """A stock Pyro5 name server serving from a thread."""

    def __init__(self) -> None:
        self.uri, self.daemon, _ = pyro_nameserver.start_ns(host=LOCALHOST, port=0, enableBroadcast=False)
        self.port = self.daemon.sock.getsockname()[1]
        self._stopping = threading.Event()
        self.thread = threading.Thread(target=self.daemon.requestLoop, args=(lambda: not self._stopping.is_set(),),
                                       name="test-ns", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        # not Daemon.shutdown(): it closes the socket 50 ms after waking the loop, and a loop that was not
        # scheduled by then calls accept() on None (an unhandled thread exception on a busy machine)
        self._stopping.set()
        self.daemon.transportServer.wakeup()
        self.thread.join(WAIT)
        assert not self.thread.is_alive(), "the test name server did not stop"
        self.daemon.close()


@pytest.fixture
def nameserver(pyro_settings):
    """A real stock Pyro5 name server; Pyro5's NS_HOST/NS_PORT point at it."""
    ns = NameServer()
    pyro_settings.NS_PORT = ns.port
    yield ns
    ns.stop()


class RunningES:
    """An EventServiceStarter serving from a thread."""

    def __init__(self, ident: str | None, use_ns: bool, ns_port: int | None, settings: es_config.Settings,
                 embedded_ns: bool = False) -> None:
        self.starter = eventservice.EventServiceStarter(ident, settings)
        self.uri = self.starter.initialize(LOCALHOST, 0, useNameServer=use_ns, embeddedNameServer=embedded_ns,
                                           nsHost=LOCALHOST, nsPort=ns_port)
        self.service = self.starter.service
        self.thread = threading.Thread(target=self.starter.handleRequests, name="test-es", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.starter.shutdown()
        self.thread.join(WAIT)


@pytest.fixture
def start_es(pyro_settings, nameserver):
    """Factory: ``start_es(ident=None, use_ns=True, embedded_ns=False, **settings)`` -> RunningES.

    Uses the ``nameserver`` fixture's name server unless ``use_ns`` is False or
    ``embedded_ns`` is True (then Pyro5's NS_PORT points at the embedded one).
    The name server outlives every ES started here.
    """
    started: list[RunningES] = []

    def start(ident: str | None = None, use_ns: bool = True, embedded_ns: bool = False, **settings) -> RunningES:
        ns_port = None
        if use_ns and not embedded_ns:
            ns_port = nameserver.port
        elif embedded_ns:
            ns_port = 0
        running = RunningES(ident, use_ns, ns_port, es_config.Settings(**settings), embedded_ns)
        if embedded_ns:
            pyro_settings.NS_PORT = running.starter.nsUri.port
        started.append(running)
        return running

    yield start
    for running in reversed(started):
        running.stop()


@pytest.fixture
def es(start_es):
    """A default Event Service registered in a stock name server."""
    return start_es()


class Collector(eventservice.Subscriber):
    """A Subscriber that puts every event on a queue and listens in a background thread."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.received: queue.Queue = queue.Queue()

    def event(self, event) -> None:
        self.received.put(event)

    def take(self, count: int = 1, timeout: float = WAIT) -> list:
        """The next ``count`` events; fails the test if they do not arrive in time."""
        deadline = time.monotonic() + timeout
        events = []
        for _ in range(count):
            try:
                events.append(self.received.get(timeout=max(0.0, deadline - time.monotonic())))
            except queue.Empty:
                pytest.fail(f"received {len(events)} of {count} events within {timeout}s: {events}")
        return events

    def nothing_more(self, within: float = 0.3) -> bool:
        """True if no further event arrives within ``within`` seconds (only for asserting absence)."""
        try:
            extra = self.received.get(timeout=within)
        except queue.Empty:
            return True
        self.received.put(extra)
        return False


@pytest.fixture
def collectors():
    """Factory for listening Collectors; closes them all afterwards."""
    made: list[Collector] = []

    def make(*args, listen: bool = True, **kwargs) -> Collector:
        collector = Collector(*args, **kwargs)
        made.append(collector)
        if listen:
            collector.listenInThread()
        return collector

    yield make
    for collector in made:
        collector.close()


class Processes:
    """Starts Python subprocesses with the project importable; kills any left at teardown."""

    def __init__(self) -> None:
        self.started: list[subprocess.Popen] = []

    def spawn(self, *args: str, env: dict[str, str] | None = None, **kwargs) -> subprocess.Popen:
        full_env = dict(os.environ)
        full_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), full_env.get("PYTHONPATH")]))
        full_env["PYTHONUNBUFFERED"] = "1"
        full_env["PYRO_HOST"] = pyro_config.HOST
        full_env["PYRO_NS_HOST"] = pyro_config.NS_HOST
        full_env["PYRO_NS_PORT"] = str(pyro_config.NS_PORT)
        full_env.update(env or {})
        kwargs.setdefault("stdout", subprocess.PIPE)
        kwargs.setdefault("stderr", subprocess.PIPE)
        kwargs.setdefault("text", True)
        process = subprocess.Popen([sys.executable, *args], env=full_env, cwd=str(ROOT), **kwargs)
        self.started.append(process)
        return process

    def stop_all(self) -> None:
        kill_and_reap(self.started)


def kill_and_reap(processes) -> None:
    """Kill those of ``processes`` still running, and collect every one's exit (bounded: WAIT each)."""
    for process in processes:
        if process.poll() is None:
            process.kill()
        try:
            process.communicate(timeout=WAIT)
        except (subprocess.TimeoutExpired, ValueError):
            pass


@pytest.fixture
def processes():
    """Start subprocesses via ``processes.spawn(...)``; all are killed and reaped afterwards."""
    procs = Processes()
    yield procs
    procs.stop_all()


def read_line(process: subprocess.Popen, timeout: float = WAIT, expect: str = "") -> str:
    """The next stdout line of ``process`` containing ``expect``; fails after ``timeout``."""
    lines: queue.Queue = queue.Queue()

    def reader() -> None:
        while True:
            line = process.stdout.readline()
            lines.put(line)
            if not line or expect in line:
                return

    threading.Thread(target=reader, daemon=True).start()
    deadline = time.monotonic() + timeout
    while True:
        try:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            pytest.fail(f"no line containing {expect!r} from {process.args} within {timeout}s")
        if not line:
            pytest.fail(f"{process.args} ended (code {process.poll()}) before printing {expect!r}; "
                        f"stderr: {process.stderr.read() if process.stderr else ''}")
        if expect in line:
            return line
