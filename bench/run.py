#!/usr/bin/env python3
"""Benchmark of the Event Service against its goals, with baselines measured in the same run.

    python3 bench/run.py            # full: 3 rounds, medians (about 4 minutes)
    python3 bench/run.py --quick    # 1 round, smaller counts (under 3 minutes)

Options: --rounds R (medians over R rounds), --only raw,fanout,pipelined,latency,patterns,scale,
--json OUT (every round's figures and the table), --profile DIR (record the Event Service of
every scenario with py-spy; --py-spy PATH if it is not on PATH), --no-bootstrap (or
ES_BENCH_NO_BOOTSTRAP=1: use this interpreter as it is instead of the project's .venv).

Like a real deployment, every participant is its own process on 127.0.0.1 (started from
bench/roles.py): the Event Service as ``bin/es --ns`` (embedded name server on a free
port), subscriber host processes holding several ``eventservice.Subscriber`` objects
each listening in a thread, and one publisher process with a default ``Publisher``.
Every event carries (seq, t_pub, "SUN", 123.45) on subject "STOCKQUOTE.SUN"; every
receiver checks that seq rises by exactly 1 and counts lost, duplicated and
out-of-order events, and latency is receive time - t_pub.

Absolute numbers on a small shared machine mean little, so every figure is set
against a baseline measured in the same round (plain Pyro5 on loopback, the
same scenario without the extra load, or a naive loop); ratios are computed
per round, and the table shows medians over rounds. Scenarios:

  raw        plain Pyro5, one proxy: round-trip calls/s (serpent, and marshal, which
             Publisher uses for plain messages); 100 events per call (events/s)
  fanout     sync Publisher, 0, 1, 10, 50 subscribers: publish/s and delivered/s, and the
             CPU per event of the ES and the publisher against plain Pyro5's server and client
  pipelined  Publisher(pipeline=1000), 1 subscriber: delivered/s
  latency    10 subscribers, 200 events/s: receive - publish time, against a plain
             Pyro5 relay process forwarding to 10 receiver objects
  patterns   10,000 non-matching patterns registered: publish/s of a recurring
             subject (vs none registered) and of a new subject per event (vs the
             naive loop matching one subject against all 10,000 patterns)
  scale      1,000 subscribers in 10 processes: time until all have an event (20 events
             at 10/s, then 12 s more at 10/s); ES threads, RSS and file descriptors
             before, at their peak and after

The goals against Redis (fan-out to 10 and 50, latency) are measured by
../shared/bench/peers.py; this benchmark reports the ES's side of them.
Progress goes to stderr, the table to stdout.
"""
from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import os
import queue
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import typing as t
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = Path(__file__).resolve().parent

if "--no-bootstrap" not in sys.argv and not os.environ.get("ES_BENCH_NO_BOOTSTRAP"):
    sys.path.insert(0, str(ROOT / "dev"))
    import bootstrap

    bootstrap.ensure_venv()

sys.path.insert(0, str(BENCH))
import roles  # noqa: E402

SCENARIOS = ("raw", "fanout", "pipelined", "latency", "patterns", "scale")
NOISE_PATTERNS = 10_000
SCALE_SUBSCRIBERS, SCALE_HOSTS, SCALE_EVENTS, SCALE_RATE, SCALE_BUDGET = 1000, 10, 20, 10.0, 120.0
#: seconds the scale scenario goes on publishing after its SCALE_EVENTS (more than a heartbeat period)
SOAK_SECONDS = 12.0
LATENCY_SUBSCRIBERS, LATENCY_RATE = 10, 200.0
#: threads the ES may add for SCALE_SUBSCRIBERS and still count as bounded: far from one per subscriber
THREAD_GROWTH_LIMIT = SCALE_SUBSCRIBERS // 10


@dataclasses.dataclass(frozen=True)
class Sizes:
    """How much each scenario does: counts and time limits (both bound every loop)."""

    raw_calls: int
    raw_batches: int
    raw_seconds: float
    fanout_events: int
    fanout_seconds: float
    pipelined_events: int
    pipelined_seconds: float
    latency_seconds: float
    pattern_events: int
    pattern_seconds: float
    naive_subjects: int
    naive_seconds: float
    budget: float  # seconds one cluster (ES and its clients) may live, scale excepted


QUICK = Sizes(raw_calls=10_000, raw_batches=1000, raw_seconds=2, fanout_events=10_000, fanout_seconds=3,
              pipelined_events=150_000, pipelined_seconds=3, latency_seconds=3, pattern_events=8000,
              pattern_seconds=2.5, naive_subjects=500, naive_seconds=3, budget=60)
FULL = Sizes(raw_calls=10_000, raw_batches=1000, raw_seconds=5, fanout_events=20_000, fanout_seconds=8,
             pipelined_events=400_000, pipelined_seconds=8, latency_seconds=6, pattern_events=10_000,
             pattern_seconds=5, naive_subjects=500, naive_seconds=5, budget=120)


class ScenarioError(Exception):
    """A participant failed or did not answer in time: the scenario fails, the benchmark goes on."""


def progress(text: str) -> None:
    """A progress line on stderr."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- processes ---------------------------------------------------------------------


class Deadline:
    """A point in time every wait of one scenario is bounded by."""

    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    def left(self, cap: float | None = None) -> float:
        """Seconds left (at most ``cap``); raises ScenarioError once none are."""
        remaining = self.end - time.monotonic()
        if remaining <= 0:
            raise ScenarioError("scenario time limit reached")
        return remaining if cap is None else min(cap, remaining)


class Child:
    """A child process whose stdout lines and stderr tail are read by threads."""

    def __init__(self, name: str, command: list[str], env: dict[str, str]) -> None:
        self.name = name
        self.proc = subprocess.Popen(command, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, bufsize=1)
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.stderr_tail: collections.deque[str] = collections.deque(maxlen=15)
        self.warnings = 0
        threading.Thread(target=self._read_stdout, daemon=True).start()
        self._stderr_reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._stderr_reader.start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _read_stdout(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def _read_stderr(self) -> None:
        for line in self.proc.stderr:
            if " WARNING " in line or " ERROR " in line:
                self.warnings += 1
            self.stderr_tail.append(line.rstrip())

    def _failure(self, what: str) -> ScenarioError:
        try:
            code = self.proc.wait(2)  # it may be on its way out
            self._stderr_reader.join(2)
        except subprocess.TimeoutExpired:
            code = None
        state = "is still running" if code is None else f"exited with code {code}"
        tail = " | ".join(list(self.stderr_tail)[-5:])
        return ScenarioError(f"{self.name} {state}, {what}" + (f"; stderr: {tail}" if tail else ""))

    def read_line(self, accept: t.Callable[[str], bool], timeout: float) -> str:
        """The next stdout line ``accept`` takes, skipping others; ScenarioError on timeout or exit."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise self._failure(f"no answer within {timeout:.0f}s") from None
            if line is None:
                raise self._failure("before answering")
            if accept(line):
                return line

    def read(self, key: str, timeout: float) -> dict[str, t.Any]:
        """The next JSON line that has ``key``, as a dict."""
        def has_key(line: str) -> bool:
            return line.startswith("{") and key in json.loads(line)

        return json.loads(self.read_line(has_key, timeout))

    def send(self, command: str) -> None:
        """Write one command line to the child's stdin."""
        try:
            self.proc.stdin.write(command + "\n")
            self.proc.stdin.flush()
        except OSError as error:
            raise self._failure(f"refused a command ({error})") from None

    def kill(self) -> None:
        """Kill the process (by its PID) and reap it."""
        if self.proc.poll() is None:
            self.proc.kill()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            progress(f"{self.name} (pid {self.pid}) did not die within 10s")


def proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) process ``pid`` used so far."""
    with open(f"/proc/{pid}/stat") as file:
        fields = file.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_resources(pid: int) -> dict[str, int]:
    """Threads, resident memory (KB) and open file descriptors of process ``pid``."""
    status = {}
    with open(f"/proc/{pid}/status") as file:
        for line in file:
            name, _, value = line.partition(":")
            status[name] = value.split()
    return {"threads": int(status["Threads"][0]), "rss_kb": int(status["VmRSS"][0]),
            "fds": len(os.listdir(f"/proc/{pid}/fd"))}


def idle_share(seconds: float = 1.0) -> float:
    """The share of all CPUs that sat idle over the next ``seconds`` (load from elsewhere skews every rate)."""
    def times() -> list[int]:
        with open("/proc/stat") as file:
            return [int(value) for value in file.readline().split()[1:]]

    first = times()
    time.sleep(seconds)
    spent = [b - a for a, b in zip(first, times(), strict=True)]
    return (spent[3] + spent[4]) / max(1, sum(spent))  # idle + iowait


class PeakSampler:
    """Samples a process's resources every ``interval`` seconds in a thread and keeps the peaks."""

    def __init__(self, pid: int, interval: float = 0.1) -> None:
        self.pid = pid
        self.interval = interval
        self.peak: dict[str, int] = proc_resources(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                sample = proc_resources(self.pid)
            except OSError:  # the process is gone
                return
            for key, value in sample.items():
                self.peak[key] = max(self.peak[key], value)

    def stop(self) -> dict[str, int]:
        """Stop sampling; the peaks seen."""
        self._stop.set()
        self._thread.join(5)
        return self.peak


class Profiler:
    """py-spy recording one process (--gil --format raw) until stopped; then a summary of its hot frames."""

    def __init__(self, py_spy: str, pid: int, output: Path) -> None:
        self.output = output
        self.proc = subprocess.Popen([py_spy, "record", "--pid", str(pid), "--gil", "--format", "raw", "--rate", "1000",
                                      "--nonblocking", "-o", str(output)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop(self) -> None:
        """Stop recording (SIGINT makes py-spy write its file) and write OUTPUT.top.txt."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.output.exists():
            summary = self.output.with_suffix(".top.txt")
            summary.write_text(summarize_profile(self.output))
            progress(f"profile: {self.output} (hot frames in {summary.name})")


def summarize_profile(path: Path, top: int = 25) -> str:
    """Share of samples per frame of a py-spy raw (collapsed stacks) file: self time, then inclusive."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        samples, frames = int(count), stack.split(";")
        total += samples
        own[frames[-1]] += samples
        for frame in set(frames):
            inclusive[frame] += samples
    lines = [f"{total} samples holding the GIL", "", "self:"]
    lines += [f"{100 * n / total:5.1f}%  {frame}" for frame, n in own.most_common(top)]
    lines += ["", "inclusive:"]
    lines += [f"{100 * n / total:5.1f}%  {frame}" for frame, n in inclusive.most_common(top)]
    return "\n".join(lines) + "\n"


class Cluster:
    """The processes of one scenario run; closing it kills every one of them by PID."""

    def __init__(self, label: str, seconds: float, profile: tuple[str, Path] | None = None,
                 notes: list[str] | None = None) -> None:
        self.label = label
        self.notes = notes
        self.deadline = Deadline(seconds)
        self.children: list[Child] = []
        self.es: Child | None = None
        self.profile = profile
        self.profiler: Profiler | None = None
        self.ns_port = 0
        self.env = dict(os.environ, PYTHONPATH=str(ROOT), PYRO_HOST="127.0.0.1", PYRO_NS_HOST="127.0.0.1")

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc_info: t.Any) -> None:
        self.close()

    def spawn(self, name: str, command: list[str]) -> Child:
        """Start a child process with the cluster's environment."""
        child = Child(name, command, self.env)
        self.children.append(child)
        return child

    def role(self, name: str, role: str, **args: t.Any) -> Child:
        """Start a bench/roles.py role."""
        return self.spawn(name, [sys.executable, str(BENCH / "roles.py"), role, json.dumps(args)])

    def start_es(self) -> Child:
        """Start ``bin/es --ns`` on a free name server port; a few tries in case the port was taken meanwhile."""
        tries = 3
        while True:
            self.ns_port = free_port()
            self.env["PYRO_NS_PORT"] = str(self.ns_port)
            es = self.spawn("es", [sys.executable, str(ROOT / "bin" / "es"), "--ns", "-n", "127.0.0.1",
                                   "--ns-port", str(self.ns_port)])
            try:
                es.read_line(lambda line: line.startswith("Event Service URI"), self.deadline.left(30))
            except ScenarioError as error:
                tries -= 1
                if tries and "in use" in str(error):
                    continue
                raise
            self.es = es
            return es

    def measuring(self) -> None:
        """The measured part begins: start recording the Event Service, if profiling."""
        if self.profile and self.es is not None and self.profiler is None:
            py_spy, directory = self.profile
            self.profiler = Profiler(py_spy, self.es.pid, directory / f"{self.label}.txt")
            time.sleep(0.5)  # let py-spy attach

    def close(self) -> None:
        """Stop the profiler and kill every child."""
        if self.profiler is not None:
            self.profiler.stop()
        for child in self.children:
            child.kill()
        if self.es is not None and self.es.warnings:
            progress(f"{self.label}: the Event Service logged {self.es.warnings} warnings/errors, last: "
                     + " | ".join(list(self.es.stderr_tail)[-3:]))
            if self.notes is not None:
                self.notes.append(f"{self.label}: the Event Service logged {self.es.warnings} warnings/errors, "
                                  f"last: {self.es.stderr_tail[-1][:200]}")


# -- measuring -------------------------------------------------------------------------


def merge_reports(reports: list[dict[str, t.Any]]) -> dict[str, t.Any]:
    """One report for many receiver processes: counts summed, latency sketches merged."""
    merged = {key: sum(report[key] for report in reports)
              for key in ("receivers", "received", "expected", "lost", "duplicates", "out_of_order")}
    merged["last"] = max((report["last"] for report in reports), default=0.0)
    merged["complete"] = all(report["complete"] for report in reports)
    points = []
    for report in reports:
        sketch = report["latency_sketch"]
        if sketch:
            weight = report["latency_count"] / len(sketch)
            points += [(value, weight) for value in sketch]
    points.sort()
    merged["latency"] = {}
    if points:
        total = sum(weight for _, weight in points)
        for name, q in (("p50", 0.5), ("p99", 0.99)):
            running = 0.0
            for value, weight in points:
                running += weight
                if running >= q * total:
                    merged["latency"][name] = value
                    break
        merged["latency"]["max"] = points[-1][0]
    per_seq: dict[int, list[float]] = {}
    for report in reports:
        for seq, (count, latency) in report["per_seq"].items():
            entry = per_seq.setdefault(int(seq), [0, 0.0])
            entry[0] += count
            entry[1] = max(entry[1], latency)
    merged["per_seq"] = per_seq
    warmups = [report["warmup_max"] for report in reports if report["warmup_max"] is not None]
    merged["warmup_count"] = sum(report["warmup_count"] for report in reports)
    merged["warmup_max"] = max(warmups, default=None)
    return merged


def collect(hosts: list[Child], sent: int, deadline: Deadline, cap: float = 60.0) -> dict[str, t.Any]:
    """Ask every receiver host to wait for ``sent`` events each, and merge their reports."""
    wait = deadline.left(cap)
    for host in hosts:
        host.send(f"wait {sent} {wait:.1f}")
    return merge_reports([host.read("report", wait + 15)["report"] for host in hosts])


def add_integrity(metrics: dict[str, float], report: dict[str, t.Any]) -> None:
    """Add a run's lost / duplicated / out-of-order counts to a scenario's totals."""
    for key in ("lost", "duplicates", "out_of_order"):
        metrics[key] = metrics.get(key, 0) + report[key]


def split(total: int, parts: int) -> list[int]:
    """``total`` as ``parts`` nearly equal whole numbers."""
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


@dataclasses.dataclass
class Outcome:
    """What one publisher run through the ES gave."""

    publish_rate: float
    delivered_rate: float
    es_cpu_us: float
    publisher_cpu_us: float
    report: dict[str, t.Any]
    sent: int


def es_run(label: str, sizes: Sizes, profile: tuple[str, Path] | None, *, subscribers: int, hosts: int,
           count: int, seconds: float, pipeline: int = 0, rate: float = 0.0, distinct: bool = False,
           match: list[str] | None = None, noise: int = 0, notes: list[str]) -> Outcome:
    """ES + subscriber hosts + one publisher process; waits for every delivery (bounded) and measures."""
    with Cluster(label, sizes.budget, profile, notes) as cluster:
        es = cluster.start_es()
        subscription = {"match": match} if match else {"subscribe": roles.SUBJECT}
        subs = [cluster.role(f"subs{i}", "subs", n=n, noise=noise if i == 0 else 0, **subscription)
                for i, n in enumerate(split(subscribers, hosts))]
        for host in subs:
            ready = host.read("ready", cluster.deadline.left(60))
            if noise and ready["holders"]:
                progress(f"{label}: {noise} patterns registered in {ready['setup_seconds']:.1f}s")
        cluster.measuring()
        cpu0 = proc_cpu(es.pid)
        publisher = cluster.role("pub", "pub", count=count, seconds=seconds, pipeline=pipeline, rate=rate,
                                 distinct=distinct, warmup=20, settle=0.5)
        result = publisher.read("result", cluster.deadline.left(seconds + 60))["result"]
        report = collect(subs, result["sent"], cluster.deadline)
        es_cpu = proc_cpu(es.pid) - cpu0
    sent, t0 = result["sent"], result["t0"]
    if not report["complete"]:
        notes.append(f"{label}: only {report['received']} of {report['expected']} events delivered in time")
    delivered_span = report["last"] - t0
    return Outcome(
        publish_rate=sent / (result["t1"] - t0),
        delivered_rate=report["received"] / delivered_span if delivered_span > 0 else 0.0,
        es_cpu_us=1e6 * es_cpu / max(1, sent),
        publisher_cpu_us=1e6 * result["cpu"] / max(1, sent),
        report=report,
        sent=sent,
    )


# -- scenarios ---------------------------------------------------------------------------

ScenarioResult = tuple[dict[str, float], list[str]]


def scenario_raw(sizes: Sizes, profile: tuple[str, Path] | None) -> ScenarioResult:
    """Plain Pyro5 on loopback: round-trip calls/s (serpent, marshal), events/s at 100 events per call."""
    metrics: dict[str, float] = {}
    notes: list[str] = []
    runs = [("rt_serpent", "serpent", 0), ("rt_marshal", "marshal", 0), ("batch_serpent", "serpent", 100)]
    for name, serializer, batch in runs:
        with Cluster(f"raw-{name}", sizes.budget) as cluster:
            host = cluster.role("rawhost", "rawhost", receivers=0)
            uri = host.read("ready", cluster.deadline.left(30))["relay"]
            cpu0 = proc_cpu(host.pid)
            count = sizes.raw_batches if batch else sizes.raw_calls
            client = cluster.role("rawclient", "rawclient", uri=uri, serializer=serializer, count=count,
                                  seconds=sizes.raw_seconds, batch=batch, warmup=20)
            result = client.read("result", cluster.deadline.left(sizes.raw_seconds + 30))["result"]
            server_cpu = proc_cpu(host.pid) - cpu0
            if not batch:
                add_integrity(metrics, collect([host], result["sent"], cluster.deadline, cap=10))
        metrics[name] = result["events"] / (result["t1"] - result["t0"])
        metrics[f"{name}_server_us"] = 1e6 * server_cpu / result["sent"]
        metrics[f"{name}_client_us"] = 1e6 * result["cpu"] / result["sent"]
        progress(f"raw {name}: {metrics[name]:,.0f} {'events' if batch else 'calls'}/s")
    return metrics, notes


def scenario_fanout(sizes: Sizes, profile: tuple[str, Path] | None) -> ScenarioResult:
    """Sync default Publisher to 1, 10 and 50 subscribers (2 host processes when more than 1).

    Also to none at all, which shows what accepting a publish costs without delivering it.
    """
    metrics: dict[str, float] = {}
    notes: list[str] = []
    for n in (0, 1, 10, 50):
        outcome = es_run(f"fanout-n{n}", sizes, profile, subscribers=n, hosts=min(n, 1) if n <= 1 else 2,
                         count=sizes.fanout_events, seconds=sizes.fanout_seconds, notes=notes)
        metrics[f"n{n}_publish"] = outcome.publish_rate
        metrics[f"n{n}_delivered"] = outcome.delivered_rate
        metrics[f"n{n}_es_cpu_us"] = outcome.es_cpu_us
        metrics[f"n{n}_publisher_cpu_us"] = outcome.publisher_cpu_us
        add_integrity(metrics, outcome.report)
        progress(f"fanout N={n}: {outcome.sent} events, publish {outcome.publish_rate:,.0f}/s, "
                 f"delivered {outcome.delivered_rate:,.0f}/s, ES CPU {outcome.es_cpu_us:.0f}us/event")
    return metrics, notes


def scenario_pipelined(sizes: Sizes, profile: tuple[str, Path] | None) -> ScenarioResult:
    """Publisher(pipeline=1000) to 1 subscriber."""
    notes: list[str] = []
    outcome = es_run("pipelined", sizes, profile, subscribers=1, hosts=1, count=sizes.pipelined_events,
                     seconds=sizes.pipelined_seconds, pipeline=1000, notes=notes)
    progress(f"pipelined N=1: {outcome.sent} events, delivered {outcome.delivered_rate:,.0f}/s, "
             f"ES CPU {outcome.es_cpu_us:.1f}us/event")
    metrics = {"delivered": outcome.delivered_rate, "es_cpu_us": outcome.es_cpu_us}
    add_integrity(metrics, outcome.report)
    return metrics, notes


def scenario_latency(sizes: Sizes, profile: tuple[str, Path] | None) -> ScenarioResult:
    """10 subscribers, 200 events/s: the ES, then a plain Pyro5 relay to 10 receiver objects."""
    notes: list[str] = []
    count = int(LATENCY_RATE * sizes.latency_seconds)
    outcome = es_run("latency", sizes, profile, subscribers=LATENCY_SUBSCRIBERS, hosts=2, count=count,
                     seconds=sizes.latency_seconds + 5, rate=LATENCY_RATE, notes=notes)
    metrics = {f"es_{name}": value for name, value in outcome.report["latency"].items()}
    add_integrity(metrics, outcome.report)
    with Cluster("latency-raw", sizes.budget) as cluster:
        relay_host = cluster.role("relay", "rawhost", receivers=0)
        receiver_hosts = [cluster.role(f"receivers{i}", "rawhost", receivers=n)
                          for i, n in enumerate(split(LATENCY_SUBSCRIBERS, 2))]
        relay = relay_host.read("ready", cluster.deadline.left(30))["relay"]
        uris = [uri for host in receiver_hosts for uri in host.read("ready", cluster.deadline.left(30))["receivers"]]
        client = cluster.role("rawclient", "rawclient", uri=relay, serializer="serpent", count=count,
                              seconds=sizes.latency_seconds + 5, rate=LATENCY_RATE, warmup=20, settle=0.5,
                              connect=uris)
        result = client.read("result", cluster.deadline.left(sizes.latency_seconds + 35))["result"]
        relayed = collect(receiver_hosts, result["sent"], cluster.deadline, cap=20)
        one_hop = collect([relay_host], result["sent"], cluster.deadline, cap=10)
    metrics.update({f"relay_{name}": value for name, value in relayed["latency"].items()})
    metrics.update({f"onehop_{name}": value for name, value in one_hop["latency"].items()})
    add_integrity(metrics, relayed)
    progress(f"latency p50/p99 ms: ES {fmt(metrics['es_p50'], 'ms')}/{fmt(metrics['es_p99'], 'ms')}, "
             f"plain Pyro5 relay {fmt(metrics['relay_p50'], 'ms')}/{fmt(metrics['relay_p99'], 'ms')}, "
             f"one hop {fmt(metrics['onehop_p50'], 'ms')}/{fmt(metrics['onehop_p99'], 'ms')}")
    return metrics, notes


def naive_match_rate(subjects: int, seconds: float) -> float:
    """Subjects/s of the naive loop: one subject against every one of the compiled noise patterns."""
    import regex

    flags = regex.IGNORECASE | regex.FULLCASE
    patterns = [regex.compile(rf"^NOMATCH\.{i:05d}\.", flags) for i in range(NOISE_PATTERNS)]
    deadline = time.monotonic() + seconds
    start = time.perf_counter()
    done = 0
    while done < subjects and time.monotonic() < deadline:
        subject = roles.subject_for(done, distinct=True)
        for pattern in patterns:
            pattern.match(subject)
        done += 1
    return done / (time.perf_counter() - start)


def scenario_patterns(sizes: Sizes, profile: tuple[str, Path] | None) -> ScenarioResult:
    """Publish/s with 10,000 non-matching patterns vs none, recurring and ever-new subjects; the naive loop."""
    metrics: dict[str, float] = {}
    notes: list[str] = []
    for distinct in (False, True):
        kind = "distinct" if distinct else "recur"
        match = [r"^STOCKQUOTE\.SUN"] if distinct else None
        for noise in (0, NOISE_PATTERNS):
            label = f"patterns-{kind}-{noise}"
            outcome = es_run(label, sizes, profile, subscribers=1, hosts=1, count=sizes.pattern_events,
                             seconds=sizes.pattern_seconds, distinct=distinct, match=match, noise=noise, notes=notes)
            metrics[f"{kind}_{noise}"] = outcome.publish_rate
            add_integrity(metrics, outcome.report)
            progress(f"{label}: publish {outcome.publish_rate:,.0f}/s")
    metrics["naive"] = naive_match_rate(sizes.naive_subjects, sizes.naive_seconds)
    progress(f"naive loop over {NOISE_PATTERNS} patterns: {metrics['naive']:,.0f} subjects/s")
    return metrics, notes


def scenario_scale(sizes: Sizes, profile: tuple[str, Path] | None) -> ScenarioResult:
    """1,000 subscribers over 10 processes on one subject: time until all have each event; ES resources.

    The publisher sends SCALE_EVENTS at SCALE_RATE, then goes on at that rate for SOAK_SECONDS, long
    enough to cross whatever the subscribers do periodically (their subscription heartbeats).
    """
    metrics: dict[str, float] = {}
    notes: list[str] = []
    started = time.monotonic()
    shares = split(SCALE_SUBSCRIBERS, SCALE_HOSTS)
    with Cluster("scale", SCALE_BUDGET, profile, notes) as cluster:
        es = cluster.start_es()
        before = proc_resources(es.pid)
        sampler = PeakSampler(es.pid)
        hosts = [cluster.role(f"subs{i}", "subs", n=n, subscribe=roles.SUBJECT, per_seq=True)
                 for i, n in enumerate(shares)]
        setup_end = time.monotonic() + 0.5 * SCALE_BUDGET  # leave time to publish, however slow the set-up
        ready, subscribers = [], 0
        for host, share in zip(hosts, shares, strict=True):
            try:
                host.read("ready", max(0.1, setup_end - time.monotonic()))
            except ScenarioError as error:
                notes.append(f"scale: partial, {error}")
                host.kill()
                continue
            ready.append(host)
            subscribers += share
        if not ready:
            raise ScenarioError("no subscriber host got ready")
        if subscribers < SCALE_SUBSCRIBERS:
            notes.append(f"scale: partial, only {subscribers} of {SCALE_SUBSCRIBERS} subscribers set up in time")
        progress(f"scale: {subscribers} subscribers ready after {time.monotonic() - started:.0f}s")
        subscribed = proc_resources(es.pid)
        cluster.measuring()
        count = SCALE_EVENTS + int(SOAK_SECONDS * SCALE_RATE)
        publisher = cluster.role("pub", "pub", count=count, seconds=count / SCALE_RATE + 10, rate=SCALE_RATE,
                                 warmup=1, settle=3)
        result = publisher.read("result", cluster.deadline.left())["result"]
        report = collect(ready, result["sent"], cluster.deadline, cap=30)
        after = proc_resources(es.pid)
        peak = sampler.stop()
    add_integrity(metrics, report)
    if not report["complete"]:
        notes.append(f"scale: partial, only {report['received']} of {report['expected']} deliveries in time")
    phases: dict[str, list[float]] = {"all": [], "soak": []}
    for seq, (count, latency) in report["per_seq"].items():
        if count == subscribers:
            phases["all" if seq < SCALE_EVENTS else "soak"].append(latency)
    metrics["missed_all"] = result["sent"] - sum(len(latencies) for latencies in phases.values())
    for phase, latencies in phases.items():
        if latencies:
            metrics[f"{phase}_p50"] = statistics.median(latencies)
            metrics[f"{phase}_max"] = max(latencies)
    if report["warmup_max"] is not None:
        metrics["first_event"] = report["warmup_max"]
    for name, values in (("before", before), ("subscribed", subscribed), ("after", after), ("peak", peak)):
        for key, value in values.items():
            metrics[f"{key}_{name}"] = value
    metrics["rss_per_subscriber_kb"] = (after["rss_kb"] - before["rss_kb"]) / subscribers
    progress(f"scale: {result['sent'] - metrics['missed_all']} of {result['sent']} events reached all {subscribers} "
             f"subscribers; first {SCALE_EVENTS} within {fmt(metrics.get('all_p50'), 's')}s (p50) "
             f"{fmt(metrics.get('all_max'), 's')}s (max), soak within {fmt(metrics.get('soak_p50'), 's')}s (p50) "
             f"{fmt(metrics.get('soak_max'), 's')}s (max); ES threads {before['threads']} -> {after['threads']} "
             f"(peak {peak['threads']}), "
             f"RSS {before['rss_kb']} -> {after['rss_kb']} KB, fds {before['fds']} -> {after['fds']}")
    return metrics, notes


SCENARIO_FUNCTIONS: dict[str, t.Callable[[Sizes, tuple[str, Path] | None], ScenarioResult]] = {
    "raw": scenario_raw,
    "fanout": scenario_fanout,
    "pipelined": scenario_pipelined,
    "latency": scenario_latency,
    "patterns": scenario_patterns,
    "scale": scenario_scale,
}


# -- the table ---------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Row:
    """One line of the table: a figure, optionally its same-round baseline, and the goal it is held to.

    ``goal`` is applied to the ratio when there is a baseline, else to the value.
    """

    scenario: str
    label: str
    metric: str
    baseline: str | None = None
    goal: tuple[str, float] | None = None
    goal_text: str = ""
    unit: str = "rate"  # rate, ms, s, count, us, kb
    delta: bool = False  # show value - baseline instead of the ratio


def ms(seconds: float) -> float:
    """Seconds to milliseconds."""
    return 1000 * seconds


ROWS = [
    Row("raw", "round-trip calls/s, serpent", "raw.rt_serpent", goal_text="baseline"),
    Row("raw", "batched one-hop events/s (100/call), serpent", "raw.batch_serpent", goal_text="baseline"),
    Row("raw", "round-trip calls/s, marshal (Publisher's choice)", "raw.rt_marshal", "raw.rt_serpent",
        goal_text="info"),
    Row("raw", "server CPU per round-trip call, serpent, us", "raw.rt_serpent_server_us", unit="us",
        goal_text="info"),
    Row("raw", "server CPU per round-trip call, marshal, us", "raw.rt_marshal_server_us", unit="us",
        goal_text="info"),
    Row("fanout", "N=0 publish/s (no subscriber; vs raw marshal)", "fanout.n0_publish", "raw.rt_marshal",
        goal_text="info"),
    Row("fanout", "N=1 publish/s (sync Publisher)", "fanout.n1_publish", "raw.rt_serpent", (">=", 0.80)),
    Row("fanout", "N=1 delivered/s", "fanout.n1_delivered", "raw.rt_serpent", goal_text="info"),
    Row("fanout", "N=10 delivered/s", "fanout.n10_delivered", "raw.rt_serpent",
        goal_text="vs Redis: peers.py"),
    Row("fanout", "N=50 delivered/s", "fanout.n50_delivered", "raw.rt_serpent",
        goal_text="vs Redis: peers.py"),
    Row("fanout", "N=0 ES CPU per publish, us (vs raw marshal)", "fanout.n0_es_cpu_us", "raw.rt_marshal_server_us",
        unit="us", goal_text="info"),
    Row("fanout", "N=0 publisher CPU/publish, us (vs raw marshal)", "fanout.n0_publisher_cpu_us",
        "raw.rt_marshal_client_us", unit="us", goal_text="info"),
    Row("fanout", "N=1 ES CPU per event, us (vs raw serpent)", "fanout.n1_es_cpu_us", "raw.rt_serpent_server_us",
        unit="us", goal_text="info"),
    Row("pipelined", "N=1 delivered/s, pipeline=1000", "pipelined.delivered", "raw.batch_serpent", (">=", 0.50)),
    Row("pipelined", "N=1 delivered/s vs sync N=1", "pipelined.delivered", "fanout.n1_delivered", goal_text="info"),
    Row("pipelined", "ES CPU per event, us", "pipelined.es_cpu_us", unit="us", goal_text="info"),
    Row("latency", "N=10 @200/s p50, ms (vs Pyro5 relay)", "latency.es_p50", "latency.relay_p50", unit="ms",
        goal_text="<=2x Redis: peers.py"),
    Row("latency", "N=10 @200/s p99, ms (vs Pyro5 relay)", "latency.es_p99", "latency.relay_p99", unit="ms",
        goal_text="<=2x Redis: peers.py"),
    Row("latency", "N=10 @200/s max, ms (vs Pyro5 relay)", "latency.es_max", "latency.relay_max", unit="ms",
        goal_text="info"),
    Row("latency", "plain Pyro5 one hop p50, ms", "latency.onehop_p50", unit="ms", goal_text="info"),
    Row("latency", "plain Pyro5 one hop p99, ms", "latency.onehop_p99", unit="ms", goal_text="info"),
    Row("patterns", "recurring subject publish/s, 10k patterns vs 0", "patterns.recur_10000", "patterns.recur_0",
        (">=", 0.90)),
    Row("patterns", "new subject/event publish/s, 10k vs naive loop", "patterns.distinct_10000", "patterns.naive",
        (">=", 10.0)),
    Row("patterns", "new subject/event publish/s, 10k patterns vs 0", "patterns.distinct_10000",
        "patterns.distinct_0", goal_text="info"),
    Row("patterns", "naive loop, subjects/s over 10k patterns", "patterns.naive", goal_text="baseline"),
    Row("scale", "first 20 @10/s: until all 1000 had it, p50, s", "scale.all_p50", goal=("<=", 1.0), unit="s"),
    Row("scale", "first 20 @10/s: until all 1000 had it, max, s", "scale.all_max", goal=("<=", 1.0), unit="s"),
    Row("scale", f"next {SOAK_SECONDS:.0f}s @10/s: until all 1000 had it, p50, s", "scale.soak_p50",
        goal=("<=", 1.0), unit="s"),
    Row("scale", f"next {SOAK_SECONDS:.0f}s @10/s: until all 1000 had it, max, s", "scale.soak_max",
        goal=("<=", 1.0), unit="s"),
    Row("scale", "events that never reached all 1000", "scale.missed_all", goal=("<=", 0), unit="count"),
    Row("scale", "first event to all 1000 (connected at subscribe), s", "scale.first_event", unit="s", goal_text="info"),
    Row("scale", "ES threads at the end (vs before)", "scale.threads_after", "scale.threads_before", unit="count",
        goal_text=f"bounded: +<={THREAD_GROWTH_LIMIT}", delta=True),
    Row("scale", "ES threads at their peak (vs before)", "scale.threads_peak", "scale.threads_before",
        unit="count", goal_text=f"bounded: +<={THREAD_GROWTH_LIMIT}", delta=True),
    Row("scale", "ES RSS growth per subscriber, KB", "scale.rss_per_subscriber_kb", goal=("<", 50.0), unit="kb"),
    Row("scale", "ES fds at the end (vs before)", "scale.fds_after", "scale.fds_before", unit="count",
        goal_text="info", delta=True),
]


def fmt(value: float | None, unit: str) -> str:
    """A value for the table."""
    if value is None:
        return "-"
    if unit == "ms":
        return f"{ms(value):.2f}"
    if unit == "s":
        return f"{value:.3f}"
    if unit in ("us", "kb"):
        return f"{value:.1f}"
    return f"{value:,.0f}"


def median_or_none(values: list[float]) -> float | None:
    """The median of the values present, or None."""
    return statistics.median(values) if values else None


def verdict(row: Row, value: float | None, baseline: float | None, ratio: float | None) -> str:
    """PASS/FAIL against the row's goal, '' when it has none, '?' when a figure is missing."""
    if row.goal_text.startswith("bounded"):
        if value is None or baseline is None:
            return "?"
        return "PASS" if value - baseline <= THREAD_GROWTH_LIMIT else "FAIL"
    if row.goal is None:
        return ""
    subject = ratio if row.baseline else value
    if subject is None:
        return "?"
    operator, threshold = row.goal
    passed = {">=": subject >= threshold, "<=": subject <= threshold, "<": subject < threshold}[operator]
    return "PASS" if passed else "FAIL"


def table(rounds: list[dict[str, t.Any]], selected: list[str]) -> tuple[str, list[dict[str, t.Any]]]:
    """The final table (medians over rounds, ratios per round) and its rows as data."""
    def per_round(metric: str) -> list[float | None]:
        scenario, _, name = metric.partition(".")
        return [round_[scenario]["metrics"].get(name) if round_.get(scenario, {}).get("metrics") else None
                for round_ in rounds]

    lines, data = [], []
    header = f"{'scenario':<10} {'figure':<48} {'value':>11} {'baseline':>11} {'ratio':>7}  {'goal':<22} verdict"
    lines += [header, "-" * len(header)]
    for scenario in selected:
        failures = [round_[scenario]["error"] for round_ in rounds if round_.get(scenario, {}).get("error")]
        for error in failures:
            lines.append(f"{scenario:<10} FAILED: {error}"[:250])
            data.append({"scenario": scenario, "error": error, "verdict": "FAIL"})
        for row in (row for row in ROWS if row.scenario == scenario):
            values = per_round(row.metric)
            value = median_or_none([v for v in values if v is not None])
            baseline = ratio = None
            if row.baseline:
                baselines = per_round(row.baseline)
                baseline = median_or_none([b for b in baselines if b is not None])
                ratio = median_or_none([v / b for v, b in zip(values, baselines, strict=True) if v is not None and b])
            if value is None and failures:
                continue
            goal = row.goal_text or (f"{row.goal[0]} {row.goal[1]:g}{'x' if row.baseline else ''}" if row.goal else "")
            result = verdict(row, value, baseline, ratio)
            if row.delta and value is not None and baseline is not None:
                ratio_text = f"{value - baseline:+.0f}"
            else:
                ratio_text = "-" if ratio is None else f"{ratio:.2f}x"
            base_text = fmt(baseline, row.unit) if row.baseline else ""
            lines.append(f"{scenario:<10} {row.label:<48} {fmt(value, row.unit):>11} {base_text:>11} "
                         f"{ratio_text:>7}  {goal:<22} {result}")
            data.append({"scenario": scenario, "figure": row.label, "metric": row.metric, "value": value,
                         "baseline_metric": row.baseline, "baseline": baseline, "ratio": ratio, "goal": goal,
                         "verdict": result})
        counts = {key: sum(v or 0 for v in per_round(f"{scenario}.{key}"))
                  for key in ("lost", "duplicates", "out_of_order")}
        if any(round_.get(scenario, {}).get("metrics") for round_ in rounds):
            result = "PASS" if not any(counts.values()) else "FAIL"
            text = "/".join(str(int(counts[key])) for key in ("lost", "duplicates", "out_of_order"))
            lines.append(f"{scenario:<10} {'lost/duplicated/out-of-order (all rounds)':<48} {text:>11} {'':>11} "
                         f"{'':>7}  {'= 0':<22} {result}")
            data.append({"scenario": scenario, "figure": "lost/duplicated/out-of-order", **counts, "verdict": result})
    notes = [note for round_ in rounds for scenario in selected for note in round_.get(scenario, {}).get("notes", [])]
    if notes:
        lines += ["", "notes:"] + [f"  {note}" for note in notes]
    return "\n".join(lines), data


# -- main ------------------------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Benchmark the Event Service against its goals (see the docstring).")
    parser.add_argument("--quick", action="store_true", help="smaller counts, 1 round by default (< 3 minutes)")
    parser.add_argument("--rounds", type=int, help="rounds to take medians over (default 3, --quick 1)")
    parser.add_argument("--only", help=f"comma-separated scenarios out of {','.join(SCENARIOS)}")
    parser.add_argument("--json", type=Path, help="write every round's figures and the table here")
    parser.add_argument("--profile", type=Path, help="record the Event Service with py-spy into this directory")
    parser.add_argument("--py-spy", default=os.environ.get("PY_SPY") or shutil.which("py-spy"),
                        help="the py-spy executable for --profile (default: PY_SPY or py-spy on PATH)")
    parser.add_argument("--no-bootstrap", action="store_true", help="run in this interpreter, not the project's .venv")
    options = parser.parse_args(argv)
    selected = options.only.split(",") if options.only else list(SCENARIOS)
    unknown = set(selected) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    if {"fanout", "pipelined"} & set(selected) and "raw" not in selected:
        selected.append("raw")  # their baselines
        progress("adding scenario raw: it is the baseline of fanout and pipelined")
    options.selected = [name for name in SCENARIOS if name in selected]
    options.rounds = options.rounds or (1 if options.quick else 3)
    if options.rounds < 1:
        parser.error("--rounds must be at least 1")
    if options.profile:
        if not options.py_spy:
            parser.error("--profile needs py-spy: put it on PATH or pass --py-spy")
        options.profile.mkdir(parents=True, exist_ok=True)
    return options


def main(argv: list[str]) -> int:
    """Run the selected scenarios for the given rounds; print the table; 1 if any goal failed."""
    options = parse_args(argv)
    sizes = QUICK if options.quick else FULL
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    idle_before = idle_share()
    if idle_before < 0.8:
        progress(f"only {idle_before:.0%} of the CPUs are idle before starting: other load will skew the figures")
    started = time.monotonic()
    rounds: list[dict[str, t.Any]] = []
    for number in range(1, options.rounds + 1):
        round_: dict[str, t.Any] = {}
        rounds.append(round_)
        for scenario in options.selected:
            if scenario == "scale" and options.quick and number > 1:
                continue  # once is enough for a quick look
            progress(f"round {number}/{options.rounds}: {scenario}")
            profile = None
            if options.profile:
                profile = (options.py_spy, options.profile / f"r{number}")
                profile[1].mkdir(exist_ok=True)
            try:
                metrics, notes = SCENARIO_FUNCTIONS[scenario](sizes, profile)
                round_[scenario] = {"metrics": metrics, "notes": notes, "error": None}
            except Exception as error:  # a failed scenario is reported, the others still run
                progress(f"scenario {scenario} failed: {error}")
                round_[scenario] = {"metrics": {}, "notes": [], "error": f"{type(error).__name__}: {error}"}
    elapsed = time.monotonic() - started
    idle_after = idle_share()
    text, rows = table(rounds, options.selected)
    mode = "quick" if options.quick else "full"
    print(f"eventservice benchmark ({mode}, {options.rounds} round(s), {elapsed:.0f}s, {os.cpu_count()} CPUs, "
          f"Python {sys.version.split()[0]}); medians over rounds, ratios per round")
    busy = " (well under 100%: something else was running, and the figures are skewed)" if min(
        idle_before, idle_after) < 0.8 else ""
    print(f"CPUs idle just before the run: {idle_before:.0%}, just after: {idle_after:.0%}{busy}")
    print(text)
    if options.json:
        options.json.write_text(json.dumps({"mode": mode, "rounds": rounds, "rows": rows, "seconds": elapsed,
                                            "idle_before": idle_before, "idle_after": idle_after,
                                            "sizes": dataclasses.asdict(sizes)}, indent=1))
        progress(f"wrote {options.json}")
    return 1 if any(row["verdict"] == "FAIL" for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
