"""The ``esc`` command as a subprocess (bin/esc) against a real name server and Event Service.

Every friendly error is checked for its exit code and its one line on
stderr, never a traceback. Rendering of the grouped stats and of the
subscriber listing is also checked against a stand-in Event Service object
served by a real Pyro5 daemon, which answers in the shapes the contract
gives (stats() grouped into counters and gauges; subscribers()).
"""
from __future__ import annotations

import json
import signal
import subprocess
import threading
import time

import pytest
from Pyro5.server import Daemon, expose

import eventservice
import test_tls
from conftest import WAIT, read_line, wait_until
from eventservice.tools import esc

pytestmark = pytest.mark.network

certificates = test_tls.certificates  # the module-scoped fixture: a throw-away CA and a certificate for 127.0.0.1


def counter(stats: dict, name: str) -> int:
    """A counter from the ES's stats, flat (older) or grouped as {"counters": ..., "gauges": ...}."""
    return stats["counters"][name] if "counters" in stats else stats[name]


def figure(stats: dict, name: str) -> int:
    """A gauge or internal figure from the ES's stats, flat or grouped."""
    return stats["gauges"][name] if "gauges" in stats else stats[name]


def run_esc(processes, *args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """Run ``bin/esc args`` to its end (bounded); returns (exit code, stdout, stderr)."""
    process = processes.spawn("bin/esc", *args, env=env)
    try:
        out, err = process.communicate(timeout=WAIT * 2)
    except subprocess.TimeoutExpired:
        pytest.fail(f"esc {' '.join(args)} did not end within {WAIT * 2}s")
    return process.returncode, out, err


def assert_one_line_error(out: str, err: str, *fragments: str) -> None:
    """Nothing on stdout; one line on stderr, no traceback, containing each fragment."""
    assert out == "", out
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def start_tail(processes, *args: str) -> subprocess.Popen:
    """``esc tail args`` with stderr folded into stdout; returns once it says it follows (subscribed)."""
    process = processes.spawn("bin/esc", "tail", *args, stderr=subprocess.STDOUT)
    read_line(process, expect="; Ctrl-C stops")
    return process


def finish(process: subprocess.Popen) -> str:
    try:
        out, _ = process.communicate(timeout=WAIT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{process.args} did not end within {WAIT}s")
    return out


# -- the commands at work -----------------------------------------------------


def test_ping_counts_and_summarises(es, processes):
    code, out, err = run_esc(processes, "ping", "-c", "3", "--interval", "0.01")
    assert code == esc.EXIT_OK, err
    lines = out.strip().splitlines()
    assert [line.split("seq=")[1].split()[0] for line in lines[:3]] == ["1", "2", "3"]
    assert all(line.startswith(f"answer from {es.uri}") for line in lines[:3])
    assert lines[3].startswith("3 pings: min/avg/max = ")
    low, mean, high = (float(value) for value in lines[3].split("= ")[1].split()[0].split("/"))
    assert low <= mean <= high


def test_tail_prints_matching_events_published_by_esc(es, processes):
    tail = start_tail(processes, "--match", r"^ESC\.S", "ESC.EXACT", "--count", "3")
    for subject, value in (("ESC.SUN", "('SUN', 22.5)"), ("ESC.OTHER", "1"), ("esc.exact", "hello world"),
                           ("ESC.SAP", "None")):
        code, out, err = run_esc(processes, "publish", subject, value)
        assert code == esc.EXIT_OK, err
        queued = 0 if subject == "ESC.OTHER" else 1
        assert out.strip().endswith(f"queued for {queued} subscriber{'s' if queued != 1 else ''}"), out
    output = finish(tail)
    assert tail.returncode == esc.EXIT_OK
    events = [line.split("  ", 2)[1:] for line in output.splitlines() if line[:4].isdigit()]
    assert events == [["ESC.SUN", "('SUN', 22.5)"], ["esc.exact", "'hello world'"], ["ESC.SAP", "None"]]


def test_tail_json_lines_and_publish_values(es, processes):
    tail = start_tail(processes, "ESC.J", "--json", "--count", "5")
    for values in (["3", "a", "[1, 2]"], ["--json", '{"k": null, "n": [1.5]}'], ["not a literal ("], [], ["b'x'"]):
        code, _, err = run_esc(processes, "publish", "ESC.J", *values)
        assert code == esc.EXIT_OK, err
    output = finish(tail)
    records = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    assert [record["msg"] for record in records] == [[3, "a", [1, 2]], {"k": None, "n": [1.5]}, "not a literal (",
                                                     None, records[4]["msg"]]
    assert all(record["subject"] == "ESC.J" and isinstance(record["time"], float) for record in records)
    assert records[4]["msg"] in ({"data": "eA==", "encoding": "base64"}, "b'x'")  # serpent carries bytes as base64


def test_tail_asks_for_drop_oldest_so_a_slow_terminal_never_slows_publishers(es, processes):
    """esc tail subscribes with the drop-oldest policy (--full-queue), whatever the ES's default."""
    for options, policy in (((), "drop-oldest"), (("--full-queue", "block"), "block")):
        tail = start_tail(processes, "ESC.POLICY", "--count", "1", *options)
        with eventservice.Publisher() as publisher:
            es_proxy = publisher.getES()
            policies = [entry["policy"] for entry in es_proxy.subscribers()]
            es_proxy._pyroRelease()
            assert policies == [policy], (options, policies)
            publisher.publish("ESC.POLICY", 1)
        finish(tail)
        assert tail.returncode == esc.EXIT_OK


def test_tail_with_nothing_follows_everything_and_ends_at_timeout(es, processes):
    tail = processes.spawn("bin/esc", "tail", "--timeout", "0.3")
    out, err = tail.communicate(timeout=WAIT)
    assert tail.returncode == esc.EXIT_OK
    assert "following every subject (--match .)" in err
    assert out == ""


def test_stats_readable_and_json(es, processes):
    with eventservice.Publisher() as publisher:
        publisher.publish(["ESC.A", "ESC.B"], 1)
        publisher.publish("ESC.A", 2)
    code, out, err = run_esc(processes, "stats")
    assert code == esc.EXIT_OK, err
    rows = dict(line.split() for line in out.splitlines() if len(line.split()) == 2)
    assert rows["published"] == "2"
    code, out, err = run_esc(processes, "stats", "--json")
    assert code == esc.EXIT_OK, err
    figures = json.loads(out)
    assert counter(figures, "published") == 2


def test_list_uses_subscribers_or_says_it_is_not_offered(es, processes, collectors):
    """Today's ES may or may not have subscribers(); the test asserts the branch that applies."""
    collector = collectors()
    collector.subscribe("ESC.LISTED")
    code, out, err = run_esc(processes, "list")
    if hasattr(eventservice.EventService, "subscribers"):
        assert code == esc.EXIT_OK, err
        assert out.splitlines()[0].split()[:3] == ["URI", "SUBJECTS", "PATTERNS"]
        assert str(collector._callback._pyroUri) in out and "1 subscriber" in out
    else:
        assert code == esc.EXIT_NO_LISTING
        assert_one_line_error(out, err, "esc list: this Event Service does not offer a subscriber listing")


# -- stand-in ES in the contract's shapes --------------------------------------

NOW = time.time()
SUBSCRIBERS = [
    {"uri": "PYRO:obj_b@127.0.0.1:4002", "subjects": 2, "patterns": 1, "queued": 0, "queuesize": 1000,
     "policy": "block", "delivered": 1234567, "dropped": 0, "last_delivery": NOW - 2.0},
    {"uri": "PYRO:obj_a@127.0.0.1:4001", "subjects": 0, "patterns": 3, "queued": 7, "queuesize": 50,
     "policy": "drop-oldest", "delivered": 0, "dropped": 12, "last_delivery": None},
]


@expose
class StandInES:
    """Answers ping, stats and subscribers as the contract says the ES will."""

    def ping(self) -> bool:
        return True

    def stats(self) -> dict:
        return {"counters": {"published": 42, "dropped": 12}, "gauges": {"subscribers": 2, "uptime": 12.5}}

    def subscribers(self) -> list:
        return SUBSCRIBERS


@pytest.fixture
def stand_in_uri():
    daemon = Daemon(host="127.0.0.1")
    uri = daemon.register(StandInES(), eventservice.EVENTSERVER_NAME)
    thread = threading.Thread(target=daemon.requestLoop, daemon=True)
    thread.start()
    yield str(uri)
    daemon.shutdown()
    thread.join(WAIT)


def test_grouped_stats_render_as_sections(stand_in_uri, processes):
    code, out, err = run_esc(processes, "stats", "--uri", stand_in_uri)
    assert code == esc.EXIT_OK, err
    assert out.splitlines() == ["counters:", "  published  42", "  dropped    12",
                                "gauges:", "  subscribers       2", "  uptime       12.500"]


def test_list_renders_the_subscribers_table(stand_in_uri, processes):
    code, out, err = run_esc(processes, "list", "--uri", stand_in_uri)
    assert code == esc.EXIT_OK, err
    lines = out.splitlines()
    assert lines[0].split() == ["URI", "SUBJECTS", "PATTERNS", "QUEUED", "QUEUESIZE", "POLICY", "DELIVERED", "DROPPED",
                                "LAST", "DELIVERY"]
    assert lines[1].split()[:8] == ["PYRO:obj_a@127.0.0.1:4001", "0", "3", "7", "50", "drop-oldest", "0", "12"]
    assert lines[1].split()[8] == "-"
    assert lines[2].split()[:7] == ["PYRO:obj_b@127.0.0.1:4002", "2", "1", "0", "1,000", "block", "1,234,567"]
    assert lines[2].endswith("s ago")
    assert lines[3] == "2 subscribers"
    code, out, _ = run_esc(processes, "list", "--uri", stand_in_uri, "--json")
    assert json.loads(out) == sorted(SUBSCRIBERS, key=lambda row: row["uri"])


# -- friendly errors ----------------------------------------------------------


def test_no_name_server(pyro_settings, processes):
    code, out, err = run_esc(processes, "ping", env={"PYRO_NS_PORT": "1"})
    assert code == esc.EXIT_NO_NAMESERVER
    assert_one_line_error(out, err, "esc ping: no name server answers at 127.0.0.1:1")


def test_no_event_service_registered(nameserver, processes):
    code, out, err = run_esc(processes, "stats")
    assert code == esc.EXIT_NO_ES
    assert_one_line_error(out, err, "esc stats: no Event Service is registered in the name server")


def test_nothing_answers_at_uri(pyro_settings, processes):
    code, out, err = run_esc(processes, "publish", "X", "1", "--uri", "PYRO:Pyro.EventService@127.0.0.1:1")
    assert code == esc.EXIT_NO_ES
    assert_one_line_error(out, err, "esc publish: no Event Service answers at PYRO:Pyro.EventService@127.0.0.1:1")


@pytest.mark.parametrize("ident", [["-i", "wrong"], []], ids=["wrong", "missing"])
def test_passphrase_refused(start_es, processes, ident):
    start_es(ident="secret")
    code, out, err = run_esc(processes, "ping", *ident)
    assert code == esc.EXIT_PASSPHRASE
    assert_one_line_error(out, err, "esc ping: ", "passphrase refused", "-i/--ident")


def test_right_passphrase_from_file(start_es, processes, tmp_path):
    start_es(ident="secret")
    (tmp_path / "ident").write_text("secret\n")
    code, out, err = run_esc(processes, "publish", "X", "1", "--ident-file", str(tmp_path / "ident"))
    assert code == esc.EXIT_OK, err
    assert out.startswith("published X 1")


def test_bad_pattern(es, processes):
    code, out, err = run_esc(processes, "tail", "--match", "ok", "--match", "(unclosed")
    assert code == esc.EXIT_USAGE
    assert_one_line_error(out, err, "esc tail: bad pattern:", "(unclosed")
    with eventservice.Publisher() as publisher:
        assert publisher.publish("ok", 1) == 0  # nothing stayed subscribed


@pytest.mark.parametrize("args, fragment", [
    (["X", "..."], "cannot publish Ellipsis"),                # a literal no serializer carries
    (["X", "--json", "{"], "not valid JSON"),
    (["x" * 2000, "1"], "cannot publish 1 under"),            # the ES's subject length limit
])
def test_unpublishable_value(es, processes, args, fragment):
    code, out, err = run_esc(processes, "publish", *args)
    assert code == esc.EXIT_USAGE
    assert_one_line_error(out, err, "esc publish:", fragment)


def test_bad_options_exit_two(processes):
    code, _, err = run_esc(processes, "tail", "--count", "0")
    assert code == esc.EXIT_USAGE and "--count" in err
    code, _, err = run_esc(processes, "frobnicate")
    assert code == esc.EXIT_USAGE and "frobnicate" in err


def test_ctrl_c_ends_tail_with_zero(es, processes):
    tail = start_tail(processes, "ESC.CTRL")
    with eventservice.Publisher() as publisher:
        publisher.publish("ESC.CTRL", "before")
        read_line(tail, expect="'before'")
    tail.send_signal(signal.SIGINT)
    out = finish(tail)
    assert tail.returncode == esc.EXIT_OK
    assert "Traceback" not in out and "KeyboardInterrupt" not in out
    with eventservice.Publisher() as publisher:
        wait_until(lambda: publisher.publish("ESC.CTRL", "after") == 0, message="tail left the ES")


def test_ctrl_c_ends_endless_ping_with_summary(es, processes):
    ping = processes.spawn("bin/esc", "ping", "-c", "0", "--interval", "0.01")
    read_line(ping, expect="seq=2 ")
    ping.send_signal(signal.SIGINT)
    out = finish(ping)
    assert ping.returncode == esc.EXIT_OK
    assert "pings: min/avg/max" in out and "Traceback" not in out


def test_ctrl_c_interrupting_a_blocked_publish_exits_130(start_es, processes):
    """A publish held up by a full queue (blocking policy) is interrupted: 130, one quiet exit."""
    running = start_es(queuesize=1)
    with eventservice.QueueSubscriber(subjects="ESC.FULL", maxsize=1) as stalled, eventservice.Publisher() as publisher:
        publisher.publish("ESC.FULL", 1)  # fills the stalled reader's local buffer
        wait_until(lambda: stalled.qsize() == 1, message="the first event in the local buffer")
        publisher.publish("ESC.FULL", 2)  # its delivery waits for room in that buffer
        wait_until(lambda: (figure(running.service.stats(), "in_flight"), figure(running.service.stats(), "queued")) == (1, 0),
                   message="the second event in flight, stuck")
        publisher.publish("ESC.FULL", 3)  # fills the ES's queue for it: nothing takes it from there now
        publish = processes.spawn("bin/esc", "publish", "ESC.FULL", "4")
        wait_until(lambda: counter(running.service.stats(), "published") == 4,
                   message="esc's publish accepted and waiting for room")
        publish.send_signal(signal.SIGINT)
        out, err = publish.communicate(timeout=WAIT)
        assert publish.returncode == esc.EXIT_INTERRUPTED, err
        assert "Traceback" not in err and out == ""


# -- TLS, as es takes it -------------------------------------------------------


def test_tls_options_reach_a_tls_event_service(processes, pyro_settings, certificates):
    """esc's --ssl-* options: ping and publish with the CA; tail also serves TLS, so it needs a certificate."""
    test_tls._start_tls_es(processes, pyro_settings, certificates)
    ca, cert, key = certificates
    code, out, err = run_esc(processes, "ping", "--ssl-ca", ca)
    assert code == esc.EXIT_OK, err
    code, out, err = run_esc(processes, "tail", "--ssl-ca", ca)
    assert code == esc.EXIT_USAGE
    assert_one_line_error(out, err, "esc tail: esc tail over TLS needs --ssl-cert and --ssl-key")
    tail = start_tail(processes, "TLS.NEWS", "--count", "1", "--ssl-ca", ca, "--ssl-cert", cert, "--ssl-key", key)
    code, out, err = run_esc(processes, "publish", "TLS.NEWS", "'over TLS'", "--ssl-ca", ca)
    assert code == esc.EXIT_OK and "queued for 1 subscriber" in out, err
    assert "TLS.NEWS  'over TLS'" in finish(tail)
    assert tail.returncode == esc.EXIT_OK
    code, out, err = run_esc(processes, "ping", "--ssl-ca", str(certificates[0]) + ".missing")
    assert code == esc.EXIT_USAGE
    assert_one_line_error(out, err, "TLS file not found")
