#!/usr/bin/env python3
"""What the monitoring endpoint costs the publish path: the same load against ``es`` and ``es --http``.

    python3 bench/http_overhead.py              # 5 rounds, alternating which runs first
    python3 bench/http_overhead.py --rounds 3 --events 100000 --json OUT

Each round starts a fresh ``es -N`` four times, without and with ``--http`` in
the order ABBA (BAAB in the next round; each mode's figure is the geometric
mean of its two runs), and runs two loads against each, each participant its
own process on 127.0.0.1:

  pipelined  Publisher(pipeline=1000) publishes --events events over 20 subjects, one
             subscriber (pattern ^LOAD\\.) receives them all: events/s from the first
             publish to the last delivery
  sync       a default Publisher, no subscriber: publish calls/s for --sync-events calls

and reports for each both the events per second (wall clock) and the events
per CPU second of the ES process (``*_cpu``: all its threads, the endpoint's
included), which another process's load on a shared machine disturbs far less.

With ``--http`` the endpoint is in use meanwhile, as in production: this
process polls /api/status (what the open status page does) and scrapes /metrics,
each once a second. The figure is the ratio with/without per round (1.00 = no
cost), and its median over rounds; the goal is a cost under 3 % (ratio >= 0.97).

On a busy shared machine those ratios swing by more than the cost sought, so
the cost is also taken apart, with less noise: the ES's CPU per second without
load, with the page and Prometheus polling (--http) and without, and the time
the publish path's bookkeeping (SubjectRates.observe) takes per publish (timeit,
best of 5), set against the ES's CPU per event from the runs without --http.
Progress goes to stderr, the table to stdout.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import typing as t
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SUBJECTS = [f"LOAD.{n}" for n in range(20)]
#: the figures: events/s (wall clock) and events per CPU second of the ES process, for both loads
LOADS = ("pipelined", "sync", "pipelined_cpu", "sync_cpu")
LIMIT = 120.0  # seconds any one participant may take
IDLE_SECONDS = 3.0  # seconds the ES's CPU is measured without load

if __name__ == "__main__" and "--role" not in sys.argv and "--no-bootstrap" not in sys.argv:
    sys.path.insert(0, str(ROOT / "dev"))
    import bootstrap

    bootstrap.ensure_venv()


def progress(text: str) -> None:
    print(f"[http-overhead {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


# -- roles: run as separate processes -------------------------------------------------


def role_subscriber(uri: str, expected: int) -> None:
    import eventservice

    done = threading.Event()
    state = {"count": 0, "last": 0.0}

    class Counter(eventservice.Subscriber):
        def event(self, event: t.Any) -> None:
            state["count"] += 1
            if state["count"] >= expected:
                state["last"] = time.time()
                done.set()

    with Counter(esURI=uri) as subscriber:
        subscriber.subscribeMatch(r"^LOAD\.")
        subscriber.listenInThread()
        print(json.dumps({"ready": True}), flush=True)
        done.wait(LIMIT)
        print(json.dumps({"received": state["count"], "last": state["last"]}), flush=True)


def role_publisher(uri: str, events: int, pipeline: int) -> None:
    import eventservice

    with eventservice.Publisher(esURI=uri, pipeline=pipeline) as publisher:
        publisher.publish("WARMUP", 0)
        if pipeline:
            publisher.flush()
        start = time.time()
        deadline = time.monotonic() + LIMIT
        count = 0
        for count in range(1, events + 1):
            publisher.publish(SUBJECTS[count % len(SUBJECTS)], (count, 12.5, "SUN"))
            if count % 1000 == 0 and time.monotonic() > deadline:
                break
        if pipeline:
            publisher.flush()
        print(json.dumps({"start": start, "end": time.time(), "published": count}), flush=True)


# -- the driver ---------------------------------------------------------------------


class Process:
    def __init__(self, *args: str) -> None:
        env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen([sys.executable, *args], cwd=str(ROOT), env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)

    def line(self, accept: t.Callable[[str], bool], timeout: float = LIMIT) -> str:
        result: list[str] = []

        def read() -> None:
            for line in self.proc.stdout:  # type: ignore[union-attr]
                if accept(line):
                    result.append(line)
                    return

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        reader.join(timeout)
        if not result:
            self.stop()
            raise RuntimeError(f"{self.proc.args} gave no expected line; stderr: {self.proc.stderr.read()[-1000:]}")  # type: ignore[union-attr]
        return result[0]

    def json(self, key: str) -> dict[str, t.Any]:
        return json.loads(self.line(lambda line: line.startswith("{") and key in json.loads(line)))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            self.proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate()


class Watcher:
    """Polls /api/status and scrapes /metrics once a second each, like an open page and a Prometheus."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.requests = 0
        self._stop = threading.Event()
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            path = "api/status" if self.requests % 2 == 0 else "metrics"
            with self._opener.open(self.url + path, timeout=10) as response:
                response.read()
            self.requests += 1

    def stop(self) -> int:
        self._stop.set()
        self._thread.join(15)
        return self.requests


def cpu_seconds(pid: int) -> float:
    """User plus system CPU seconds of process ``pid`` so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(http: bool, events: int, sync_events: int) -> dict[str, float]:
    es = Process("-m", "eventservice.server", "-N", "-n", "127.0.0.1", *(["--http", "127.0.0.1:0"] if http else []))
    try:
        uri = es.line(lambda line: line.startswith("Event Service URI")).split(": ", 1)[1].strip()
        watcher = None
        if http:
            watcher = Watcher(es.line(lambda line: line.startswith("Monitoring")).split(": ", 1)[1].strip())
        subscriber = Process(__file__, "--role", "sub", uri, str(events))
        try:
            subscriber.json("ready")
            cpu_start = cpu_seconds(es.proc.pid)
            publisher = Process(__file__, "--role", "pub", uri, str(events), "1000")
            sent = publisher.json("published")
            publisher.stop()
            got = subscriber.json("received")
            pipelined_cpu = cpu_seconds(es.proc.pid) - cpu_start
        finally:
            subscriber.stop()
        if got["received"] < events:
            raise RuntimeError(f"the subscriber got {got['received']} of {events} events")
        cpu_start = cpu_seconds(es.proc.pid)
        sync = Process(__file__, "--role", "pub", uri, str(sync_events), "0")
        sync_result = sync.json("published")
        sync.stop()
        sync_cpu = cpu_seconds(es.proc.pid) - cpu_start
        cpu_start, start = cpu_seconds(es.proc.pid), time.monotonic()
        time.sleep(IDLE_SECONDS)  # no load: what the endpoint and its page cost on their own
        idle_cpu = (cpu_seconds(es.proc.pid) - cpu_start) / (time.monotonic() - start)
        scrapes = watcher.stop() if watcher else 0
    finally:
        es.stop()
    return {
        "pipelined": events / (got["last"] - sent["start"]),
        "sync": sync_result["published"] / (sync_result["end"] - sync_result["start"]),
        # events per ES CPU second: what the ES could do if it had the CPU to itself (less noisy on a shared machine)
        "pipelined_cpu": events / pipelined_cpu,
        "sync_cpu": sync_result["published"] / sync_cpu,
        "idle_cpu_ms_per_s": idle_cpu * 1000,
        "http_requests": scrapes,
    }


def hook_cost() -> dict[str, float]:
    """Microseconds SubjectRates.observe takes per sync publish and per event of a 1000-event batch."""
    import timeit

    from eventservice.core.rates import SubjectRates

    rates = SubjectRates()
    single = [([SUBJECTS[0]], (1, 12.5, "SUN"))]
    batch = [([SUBJECTS[n % len(SUBJECTS)]], (n, 12.5, "SUN")) for n in range(1000)]
    per_call = min(timeit.repeat(lambda: rates.observe(single), number=20000, repeat=5)) / 20000
    per_batch = min(timeit.repeat(lambda: rates.observe(batch), number=2000, repeat=5)) / 2000
    return {"sync_us": per_call * 1e6, "batch_event_us": per_batch / 1000 * 1e6}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--events", type=int, default=200_000, help="pipelined events per run")
    parser.add_argument("--sync-events", type=int, default=10_000, help="sync publish calls per run")
    parser.add_argument("--json", help="write every round's figures here")
    parser.add_argument("--no-bootstrap", action="store_true", help="use this interpreter, not .venv")
    options = parser.parse_args()
    rounds: list[dict[str, t.Any]] = []
    for number in range(options.rounds):
        # ABBA (BAAB in odd rounds): a machine getting busier or quieter during a round favours neither
        order = [False, True, True, False] if number % 2 == 0 else [True, False, False, True]
        runs: dict[str, list[dict[str, float]]] = {"plain": [], "http": []}
        for http in order:
            progress(f"round {number + 1}/{options.rounds}: es{' --http' if http else ''}")
            runs["http" if http else "plain"].append(measure(http, options.events, options.sync_events))
        figures = {mode: {key: statistics.geometric_mean(run[key] for run in pair) if key in LOADS
                          else statistics.mean(run[key] for run in pair) for key in pair[0]}
                   for mode, pair in runs.items()}
        ratios = {load: figures["http"][load] / figures["plain"][load] for load in LOADS}
        rounds.append({"figures": figures, "ratios": ratios})
        progress(f"round {number + 1}: " + ", ".join(f"{load} {ratio:.3f}" for load, ratio in ratios.items()))
    print(f"{'figure':<14}{'without (median/s)':>20}{'with --http':>14}   ratio per round (with/without)        median")
    for load in LOADS:
        plain = statistics.median(r["figures"]["plain"][load] for r in rounds)
        http = statistics.median(r["figures"]["http"][load] for r in rounds)
        per_round = [r["ratios"][load] for r in rounds]
        print(f"{load:<14}{plain:>20,.0f}{http:>14,.0f}   {' '.join(f'{ratio:.3f}' for ratio in per_round):<37} "
              f"{statistics.median(per_round):.3f}")
    print(f"HTTP requests served per --http run: {[r['figures']['http']['http_requests'] for r in rounds]}")
    idle = {mode: statistics.median(r["figures"][mode]["idle_cpu_ms_per_s"] for r in rounds) for mode in ("plain", "http")}
    print(f"ES CPU without load: {idle['plain']:.1f} ms/s without --http, {idle['http']:.1f} ms/s with it "
          "(page and Prometheus polling meanwhile)")
    hook = hook_cost()
    cpu_per_event = {load: 1e6 / statistics.median(r["figures"]["plain"][load + "_cpu"] for r in rounds)
                     for load in ("pipelined", "sync")}
    background = (idle["http"] - idle["plain"]) / 1000  # CPU seconds per second
    for load, hook_us in (("pipelined", hook["batch_event_us"]), ("sync", hook["sync_us"])):
        # a CPU-bound ES loses this share of its events per second
        share = hook_us / cpu_per_event[load] + max(0.0, background)
        print(f"{load}: bookkeeping {hook_us:.3f} us per publish of {cpu_per_event[load]:.1f} us ES CPU, "
              f"plus {max(0.0, background) * 100:.2f} % background: estimated cost {share * 100:.2f} %")
    if options.json:
        Path(options.json).write_text(json.dumps(rounds, indent=1))
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--role":
        role, uri, count = sys.argv[2], sys.argv[3], int(sys.argv[4])
        if role == "sub":
            role_subscriber(uri, count)
        else:
            role_publisher(uri, count, int(sys.argv[5]))
        sys.exit(0)
    sys.exit(main())
