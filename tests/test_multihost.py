"""Four hosts on a network the test builds: a subscriber's link is cut and comes back (issue 9).

The name server, the Event Service, a publisher (which also runs a second
subscriber, the bystander) and a subscriber each run in a network namespace of
their own, with an address in a private 10.x range on veth pairs joined by a
bridge that lives in a fifth namespace: nothing is added to the host's own
network. Needs root and ``ip`` (iproute2); skipped, with the reason, where
network namespaces cannot be made. Everything is removed in a finally.
"""
from __future__ import annotations

import os
import random
import re
import shutil
import subprocess
import sys
import threading
import time

import pytest

from conftest import ROOT, WAIT, kill_and_reap, wait_until

pytestmark = [pytest.mark.network, pytest.mark.slow]

NS_PORT = 9090
DELIVERY_TIMEOUT = 2.0  # the ES's --delivery-timeout here: the bound for dropping a cut-off subscriber
HEARTBEAT = 10.0  # the Subscriber's default check interval: the last-resort bound for coming back

#: the publisher host: a bystander subscriber, a steady publisher, and the ES's subscriber count, as lines
PUBLISHER_SCRIPT = """
import sys, threading, time
import eventservice
from eventservice.pyro import naming

printing = threading.Lock()

def say(*words):
    with printing:  # one whole line at a time from several threads
        sys.stdout.write(" ".join(map(str, words)) + "\\n")
        sys.stdout.flush()

class Bystander(eventservice.Subscriber):
    def event(self, event):
        say("got", event.msg)

bystander = Bystander()
bystander.subscribe("MH.TICK")
bystander.listenInThread()

def count_subscribers():
    es = naming.es_proxy()
    while True:
        stats = es.stats()
        say("subscribers", stats["gauges"]["subscribers"] if "gauges" in stats else stats["subscribers"])
        time.sleep(0.2)

threading.Thread(target=count_subscribers, daemon=True).start()
publisher = eventservice.Publisher()
deadline = time.monotonic() + float(sys.argv[1])
number = 0
while time.monotonic() < deadline:
    publisher.publish("MH.TICK", number)
    say("published", number)
    number += 1
    time.sleep(0.02)
"""

#: the subscriber host: prints 'event <n>' per event
SUBSCRIBER_SCRIPT = """
import eventservice

class Printer(eventservice.Subscriber):
    def event(self, event):
        print("event", event.msg, flush=True)

subscriber = Printer()
subscriber.subscribe("MH.TICK")
print("ready", flush=True)
subscriber.listen()
"""


def run(*command: str) -> None:
    subprocess.run(command, check=True, capture_output=True, timeout=WAIT)


class Lines:
    """Every stdout line of a process, read by a thread, with bounded waits on them."""

    def __init__(self, process: subprocess.Popen) -> None:
        self.process = process
        self.lines: list[str] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._read, args=(process,), daemon=True).start()

    def _read(self, process: subprocess.Popen) -> None:
        for line in process.stdout:
            with self._lock:
                self.lines.append(line.strip())

    def numbers(self, word: str) -> list[int]:
        with self._lock:
            return [int(line.split()[1]) for line in self.lines if line.startswith(word + " ")]

    def last(self, word: str) -> int | None:
        found = self.numbers(word)
        return found[-1] if found else None

    def wait_for(self, word: str, predicate=lambda number: True, timeout: float = WAIT) -> None:
        wait_until(lambda: any(predicate(number) for number in self.numbers(word)), timeout=timeout,
                   interval=0.05, message=f"a {word!r} line that fits")


class Network:
    """Namespaces named ``<prefix><role>``, each with eth0 = 10.A.B.<n>/24, bridged in ``<prefix>sw``."""

    def __init__(self, roles: list[str]) -> None:
        self.prefix = f"es{os.getpid()}-"
        subnet = f"10.{random.randint(200, 250)}.{random.randint(0, 250)}"
        self.address = {role: f"{subnet}.{number}" for number, role in enumerate(roles, 1)}
        self.made: list[str] = []
        self.processes: list[subprocess.Popen] = []
        self.outputs: dict[str, Lines] = {}  # what each process printed, shown when a test fails
        switch = self._namespace("sw")
        run("ip", "-n", switch, "link", "add", "br0", "type", "bridge")
        run("ip", "-n", switch, "link", "set", "br0", "up")
        for number, role in enumerate(roles, 1):
            host = self._namespace(role)
            run("ip", "-n", switch, "link", "add", f"port{number}", "type", "veth", "peer", "name", "eth0", "netns", host)
            run("ip", "-n", switch, "link", "set", f"port{number}", "master", "br0", "up")
            run("ip", "-n", host, "addr", "add", f"{self.address[role]}/24", "dev", "eth0")
            run("ip", "-n", host, "link", "set", "eth0", "up")

    def _namespace(self, role: str) -> str:
        name = self.prefix + role
        run("ip", "netns", "add", name)
        self.made.append(name)
        run("ip", "-n", name, "link", "set", "lo", "up")
        return name

    def spawn(self, role: str, *args: str) -> Lines:
        """Python with ``args`` in ``role``'s namespace, binding its address, the name server found by address."""
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        env.update(PYTHONUNBUFFERED="1", PYRO_HOST=self.address[role], PYRO_NS_HOST=self.address["ns"],
                   PYRO_NS_PORT=str(NS_PORT))
        process = subprocess.Popen(["ip", "netns", "exec", self.prefix + role, sys.executable, *args], env=env,
                                   cwd=str(ROOT), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.processes.append(process)
        self.outputs[f"{role} host"] = lines = Lines(process)
        return lines

    def link(self, role: str, up: bool) -> None:
        run("ip", "-n", self.prefix + role, "link", "set", "eth0", "up" if up else "down")

    def remove(self) -> None:
        kill_and_reap(reversed(self.processes))
        for name, lines in self.outputs.items():
            print(f"--- {name}, last lines:", *lines.lines[-5:], sep="\n    ")
        for name in reversed(self.made):
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=WAIT)


@pytest.fixture
def network():
    if not shutil.which("ip"):
        pytest.skip("needs iproute2's 'ip' to build network namespaces")
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    probe = f"es{os.getpid()}-probe"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True, timeout=WAIT)
    if made.returncode != 0:
        pytest.skip(f"network namespaces are not allowed here: {made.stderr.strip()}")
    subprocess.run(["ip", "netns", "del", probe], capture_output=True, timeout=WAIT)
    network = None
    try:
        network = Network(["ns", "es", "pub", "sub"])
        yield network
    finally:
        if network is not None:
            network.remove()
        leftovers = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=WAIT).stdout
        for name in re.findall(rf"^(es{os.getpid()}-\S+)", leftovers, re.MULTILINE):  # a half-built network
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=WAIT)


def test_cut_subscriber_link_is_dropped_within_bound_others_carry_on_and_it_comes_back(network):
    """The subscriber host's link goes down: the ES drops it within --delivery-timeout of the first
    delivery it cannot make, the publisher and the bystander carry on without a gap; the link comes back:
    the subscriber is subscribed again by itself (at the latest at its heartbeat) and receives again."""
    name_server = network.spawn("ns", "-m", "Pyro5.nameserver", "-n", network.address["ns"], "-p", str(NS_PORT), "-x")
    wait_until(lambda: any("NS running" in line for line in name_server.lines), message="the name server")
    server = network.spawn("es", "-m", "eventservice.server", "-n", network.address["es"],
                           "--delivery-timeout", str(DELIVERY_TIMEOUT))
    wait_until(lambda: any("Event Service URI" in line for line in server.lines), message="the Event Service")
    subscriber = network.spawn("sub", "-c", SUBSCRIBER_SCRIPT)
    wait_until(lambda: "ready" in subscriber.lines, message="the subscriber host")
    publisher = network.spawn("pub", "-c", PUBLISHER_SCRIPT, "90")
    subscriber.wait_for("event", lambda n: n >= 10)
    publisher.wait_for("got", lambda n: n >= 10)
    publisher.wait_for("subscribers", lambda n: n == 2)

    network.link("sub", up=False)
    cut = time.monotonic()
    cut_at = publisher.last("published")
    wait_until(lambda: publisher.last("subscribers") == 1, timeout=DELIVERY_TIMEOUT + WAIT,
               message="the ES to drop the cut-off subscriber")
    dropped_after = time.monotonic() - cut
    publisher.wait_for("published", lambda n: n >= cut_at + 100)  # two more seconds of publishing, unhindered
    publisher.wait_for("got", lambda n: n >= cut_at + 100)

    network.link("sub", up=True)
    restored = time.monotonic()
    after = publisher.last("published")
    subscriber.wait_for("event", lambda n: n > after, timeout=1.5 * HEARTBEAT + WAIT)
    back_after = time.monotonic() - restored
    print(f"\nFIGURE link cut: dropped after {dropped_after:.2f}s (delivery timeout {DELIVERY_TIMEOUT}s); "
          f"subscriber back {back_after:.2f}s after the link returned")

    got = publisher.numbers("got")
    assert got == list(range(got[0], got[0] + len(got))), "the bystander missed or reordered events"
    events = subscriber.numbers("event")
    assert events == sorted(set(events)), "the cut-off subscriber got duplicates or reordered events"
    assert server.process.poll() is None and name_server.process.poll() is None
