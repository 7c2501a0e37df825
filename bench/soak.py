#!/usr/bin/env python3
"""Soak run: minutes of subscriber churn against one Event Service, publishers at a steady rate.

    python3 bench/soak.py --quick         # about 1 minute of churn
    python3 bench/soak.py --minutes 5     # 5 minutes of churn (the default)

Not part of CI. Every participant is its own process on 127.0.0.1: the Event
Service (``python -m eventservice.server``, blocking policy unless --full-queue
says otherwise), publisher processes publishing (publisher id, seq) at a
steady rate, a few stable subscribers that live through the whole run, and
churning subscriber processes that join, leave (close()) and are killed
(SIGKILL) at random, half of them by exact subject, half by pattern.

Every subscriber checks that each publisher's seq rises by exactly 1 from the
first event it got; the run reports lost, duplicated and reordered events of
subscribers that were alive (those that left cleanly up to their close(), and
all live ones up to the publishers' last event). Under the blocking policy
lost must be 0. It samples the ES's threads, open sockets (/proc/PID/fd) and
RSS at the start, before the churn, during it (peak), when it stops, and
after things settle; they must not grow once the churn stops. Bounded in time
(--minutes) and count (--max-spawns). Progress to stderr, the report to stdout.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SUBJECT = "SOAK.TICK"
PATTERN = r"^SOAK\."


# -- roles (run in their own processes) ----------------------------------------


def role_subscriber(uri: str, how: str) -> None:
    """Subscribe by ``how`` (exact/pattern), check seq per publisher, answer 'report'/'leave' on stdin."""
    import eventservice

    class Checker(eventservice.Subscriber):
        def __init__(self) -> None:
            super().__init__(esURI=uri)
            self.last: dict[str, int] = {}
            self.received = self.lost = self.duplicated = 0
            self.lock = threading.Lock()

        def event(self, event) -> None:
            publisher, seq = event.msg
            with self.lock:
                self.received += 1
                previous = self.last.get(publisher)
                if previous is not None and seq <= previous:
                    self.duplicated += 1
                    return
                if previous is not None:
                    self.lost += seq - previous - 1
                self.last[publisher] = seq

        def report(self) -> str:
            with self.lock:
                return "report " + json.dumps({"received": self.received, "lost": self.lost,
                                               "duplicated": self.duplicated, "last": self.last})

    checker = Checker()
    if how == "pattern":
        checker.subscribeMatch(PATTERN)
    else:
        checker.subscribe(SUBJECT)
    checker.listenInThread()
    print("ready", flush=True)
    for line in sys.stdin:
        if line.strip() == "report":
            print(checker.report(), flush=True)
        elif line.strip() == "leave":
            checker.close()
            print(checker.report(), flush=True)
            return
    checker.close()


def role_publisher(uri: str, name: str, rate: float, seconds: float) -> None:
    """Publish (name, seq) at ``rate`` per second until 'stop' on stdin or ``seconds``; print the last seq."""
    import eventservice

    stop = threading.Event()

    def wait_for_stop() -> None:
        for line in sys.stdin:
            if line.strip() == "stop":
                break
        stop.set()

    threading.Thread(target=wait_for_stop, daemon=True).start()
    seq = -1
    errors = 0
    with eventservice.Publisher(esURI=uri) as publisher:
        print("ready", flush=True)
        started = time.monotonic()
        while not stop.is_set() and time.monotonic() - started < seconds:
            try:
                publisher.publish(SUBJECT, (name, seq + 1))
                seq += 1
            except Exception as error:  # report, never stop the soak for one publish
                errors += 1
                print(f"error {type(error).__name__}: {error}", file=sys.stderr, flush=True)
            delay = started + (seq + 1) / rate - time.monotonic()
            if delay > 0:
                stop.wait(delay)
    print("final " + json.dumps({"name": name, "last": seq, "errors": errors}), flush=True)


# -- the driver ------------------------------------------------------------------


class Child:
    """A role process with its stdout lines read by a thread."""

    def __init__(self, args: list[str], name: str, log: Path | None = None) -> None:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
                   PYTHONUNBUFFERED="1", PYRO_HOST="127.0.0.1")
        stderr = open(log, "a") if log else subprocess.DEVNULL  # noqa: SIM115 (closed with the process)
        self.name = name
        self.process = subprocess.Popen([sys.executable, *args], env=env, cwd=str(ROOT), stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=stderr, text=True)
        if log:
            stderr.close()
        self.lines: list[str] = []
        self.ended = False  # stdout closed: no more lines
        self.changed = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:
            with self.changed:
                self.lines.append(line.strip())
                self.changed.notify_all()
        with self.changed:
            self.ended = True
            self.changed.notify_all()

    def wait_line(self, prefix: str, timeout: float, after: int = 0) -> str | None:
        """The first line from index ``after`` on that starts with ``prefix``; None after ``timeout``."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while True:
                for line in self.lines[after:]:
                    if line.startswith(prefix):
                        return line
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self.ended:
                    return None
                self.changed.wait(remaining)

    def send(self, text: str) -> bool:
        try:
            self.process.stdin.write(text + "\n")
            self.process.stdin.flush()
            return True
        except (BrokenPipeError, OSError, ValueError):
            return False

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            pass


def resources(pid: int) -> dict[str, int]:
    """Threads, RSS (KB), open sockets and all open fds of process ``pid``."""
    status = {}
    with open(f"/proc/{pid}/status") as file:
        for line in file:
            key, _, value = line.partition(":")
            status[key] = value.split()
    sockets = fds = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        fds += 1
        sockets += target.startswith("socket:")
    return {"threads": int(status["Threads"][0]), "rss_kb": int(status["VmRSS"][0]), "sockets": sockets, "fds": fds}


def settled(pid: int, samples: int = 5, gap: float = 1.0) -> dict[str, int]:
    """Resources over ``samples`` readings ``gap`` apart: the least threads, sockets and fds (short-lived
    connections, such as a subscriber's periodic check, come and go) and the last RSS."""
    readings = []
    for number in range(samples):
        if number:
            time.sleep(gap)
        readings.append(resources(pid))
    least = {key: min(reading[key] for reading in readings) for key in ("threads", "sockets", "fds")}
    return {**least, "rss_kb": readings[-1]["rss_kb"]}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def progress(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=5.0, help="minutes of churn (default 5)")
    parser.add_argument("--quick", action="store_true", help="about one minute of churn (--minutes 1)")
    parser.add_argument("--publishers", type=int, default=2)
    parser.add_argument("--rate", type=float, default=100.0, help="events per second per publisher (default 100)")
    parser.add_argument("--stable", type=int, default=3, help="subscribers that live through the run (default 3)")
    parser.add_argument("--churners", type=int, default=8, help="most churning subscribers alive at once (default 8)")
    parser.add_argument("--every", type=float, default=0.7, help="seconds between churn actions (default 0.7)")
    parser.add_argument("--max-spawns", type=int, default=1000, help="most subscriber processes started (default 1000)")
    parser.add_argument("--full-queue", default=None, help="the ES's full-queue policy (default: its own, block)")
    parser.add_argument("--delivery-timeout", type=float, default=5.0)
    parser.add_argument("--json", help="also write the report as JSON to this file")
    parser.add_argument("--role", help=argparse.SUPPRESS)
    parser.add_argument("role_args", nargs="*", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.role == "subscriber":
        role_subscriber(*options.role_args)
        return 0
    if options.role == "publisher":
        uri, name, rate, seconds = options.role_args
        role_publisher(uri, name, float(rate), float(seconds))
        return 0
    return drive(options)


def drive(options: argparse.Namespace) -> int:
    minutes = 1.0 if options.quick else options.minutes
    churn_seconds = minutes * 60
    rng = random.Random(9)
    log = Path(os.environ.get("TMPDIR", "/tmp")) / f"eventservice-soak-{os.getpid()}.log"
    script = str(Path(__file__).resolve())
    port = free_port()
    es_args = ["-m", "eventservice.server", "-N", "-n", "127.0.0.1", "-p", str(port),
               "--delivery-timeout", str(options.delivery_timeout)]
    if options.full_queue:
        es_args += ["--full-queue", options.full_queue]
    children: list[Child] = []
    samples: dict[str, dict[str, int]] = {}
    report: dict[str, object] = {"minutes": minutes, "publishers": options.publishers, "rate": options.rate,
                                 "policy": options.full_queue or "block (default)", "es_log": str(log)}
    try:
        es = Child(es_args, "es", log)
        children.append(es)
        line = es.wait_line("Event Service URI:", 30)
        if line is None:
            progress(f"the Event Service did not start; see {log}")
            return 2
        uri = line.split(":", 1)[1].strip()
        time.sleep(0.5)
        samples["start"] = resources(es.process.pid)
        progress(f"ES {uri} pid {es.process.pid}: {samples['start']}")

        def subscriber(how: str) -> Child:
            child = Child([script, "--no-bootstrap", "--role", "subscriber", uri, how], f"sub-{how}", log)
            children.append(child)
            return child

        stable = [subscriber("pattern" if number % 3 == 2 else "exact") for number in range(options.stable)]
        for child in stable:
            if child.wait_line("ready", 30) is None:
                progress("a stable subscriber did not start")
                return 2
        budget = churn_seconds + 120  # the publishers outlive the churn; stopped explicitly anyway
        publishers = [Child([script, "--no-bootstrap", "--role", "publisher", uri, f"p{number}", str(options.rate),
                             str(budget)], f"pub-{number}", log) for number in range(options.publishers)]
        children.extend(publishers)
        for child in publishers:
            child.wait_line("ready", 30)
        samples["before churn"] = settled(es.process.pid)
        progress(f"warm: {samples['before churn']}; churning for {churn_seconds:.0f}s")

        churners: list[Child] = []
        left: list[dict] = []
        counts = {"joined": 0, "left": 0, "killed": 0}
        peak = dict(samples["before churn"])
        spawns = 0
        churn_end = time.monotonic() + churn_seconds
        next_sample = time.monotonic() + 5
        while time.monotonic() < churn_end:
            churners = [child for child in churners if child.process.poll() is None]
            ready = [child for child in churners if "ready" in child.lines]
            action = rng.choice(["join", "join", "leave", "kill"]) if churners else "join"
            if action == "join" and len(churners) < options.churners and spawns < options.max_spawns:
                churners.append(subscriber(rng.choice(["exact", "pattern"])))
                spawns += 1
                counts["joined"] += 1
            elif action == "leave" and ready:
                child = rng.choice(ready)
                mark = len(child.lines)
                if child.send("leave"):
                    answer = child.wait_line("report ", 15, after=mark)
                    if answer:
                        left.append(json.loads(answer.split(" ", 1)[1]))
                        counts["left"] += 1
                churners.remove(child)
            elif action == "kill" and ready:
                child = rng.choice(ready)
                child.kill()
                churners.remove(child)
                counts["killed"] += 1
            if time.monotonic() >= next_sample:
                now = resources(es.process.pid)
                peak = {key: max(peak[key], now[key]) for key in peak}
                progress(f"during: {now}; {counts}")
                next_sample += 5
            time.sleep(options.every)

        for child in churners:  # the churn stops: the last churners leave cleanly
            mark = len(child.lines)
            if child.process.poll() is None and "ready" in child.lines and child.send("leave"):
                answer = child.wait_line("report ", 15, after=mark)
                if answer:
                    left.append(json.loads(answer.split(" ", 1)[1]))
                    counts["left"] += 1
            child.kill()
        samples["peak during"] = peak
        samples["churn stopped"] = settled(es.process.pid)
        progress(f"churn stopped: {samples['churn stopped']}; publishers go on for 10 s more")
        time.sleep(5)  # steady publishing, no churn: nothing may grow now
        samples["after 10 s steady"] = settled(es.process.pid)

        finals = {}
        for child in publishers:
            mark = len(child.lines)
            child.send("stop")
            answer = child.wait_line("final ", 30, after=mark)
            if answer:
                final = json.loads(answer.split(" ", 1)[1])
                finals[final["name"]] = final
        live: list[dict] = []
        deadline = time.monotonic() + 30  # the stable subscribers drain what is queued for them
        for child in stable:
            while True:
                mark = len(child.lines)
                child.send("report")
                answer = child.wait_line("report ", 10, after=mark)
                state = json.loads(answer.split(" ", 1)[1]) if answer else None
                caught_up = state is not None and all(state["last"].get(name) == final["last"]
                                                      for name, final in finals.items())
                if caught_up or time.monotonic() > deadline:
                    if state is not None:
                        state["tail_lost"] = sum(final["last"] - state["last"].get(name, -1)
                                                 for name, final in finals.items())
                        live.append(state)
                    break
                time.sleep(0.5)
        time.sleep(options.delivery_timeout + 2)
        samples["after (idle)"] = resources(es.process.pid)
        for child in stable:
            child.send("leave")
            child.wait_line("report ", 15)
        time.sleep(2)
        samples["all left"] = resources(es.process.pid)

        lost = sum(state["lost"] for state in live + left) + sum(state["tail_lost"] for state in live)
        duplicated = sum(state["duplicated"] for state in live + left)
        published = sum(final["last"] + 1 for final in finals.values())
        steady, stopped = samples["after 10 s steady"], samples["churn stopped"]
        grew = [key for key in ("threads", "sockets", "fds") if steady[key] > stopped[key]]
        if steady["rss_kb"] > stopped["rss_kb"] * 1.05 + 1024:
            grew.append("rss_kb")
        report.update(counts=counts, spawns=spawns, published=published,
                      publish_errors=sum(final["errors"] for final in finals.values()),
                      subscribers_checked={"stable": len(live), "left cleanly": len(left)},
                      received=sum(state["received"] for state in live + left), lost=lost, duplicated=duplicated,
                      samples=samples, grew_after_churn=grew)
    finally:
        for child in reversed(children):
            if child.name == "es" and child.process.poll() is None:
                child.process.send_signal(signal.SIGTERM)
                try:
                    child.process.wait(10)
                except subprocess.TimeoutExpired:
                    pass
            child.kill()

    print(f"soak: {minutes:g} min of churn, policy {report['policy']}, "
          f"{options.publishers} publishers x {options.rate:g}/s")
    print(f"  churn: {report['counts']} ({report['spawns']} subscriber processes started)")
    print(f"  published {report['published']} events ({report['publish_errors']} publish errors); "
          f"subscribers checked: {report['subscribers_checked']}; received {report['received']}")
    print(f"  lost for live subscribers: {report['lost']}   duplicated or reordered: {report['duplicated']}")
    print("  ES resources:          threads  sockets  fds  RSS (MB)")
    for stage, sample in samples.items():
        print(f"    {stage:20s} {sample['threads']:7d} {sample['sockets']:8d} {sample['fds']:4d} {sample['rss_kb'] / 1024:9.1f}")
    verdict_lost = report["lost"] == 0 or report["policy"] not in ("block", "block (default)")
    grew = report["grew_after_churn"]
    print(f"  lost == 0 under blocking: {'PASS' if verdict_lost else 'FAIL'}; "
          f"no growth once the churn stopped: {'FAIL ' + str(grew) if grew else 'PASS'}")
    print("  (threads, sockets, fds: the least of 5 readings 1 s apart where marked settled, so that a\n"
          "   subscriber's periodic check connection does not count; settled: before churn, churn stopped,\n"
          "   after 10 s steady)")
    if options.json:
        Path(options.json).write_text(json.dumps(report, indent=2))
    return 0 if verdict_lost and not report["grew_after_churn"] else 1


if __name__ == "__main__":
    if "--no-bootstrap" not in sys.argv and not os.environ.get("ES_BENCH_NO_BOOTSTRAP"):
        sys.path.insert(0, str(ROOT / "dev"))
        import bootstrap

        bootstrap.ensure_venv()
    elif "--no-bootstrap" in sys.argv:
        sys.argv.remove("--no-bootstrap")
    sys.exit(main())
