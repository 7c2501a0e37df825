"""The benchmark's child processes: ``python roles.py ROLE JSON-ARGUMENTS``.

bench/run.py starts every participant of a scenario as its own process, as in
a real deployment, and talks to it over pipes: a role writes one JSON object
per line on stdout (``{"ready": ...}`` once set up, results later) and reads
one command per line on stdin. Children find the name server through
PYRO_NS_HOST/PYRO_NS_PORT and bind to PYRO_HOST, set by run.py.

Roles:
  subs       eventservice.Subscriber objects, each listening in a thread;
             optionally holders of many non-matching patterns
  pub        one eventservice.Publisher publishing the payload
  rawhost    plain Pyro5: a sink/relay object and receiver objects
  rawclient  plain Pyro5 calls on one proxy to a rawhost

Every event carries the payload (seq, t_pub, "SUN", 123.45); seq < 0 marks
warm-up events, which receivers note but do not count. Every sending loop is
bounded in count and in time; a role lives until run.py closes its stdin
(or kills it), so it ends with its parent.
"""
from __future__ import annotations

import json
import os
import sys
import threading
import time
import typing as t

SUBJECT = "STOCKQUOTE.SUN"
#: how many points of a latency distribution a process reports
SKETCH_POINTS = 1001


def emit(**fields: t.Any) -> None:
    """Write one JSON line to the parent."""
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


def payload(seq: int) -> tuple[int, float, str, float]:
    """The benchmark's message: sequence number, publish time, symbol, price."""
    return (seq, time.time(), "SUN", 123.45)


def subject_for(seq: int, distinct: bool) -> str:
    """The subject of event ``seq``: always the same one, or a new one per event."""
    return f"{SUBJECT}.{seq}" if distinct else SUBJECT


def sketch(values: list[float]) -> list[float]:
    """At most SKETCH_POINTS evenly spaced order statistics of ``values`` (all of them if fewer)."""
    values = sorted(values)
    if len(values) <= SKETCH_POINTS:
        return values
    last = len(values) - 1
    return [values[round(i * last / (SKETCH_POINTS - 1))] for i in range(SKETCH_POINTS)]


def paced(index: int, start: float, rate: float, deadline: float) -> None:
    """Sleep until event ``index`` is due when sending ``rate`` per second (0: never sleep)."""
    if rate:
        delay = min(start + index / rate, deadline) - time.monotonic()
        if delay > 0:
            time.sleep(delay)


def cpu_seconds() -> float:
    """CPU time (user + system) this process used so far."""
    return time.process_time()


class Tracker:
    """Checks one receiver's stream: seq must rise by exactly 1; counts what is not so.

    ``duplicates``: a seq seen before; ``out_of_order``: a new seq lower than
    one already seen; lost ones are the expected count minus ``received``.
    """

    def __init__(self, per_seq: bool) -> None:
        self.seen: set[int] = set()
        self.top = -1
        self.duplicates = self.out_of_order = 0
        self.latencies: list[float] = []
        self.per_seq: dict[int, float] | None = {} if per_seq else None
        self.last = 0.0
        self.warmups: list[float] = []

    def record(self, msg: t.Any) -> None:
        """Note one received payload (called in arrival order for this receiver)."""
        now = time.time()
        seq, published = msg[0], msg[1]
        latency = now - published
        if seq < 0:
            self.warmups.append(latency)
            return
        if seq in self.seen:
            self.duplicates += 1
            return
        if seq < self.top:
            self.out_of_order += 1
        self.top = max(self.top, seq)
        self.seen.add(seq)
        self.latencies.append(latency)
        if self.per_seq is not None:
            self.per_seq[seq] = latency
        self.last = now

    @property
    def received(self) -> int:
        return len(self.seen)


def report(trackers: list[Tracker], expected: int, **extra: t.Any) -> dict[str, t.Any]:
    """What a process tells the parent about its receivers, each of which should have ``expected`` events."""
    latencies = [value for tracker in trackers for value in tracker.latencies]
    per_seq: dict[int, list[float]] = {}
    for tracker in trackers:
        for seq, latency in (tracker.per_seq or {}).items():
            entry = per_seq.setdefault(seq, [0, 0.0])
            entry[0] += 1
            entry[1] = max(entry[1], latency)
    warmups = [value for tracker in trackers for value in tracker.warmups]
    received = sum(tracker.received for tracker in trackers)
    return dict(
        receivers=len(trackers),
        received=received,
        expected=expected * len(trackers),
        lost=sum(max(0, expected - tracker.received) for tracker in trackers),
        duplicates=sum(tracker.duplicates for tracker in trackers),
        out_of_order=sum(tracker.out_of_order for tracker in trackers),
        last=max((tracker.last for tracker in trackers), default=0.0),
        latency_count=len(latencies),
        latency_sketch=sketch(latencies),
        per_seq={str(seq): entry for seq, entry in per_seq.items()},
        warmup_count=len(warmups),
        warmup_max=max(warmups, default=None),
        cpu=cpu_seconds(),
        **extra,
    )


def wait_for(trackers: list[Tracker], expected: int, timeout: float) -> bool:
    """Wait until every tracker received ``expected`` events, or ``timeout`` seconds; True if all did."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(tracker.received >= expected for tracker in trackers):
            return True
        time.sleep(0.05)
    return all(tracker.received >= expected for tracker in trackers)


def serve_commands(trackers: list[Tracker]) -> None:
    """Answer the parent's commands on stdin until it closes it (it is done, or gone).

    ``wait EXPECTED TIMEOUT``: wait for the events, then emit the report.
    """
    for line in sys.stdin:
        words = line.split()
        if words and words[0] == "wait":
            expected, timeout = int(words[1]), float(words[2])
            complete = wait_for(trackers, expected, timeout)
            emit(report=report(trackers, expected, complete=complete))


# -- eventservice roles ---------------------------------------------------------


def role_subs(args: dict[str, t.Any]) -> None:
    """Subscribers: ``n`` of them on ``subscribe`` (exact) or ``match`` (patterns), plus pattern holders.

    ``noise`` non-matching patterns are spread over ``noise_objects`` extra
    Subscriber objects that never receive anything.
    """
    import eventservice

    started = time.monotonic()
    per_seq = bool(args.get("per_seq"))

    class BenchSubscriber(eventservice.Subscriber):
        def __init__(self) -> None:
            super().__init__()
            self.tracker = Tracker(per_seq)

        def event(self, event: eventservice.Event) -> None:
            self.tracker.record(event.msg)

    holders = []
    noise, noise_objects = int(args.get("noise", 0)), int(args.get("noise_objects", 20))
    if noise:
        patterns = [rf"^NOMATCH\.{i:05d}\." for i in range(noise)]
        share = -(-noise // noise_objects)
        for first in range(0, noise, share):
            holder = eventservice.Subscriber()
            holder.subscribeMatch(patterns[first:first + share])
            holders.append(holder)
    subscribers = [BenchSubscriber() for _ in range(int(args["n"]))]
    for subscriber in subscribers:
        if args.get("match"):
            subscriber.subscribeMatch(args["match"])
        else:
            subscriber.subscribe(args.get("subscribe", SUBJECT))
        subscriber.listenInThread()
    emit(ready=True, subscribers=len(subscribers), holders=len(holders), setup_seconds=time.monotonic() - started)
    serve_commands([subscriber.tracker for subscriber in subscribers])


def role_pub(args: dict[str, t.Any]) -> None:
    """One Publisher: ``warmup`` warm-up events, ``settle`` seconds, then up to ``count`` events within ``seconds``.

    ``pipeline`` > 0 makes it a pipelined Publisher (flushed at the end);
    ``rate`` > 0 paces it; ``distinct`` gives every event its own subject.
    """
    import eventservice

    count, seconds = int(args["count"]), float(args["seconds"])
    rate, distinct = float(args.get("rate", 0)), bool(args.get("distinct"))
    publisher = eventservice.Publisher(pipeline=int(args.get("pipeline", 0)))
    for _ in range(int(args.get("warmup", 0))):
        publisher.publish(subject_for(-1, distinct), payload(-1))
    publisher.flush(30)
    time.sleep(float(args.get("settle", 0)))
    cpu0, start = cpu_seconds(), time.monotonic()
    deadline = start + seconds
    t0 = time.time()
    sent = 0
    while sent < count and time.monotonic() < deadline:
        paced(sent, start, rate, deadline)
        publisher.publish(subject_for(sent, distinct), payload(sent))
        sent += 1
    publisher.flush(60)
    t1 = time.time()
    emit(result={"sent": sent, "t0": t0, "t1": t1, "cpu": cpu_seconds() - cpu0})
    publisher.close()


# -- raw Pyro5 roles ----------------------------------------------------------------


def role_rawhost(args: dict[str, t.Any]) -> None:
    """A plain Pyro5 daemon: one Relay object (a sink, or a forwarder once connected) and ``receivers`` Receivers."""
    from Pyro5.api import Daemon, Proxy, expose

    class Receiver:
        """Checks the stream of events a Relay forwards to it."""

        def __init__(self) -> None:
            self.tracker = Tracker(per_seq=False)

        @expose
        def event(self, subject: str, msg: t.Any) -> None:
            self.tracker.record(msg)

    class Relay:
        """publish() records its own arrival, then calls every connected receiver in turn."""

        def __init__(self) -> None:
            self.tracker = Tracker(per_seq=False)
            self.targets: list[tuple[str, str]] = []
            self.proxies: list[t.Any] = []

        @expose
        def connect(self, uris: list[str], serializer: str) -> None:
            self.targets = [(uri, serializer) for uri in uris]
            self.proxies = []

        @expose
        def publish(self, subject: str, msg: t.Any) -> int:
            self.tracker.record(msg)
            if self.targets and not self.proxies:
                for uri, serializer in self.targets:
                    proxy = Proxy(uri)
                    proxy._pyroSerializer = serializer
                    self.proxies.append(proxy)
            for proxy in self.proxies:
                proxy._pyroClaimOwnership()
                proxy.event(subject, msg)
            return len(self.proxies)

        @expose
        def publishBatch(self, items: list[t.Any]) -> list[t.Any]:
            return []

    daemon = Daemon()
    relay = Relay()
    receivers = [Receiver() for _ in range(int(args.get("receivers", 0)))]
    relay_uri = daemon.register(relay)
    uris = [str(daemon.register(receiver)) for receiver in receivers]
    threading.Thread(target=daemon.requestLoop, daemon=True).start()
    emit(ready=True, relay=str(relay_uri), receivers=uris)
    serve_commands([receiver.tracker for receiver in receivers] or [relay.tracker])


def role_rawclient(args: dict[str, t.Any]) -> None:
    """Plain Pyro5 calls on one proxy: ``publish(subject, payload)`` or ``publishBatch`` of ``batch`` payloads.

    ``connect``: receiver URIs the Relay is to forward every publish to.
    """
    from Pyro5.api import Proxy

    count, seconds = int(args["count"]), float(args["seconds"])
    rate, batch = float(args.get("rate", 0)), int(args.get("batch", 0))
    proxy = Proxy(args["uri"])
    proxy._pyroSerializer = args.get("serializer", "serpent")
    proxy._pyroBind()
    if args.get("connect"):
        proxy.connect(args["connect"], proxy._pyroSerializer)
    for _ in range(int(args.get("warmup", 0))):
        proxy.publish(SUBJECT, payload(-1))
    time.sleep(float(args.get("settle", 0)))
    cpu0, start = cpu_seconds(), time.monotonic()
    deadline = start + seconds
    t0 = time.time()
    calls = 0
    while calls < count and time.monotonic() < deadline:
        paced(calls, start, rate, deadline)
        if batch:
            proxy.publishBatch([(SUBJECT, payload(calls * batch + i)) for i in range(batch)])
        else:
            proxy.publish(SUBJECT, payload(calls))
        calls += 1
    t1 = time.time()
    emit(result={"sent": calls, "events": calls * (batch or 1), "t0": t0, "t1": t1, "cpu": cpu_seconds() - cpu0})
    proxy._pyroRelease()


ROLES = {
    "subs": role_subs,
    "pub": role_pub,
    "rawhost": role_rawhost,
    "rawclient": role_rawclient,
}

if __name__ == "__main__":
    ROLES[sys.argv[1]](json.loads(sys.argv[2]))
    sys.stdout.flush()
    os._exit(0)  # do not wait for the daemons' and subscribers' threads
