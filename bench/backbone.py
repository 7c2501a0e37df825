#!/usr/bin/env python3
"""Benchmark of several Event Services over one Redis (es --backbone), ratios within one run.

    python3 bench/backbone.py            # 3 rounds, medians (about 5 minutes)
    python3 bench/backbone.py --quick    # 1 round, smaller counts
    python3 bench/backbone.py --only-default --pairs 7   # only "default" against "before", alternating pairs

Every participant is its own process on 127.0.0.1: one redis-server, the nodes
as ``bin/es -N --backbone redis://...``, and per node one publisher process and
one process with SUBS Subscribers, all subscribed to the exact subject
STOCKQUOTE.SUN, every client on its own node by esURI. Every event reaches every
subscriber on every node; receivers check per-publisher order, duplicates and
losses. Scenarios, each round:

  before     1 ES without backbone, running the code of the commit before the backbone
             (git archive of BASE, default d4efae7) -- the baseline for "no cost"
  default    1 ES without backbone, this checkout
  bb1        1 node with the backbone (its own messages come back and are skipped)
  bb2, bb4   2 and 4 nodes, one Redis
  latency    2 nodes, 1 sync publisher at 200/s on node A, a subscriber on A and one on B:
             receive - publish time; the difference is what a cross-node hop adds. It is
             also what "everything through Redis" would cost every local subscriber.

Figures: aggregate delivered/s (events received by all subscribers / wall time),
CPU seconds per event for the nodes (per publish accepted or per remote event
injected) and for redis-server (per PUBLISH), the no-backbone default as a ratio
of "before", and a projection for a larger machine (printed with its assumptions).
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import queue
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import typing as t
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

if __name__ == "__main__" and "--role" not in sys.argv and not os.environ.get("ES_BENCH_NO_BOOTSTRAP"):
    sys.path.insert(0, str(ROOT / "dev"))
    import bootstrap

    bootstrap.ensure_venv()

SUBJECT = "STOCKQUOTE.SUN"
SUBS = 2  # subscribers per node
LATENCY_RATE, LATENCY_COUNT = 200.0, 1000


# -- child roles (python bench/backbone.py --role NAME JSON) -------------------------


def emit(**fields: t.Any) -> None:
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


def role_subs(args: dict[str, t.Any]) -> None:
    import eventservice

    class Sub(eventservice.Subscriber):
        def __init__(self) -> None:
            super().__init__(esURI=args["es"])
            self.last: dict[str, int] = {}
            self.received = self.duplicates = self.out_of_order = 0
            self.latencies: list[float] = []
            self.last_time = 0.0

        def event(self, event: t.Any) -> None:
            now = time.time()
            publisher, seq, sent = event.msg
            if seq < 0:
                return  # warm-up
            previous = self.last.get(publisher, -1)
            if seq == previous:
                self.duplicates += 1
                return
            if seq < previous:
                self.out_of_order += 1
            self.last[publisher] = seq
            self.received += 1
            self.latencies.append(now - sent)
            self.last_time = now

    subs = [Sub() for _ in range(int(args["n"]))]
    for sub in subs:
        sub.subscribe(SUBJECT)
        sub.listenInThread()
    emit(ready=True)
    for line in sys.stdin:
        words = line.split()
        if words and words[0] == "wait":
            expected, timeout = int(words[1]), float(words[2])
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and not all(sub.received >= expected for sub in subs):
                time.sleep(0.02)
            emit(report={"received": sum(sub.received for sub in subs), "expected": expected * len(subs),
                         "duplicates": sum(sub.duplicates for sub in subs),
                         "out_of_order": sum(sub.out_of_order for sub in subs),
                         "last": max(sub.last_time for sub in subs),
                         "latencies": sorted(x for sub in subs for x in sub.latencies)})
            for sub in subs:
                sub.received, sub.last, sub.latencies = 0, {}, []


def role_pub(args: dict[str, t.Any]) -> None:
    import eventservice

    name, count, rate = args["name"], int(args["count"]), float(args.get("rate", 0))
    publisher = eventservice.Publisher(esURI=args["es"], pipeline=int(args.get("pipeline", 0)))
    emit(ready=True)
    for line in sys.stdin:
        if line.strip() == "warmup":
            for _ in range(20):
                publisher.publish(SUBJECT, (name, -1, time.time()))
            publisher.flush(30)
            emit(warm=True)
        elif line.strip() == "go":
            start = time.monotonic()
            t0 = time.time()
            for seq in range(count):
                if rate:
                    delay = start + seq / rate - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                publisher.publish(SUBJECT, (name, seq, time.time()))
            publisher.flush(120)
            emit(result={"t0": t0, "t1": time.time(), "sent": count})
    publisher.close()


# -- the parent ----------------------------------------------------------------------------


class Child:
    def __init__(self, name: str, command: list[str], env: dict[str, str], cwd: Path = ROOT) -> None:
        self.name = name
        self.proc = subprocess.Popen(command, env=env, cwd=str(cwd), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, bufsize=1)
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.stderr: collections.deque[str] = collections.deque(maxlen=10)
        threading.Thread(target=self._out, daemon=True).start()
        threading.Thread(target=self._err, daemon=True).start()

    def _out(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def _err(self) -> None:
        for line in self.proc.stderr:
            self.stderr.append(line.rstrip())

    def line(self, accept: t.Callable[[str], bool], timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise RuntimeError(f"{self.name}: no answer within {timeout:.0f}s; {list(self.stderr)}") from None
            if line is None:
                raise RuntimeError(f"{self.name} ended: {list(self.stderr)}")
            if accept(line):
                return line

    def read(self, key: str, timeout: float = 60) -> t.Any:
        return json.loads(self.line(lambda line: line.startswith("{") and key in json.loads(line), timeout))[key]

    def send(self, text: str) -> None:
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()

    @property
    def cpu(self) -> float:
        return proc_cpu(self.proc.pid)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


def proc_cpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as file:
        fields = file.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def env_for(pythonpath: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(PYTHONPATH=str(pythonpath), PYRO_HOST="127.0.0.1", PYTHONUNBUFFERED="1")
    return env


def percentile(values: list[float], share: float) -> float:
    return values[min(len(values) - 1, int(share * len(values)))] if values else float("nan")


class Bench:
    def __init__(self, quick: bool, base: str) -> None:
        self.events = 10000 if quick else 20000
        self.redis_port = free_port()
        self.redis = subprocess.Popen([shutil.which("redis-server") or "redis-server", "--port", str(self.redis_port),
                                       "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                                      stdout=subprocess.DEVNULL)
        self.url = f"redis://127.0.0.1:{self.redis_port}"
        self.before = Path(tempfile.mkdtemp(prefix="es-before-"))
        archive = subprocess.run(["git", "archive", base], cwd=ROOT, capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(self.before)], input=archive, check=True)
        time.sleep(0.3)
        self.children: list[Child] = []

    def close(self) -> None:
        for child in self.children:
            child.kill()
        self.redis.kill()
        self.redis.wait(10)
        shutil.rmtree(self.before, ignore_errors=True)

    def spawn(self, name: str, args: list[str], tree: Path = ROOT) -> Child:
        child = Child(name, [sys.executable, *args], env_for(tree), tree)
        self.children.append(child)
        return child

    def node(self, index: int, backbone: bool, tree: Path = ROOT) -> tuple[Child, str]:
        args = [str(tree / "bin" / "es"), "-N", "-n", "127.0.0.1"]
        if backbone:
            args += ["--backbone", self.url]
        child = self.spawn(f"node{index}", args, tree)
        uri = child.line(lambda line: line.startswith("Event Service URI:"), 60).split(":", 1)[1].strip()
        return child, uri

    def role(self, role: str, **args: t.Any) -> Child:
        child = self.spawn(role, [str(Path(__file__).resolve()), "--role", role, json.dumps(args)])
        child.read("ready")
        return child

    def stop_all(self) -> None:
        for child in self.children:
            child.kill()
        self.children = []

    def throughput(self, nodes: int, backbone: bool, tree: Path = ROOT) -> dict[str, float]:
        """Every node: a pipelined publisher and SUBS subscribers; every event reaches every subscriber."""
        try:
            started = [self.node(index, backbone, tree) for index in range(nodes)]
            subs = [self.role("subs", es=uri, n=SUBS) for _, uri in started]
            pubs = [self.role("pub", es=uri, name=f"p{index}", count=self.events, pipeline=1000)
                    for index, (_, uri) in enumerate(started)]
            for pub in pubs:  # warm-up doubles as the check that subscriptions crossed the backbone
                pub.send("warmup")
                pub.read("warm")
            time.sleep(0.5)
            node_cpu = [child.cpu for child, _ in started]
            redis_cpu = proc_cpu(self.redis.pid)
            for pub in pubs:
                pub.send("go")
            results = [pub.read("result", 300) for pub in pubs]
            expected = self.events * nodes
            for sub in subs:
                sub.send(f"wait {expected} 120")
            reports = [sub.read("report", 180) for sub in subs]
            node_cpu = [child.cpu - before for (child, _), before in zip(started, node_cpu, strict=True)]
            redis_cpu = proc_cpu(self.redis.pid) - redis_cpu
            received = sum(report["received"] for report in reports)
            wall = max(report["last"] for report in reports) - min(result["t0"] for result in results)
            accepted = self.events * nodes  # publishes accepted, over all nodes
            injected = self.events * nodes * (nodes - 1)  # remote events injected, over all nodes
            return {
                "delivered_per_s": received / wall,
                "lost": sum(report["expected"] - report["received"] for report in reports),
                "duplicates": sum(report["duplicates"] for report in reports),
                "out_of_order": sum(report["out_of_order"] for report in reports),
                "node_cpu_per_event_us": 1e6 * sum(node_cpu) / (accepted + injected),
                "node_cpu_per_delivery_us": 1e6 * sum(node_cpu) / received,
                "redis_cpu_per_publish_us": 1e6 * redis_cpu / accepted if backbone else 0.0,
            }
        finally:
            self.stop_all()

    def latency(self) -> dict[str, float]:
        try:
            (_, uri_a), (_, uri_b) = self.node(0, True), self.node(1, True)
            local, remote = self.role("subs", es=uri_a, n=1), self.role("subs", es=uri_b, n=1)
            pub = self.role("pub", es=uri_a, name="lat", count=LATENCY_COUNT, rate=LATENCY_RATE)
            pub.send("warmup")
            pub.read("warm")
            time.sleep(0.5)
            pub.send("go")
            pub.read("result", 120)
            figures = {}
            for name, sub in (("local", local), ("remote", remote)):
                sub.send(f"wait {LATENCY_COUNT} 60")
                report = sub.read("report", 90)
                lat = report["latencies"]
                figures[f"{name}_p50_ms"] = 1000 * percentile(lat, 0.5)
                figures[f"{name}_p99_ms"] = 1000 * percentile(lat, 0.99)
                figures[f"{name}_lost"] = report["expected"] - report["received"]
            figures["hop_p50_ms"] = figures["remote_p50_ms"] - figures["local_p50_ms"]
            figures["hop_p99_ms"] = figures["remote_p99_ms"] - figures["local_p99_ms"]
            return figures
        finally:
            self.stop_all()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="1 round, fewer events")
    parser.add_argument("--base", default="d4efae7", help="the commit before the backbone (the 'before' figures)")
    parser.add_argument("--json", help="write every round's figures here")
    parser.add_argument("--only-default", action="store_true",
                        help="only the no-backbone check: --pairs runs of before and default, back to back, alternating")
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--events", type=int, help="events per publisher (default 20000; --quick 10000)")
    options = parser.parse_args()
    rounds = 1 if options.quick else options.rounds
    bench = Bench(options.quick, options.base)
    if options.events:
        bench.events = options.events
    runs: list[dict[str, dict[str, float]]] = []
    if options.only_default:
        try:
            return default_pairs(bench, options.pairs)
        finally:
            bench.close()
    try:
        for number in range(rounds):
            figures: dict[str, dict[str, float]] = {}
            for name, run in (
                ("before", lambda: bench.throughput(1, False, bench.before)),
                ("default", lambda: bench.throughput(1, False)),
                ("bb1", lambda: bench.throughput(1, True)),
                ("bb2", lambda: bench.throughput(2, True)),
                ("bb4", lambda: bench.throughput(4, True)),
                ("latency", bench.latency),
            ):
                print(f"round {number + 1}: {name}...", file=sys.stderr, flush=True)
                figures[name] = run()
            figures["ratios"] = {
                "default_vs_before": figures["default"]["delivered_per_s"] / figures["before"]["delivered_per_s"],
                "bb1_vs_default": figures["bb1"]["delivered_per_s"] / figures["default"]["delivered_per_s"],
                "bb2_vs_bb1": figures["bb2"]["delivered_per_s"] / figures["bb1"]["delivered_per_s"],
                "bb4_vs_bb1": figures["bb4"]["delivered_per_s"] / figures["bb1"]["delivered_per_s"],
                "node_cpu_bb1_vs_default": (figures["bb1"]["node_cpu_per_event_us"]
                                            / figures["default"]["node_cpu_per_event_us"]),
            }
            runs.append(figures)
            print(json.dumps(figures), file=sys.stderr, flush=True)
    finally:
        bench.close()
    if options.json:
        Path(options.json).write_text(json.dumps(runs, indent=1))
    table(runs)
    return 0


def default_pairs(bench: Bench, pairs: int) -> int:
    """The no-backbone default against the code before the backbone, in alternating back-to-back pairs."""
    rates, cpus = [], []
    for number in range(pairs):
        order = [("before", bench.before), ("default", ROOT)]
        if number % 2:
            order.reverse()
        figures = {}
        for name, tree in order:
            print(f"pair {number + 1}: {name}...", file=sys.stderr, flush=True)
            figures[name] = bench.throughput(1, False, tree)
        rates.append(figures["default"]["delivered_per_s"] / figures["before"]["delivered_per_s"])
        cpus.append(figures["default"]["node_cpu_per_event_us"] / figures["before"]["node_cpu_per_event_us"])
        print(json.dumps(figures), file=sys.stderr, flush=True)
    print(f"no backbone, this checkout / before ({pairs} alternating pairs, medians):")
    print(f"  delivered/s      {statistics.median(rates):.3f}   (pairs: {', '.join(f'{v:.3f}' for v in rates)})")
    print(f"  ES CPU per event {statistics.median(cpus):.3f}   (pairs: {', '.join(f'{v:.3f}' for v in cpus)})")
    return 0


def median(runs: list[dict[str, dict[str, float]]], scenario: str, key: str) -> float:
    return statistics.median(run[scenario][key] for run in runs)


def table(runs: list[dict[str, dict[str, float]]]) -> None:
    print(f"medians of {len(runs)} round(s); ratios taken per round")
    print(f"{'scenario':10} {'delivered/s':>12} {'node us/event':>14} {'node us/deliv':>14} {'redis us/PUBLISH':>17} "
          f"{'lost/dup/ooo':>13}")
    for name in ("before", "default", "bb1", "bb2", "bb4"):
        faults = "/".join(str(int(max(run[name][k] for run in runs))) for k in ("lost", "duplicates", "out_of_order"))
        print(f"{name:10} {median(runs, name, 'delivered_per_s'):12,.0f} {median(runs, name, 'node_cpu_per_event_us'):14.1f} "
              f"{median(runs, name, 'node_cpu_per_delivery_us'):14.1f} {median(runs, name, 'redis_cpu_per_publish_us'):17.1f} "
              f"{faults:>13}")
    for key in ("default_vs_before", "bb1_vs_default", "bb2_vs_bb1", "bb4_vs_bb1", "node_cpu_bb1_vs_default"):
        values = [run["ratios"][key] for run in runs]
        print(f"  {key:26} {statistics.median(values):.3f}   (rounds: {', '.join(f'{v:.3f}' for v in values)})")
    lat = {key: median(runs, "latency", key) for key in runs[0]["latency"]}
    print(f"latency at {LATENCY_RATE:.0f}/s, 2 nodes: local p50 {lat['local_p50_ms']:.2f} ms p99 {lat['local_p99_ms']:.2f} ms; "
          f"remote p50 {lat['remote_p50_ms']:.2f} ms p99 {lat['remote_p99_ms']:.2f} ms; "
          f"the hop adds p50 {lat['hop_p50_ms']:.2f} ms, p99 {lat['hop_p99_ms']:.2f} ms "
          f"(lost {lat['local_lost']:.0f}/{lat['remote_lost']:.0f})")
    node_us = median(runs, "bb2", "node_cpu_per_event_us")
    redis_us = median(runs, "bb4", "redis_cpu_per_publish_us")
    print("projection (assumptions: one core per node and one for Redis; a node's CPU per event and Redis's CPU per")
    print("  PUBLISH as measured here (bb2, bb4); every publish goes to every node, as in this benchmark; network free):")
    print(f"  one node handles ~{1e6 / node_us:,.0f} events/s (accepted or injected) per core;"
          f" Redis fans out ~{1e6 / redis_us:,.0f} publishes/s to 4 nodes on its one core")
    print("  with N nodes each takes all N nodes' publishes, so the aggregate publish rate is bounded by one node's")
    print("  rate (full fan-out replicates, it does not partition); nodes add subscriber capacity (delivery CPU),")
    print("  not publish capacity, unless subjects are partitioned by interest: then each node injects only")
    print("  what its subscribers want, and Redis becomes the bound at the rate above (shard over several Redis).")


if __name__ == "__main__":
    if "--role" in sys.argv:
        position = sys.argv.index("--role")
        role, arguments = sys.argv[position + 1], json.loads(sys.argv[position + 2])
        sys.path.insert(0, str(ROOT))
        {"subs": role_subs, "pub": role_pub}[role](arguments)
    else:
        sys.exit(main())
