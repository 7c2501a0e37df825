"""Scripted runs of the examples as real subprocesses: stockquotes (market, subscriber, mclient, demo) and countingcars.

Each test waits for a subscriber's "ready" line before it starts the
publisher, waits for the subscriber to end by itself (bounded), and leaves
every process it started to the ``processes`` fixture to stop.
"""
from __future__ import annotations

import re
import subprocess
import threading

import pytest

from conftest import WAIT, read_line

pytestmark = pytest.mark.network

STOCKQUOTES = "examples/stockquotes"
COUNTINGCARS = "examples/countingcars"
DIRECTIONS = ("NORTH", "EAST", "SOUTH", "WEST")
QUOTE_SUBJECT = re.compile(r"\((STOCKQUOTE\.\w+) at ")
NO_NAME_SERVER = {"PYRO_NS_PORT": "1"}  # nothing listens there: any name server lookup fails


def finish(process: subprocess.Popen, timeout: float = WAIT) -> tuple[str, str]:
    """Wait for ``process`` to end by itself; returns the rest of its stdout and its stderr.

    Reads through the file objects (unlike ``communicate``) so that nothing
    ``read_line`` already buffered is lost; fails the test after ``timeout``.
    """
    output: dict[str, str] = {}
    readers = [threading.Thread(target=lambda name=name: output.__setitem__(name, getattr(process, name).read()),
                                daemon=True) for name in ("stdout", "stderr")]
    for reader in readers:
        reader.start()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{process.args} did not end within {timeout}s")
    for reader in readers:
        reader.join(timeout)
    return output.get("stdout", ""), output.get("stderr", "")


def uri_from(line: str) -> str:
    """The URI at the end of a line such as 'Event Service URI: PYRO:...'."""
    return line.split(": ", 1)[1].strip()


def quote_subjects(output: str) -> list[str]:
    """The subjects of the quote lines a stock quote subscriber printed, in order."""
    return QUOTE_SUBJECT.findall(output)


def test_mclient_receives_only_quotes_matching_its_pattern(es, processes):
    mclient = processes.spawn(f"{STOCKQUOTES}/mclient.py", "--count", "6")
    read_line(mclient, expect="Subscribed")
    processes.spawn(f"{STOCKQUOTES}/market.py", "--rate", "100", "--quiet", stdout=subprocess.DEVNULL)
    output, errors = finish(mclient)
    assert mclient.returncode == 0, errors
    subjects = quote_subjects(output)
    assert len(subjects) == 6, output
    assert all(subject.startswith("STOCKQUOTE.S") for subject in subjects), subjects
    assert "Received 6 quotes." in output


def test_mclient_takes_its_own_pattern(es, processes):
    mclient = processes.spawn(f"{STOCKQUOTES}/mclient.py", "--pattern", r"^stockquote\.(ibm|orcl)$", "--count", "4")
    read_line(mclient, expect="Subscribed")
    processes.spawn(f"{STOCKQUOTES}/market.py", "--rate", "100", "--quiet", stdout=subprocess.DEVNULL)
    output, errors = finish(mclient)
    assert mclient.returncode == 0, errors
    subjects = quote_subjects(output)
    assert len(subjects) == 4 and set(subjects) <= {"STOCKQUOTE.IBM", "STOCKQUOTE.ORCL"}, output


def test_subscriber_and_market_without_name_server(processes):
    es = processes.spawn("bin/es", "-N", "-n", "127.0.0.1", "-p", "0", env=NO_NAME_SERVER)
    uri = uri_from(read_line(es, expect="Event Service URI:"))
    assert uri.startswith("PYRO:Pyro.EventService@127.0.0.1:")
    subscriber = processes.spawn(f"{STOCKQUOTES}/subscriber.py", "SUN", "ibm", "--count", "5", "--es-uri", uri,
                                 env=NO_NAME_SERVER)
    read_line(subscriber, expect="Subscribed")
    market = processes.spawn(f"{STOCKQUOTES}/market.py", "--rate", "200", "--count", "400", "--es-uri", uri,
                             env=NO_NAME_SERVER)
    read_line(market, expect="Market open")
    output, errors = finish(subscriber)
    assert subscriber.returncode == 0, errors
    subjects = quote_subjects(output)
    assert len(subjects) == 5 and set(subjects) <= {"STOCKQUOTE.SUN", "STOCKQUOTE.IBM"}, output
    _, errors = finish(market)  # its 400 quotes take 2 s; it ends by itself
    assert market.returncode == 0, errors


def test_scripts_prove_the_passphrase_given_with_ident(processes):
    es = processes.spawn("bin/es", "-N", "-n", "127.0.0.1", "-p", "0", "-i", "s3cret", env=NO_NAME_SERVER)
    uri = uri_from(read_line(es, expect="Event Service URI:"))
    mclient = processes.spawn(f"{STOCKQUOTES}/mclient.py", "--count", "3", "--ident", "s3cret", "--es-uri", uri,
                              env=NO_NAME_SERVER)
    read_line(mclient, expect="Subscribed")
    processes.spawn(f"{STOCKQUOTES}/market.py", "--rate", "100", "--quiet", "--ident", "s3cret", "--es-uri", uri,
                    env=NO_NAME_SERVER, stdout=subprocess.DEVNULL)
    output, errors = finish(mclient)
    assert mclient.returncode == 0, errors
    assert len(quote_subjects(output)) == 3, output
    refused = processes.spawn(f"{STOCKQUOTES}/market.py", "--count", "1", "--es-uri", uri, env=NO_NAME_SERVER)
    _, errors = finish(refused)
    assert refused.returncode == 1 and "Cannot reach the Event Service" in errors, errors


def test_scripts_without_es_uri_or_name_server_fail_clearly(processes):
    subscriber = processes.spawn(f"{STOCKQUOTES}/subscriber.py", "SUN", "--count", "1", env=NO_NAME_SERVER)
    _, errors = finish(subscriber)
    assert subscriber.returncode == 1
    assert "Cannot reach the Event Service" in errors and "Traceback" not in errors


def test_subscriber_asks_for_symbols_when_run_without_arguments(es, processes):
    subscriber = processes.spawn(f"{STOCKQUOTES}/subscriber.py", stdin=subprocess.PIPE)
    subscriber.stdin.write("sun\n")
    subscriber.stdin.flush()
    assert "STOCKQUOTE.SUN" in read_line(subscriber, expect="Subscribed")
    processes.spawn(f"{STOCKQUOTES}/market.py", "--rate", "100", "--quiet", stdout=subprocess.DEVNULL)
    assert "SUN" in read_line(subscriber, expect="(STOCKQUOTE.SUN at ")


def test_counter_counts_all_four_directions(processes):
    es = processes.spawn("bin/es", "--ns", "-n", "127.0.0.1", "-p", "0", "--ns-port", "0")
    ns_port = uri_from(read_line(es, expect="Name server URI:")).rsplit(":", 1)[1]
    with_ns = {"PYRO_NS_PORT": ns_port}
    read_line(es, expect="Event Service URI:")
    counter = processes.spawn(f"{COUNTINGCARS}/counter.py", "--cars", "3", env=with_ns)
    read_line(counter, expect="Now watching for cars heading NORTH")
    processes.spawn(f"{COUNTINGCARS}/cars.py", "--rate", "200", "--quiet", env=with_ns, stdout=subprocess.DEVNULL)
    output, errors = finish(counter, timeout=2 * WAIT)
    assert counter.returncode == 0, errors
    for direction in DIRECTIONS:
        assert f"3 cars heading {direction}, in " in output, output
    assert "I watched all directions." in output
    assert "Counted: NORTH 3, EAST 3, SOUTH 3, WEST 3" in output
    went = re.findall(r"went (\w+)", output)
    assert went == [direction for direction in DIRECTIONS for _ in range(3)], output


def test_counter_and_cars_without_name_server(processes):
    es = processes.spawn("bin/es", "-N", "-n", "127.0.0.1", "-p", "0", env=NO_NAME_SERVER)
    uri = uri_from(read_line(es, expect="Event Service URI:"))
    counter = processes.spawn(f"{COUNTINGCARS}/counter.py", "--cars", "2", "--es-uri", uri, env=NO_NAME_SERVER)
    read_line(counter, expect="Now watching")
    processes.spawn(f"{COUNTINGCARS}/cars.py", "--rate", "200", "--quiet", "--es-uri", uri, env=NO_NAME_SERVER,
                    stdout=subprocess.DEVNULL)
    output, errors = finish(counter, timeout=2 * WAIT)
    assert counter.returncode == 0, errors
    assert "Counted: NORTH 2, EAST 2, SOUTH 2, WEST 2" in output


def test_demo_runs_everything_and_ends_by_itself(processes):
    demo = processes.spawn(f"{STOCKQUOTES}/demo.py", "--seconds", "3", env={"ES_NO_BOOTSTRAP": "1"})
    output, errors = finish(demo, timeout=3 + 2 * WAIT)
    assert demo.returncode == 0, errors
    assert "Traceback" not in errors and "did not stop" not in errors and "still running" not in errors, errors
    by_subscriber: dict[str, list[str]] = {"symbols": [], "pattern": []}
    for name, subject in re.findall(r"^(symbols|pattern): .*\((STOCKQUOTE\.\w+) at ", output, re.MULTILINE):
        by_subscriber[name].append(subject)
    assert by_subscriber["symbols"] and set(by_subscriber["symbols"]) <= {"STOCKQUOTE.SUN", "STOCKQUOTE.IBM"}, output
    assert by_subscriber["pattern"] and all(s.startswith("STOCKQUOTE.S") for s in by_subscriber["pattern"]), output
    assert "Summary:" in output
    assert f"symbols (SUN, IBM): received {len(by_subscriber['symbols'])} quotes" in output
    assert f"received {len(by_subscriber['pattern'])} quotes" in output
