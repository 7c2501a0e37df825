"""Joins one EventService to the backbone: local publishes go out, other nodes' publishes come in.

Local delivery first: a publish accepted here is delivered to this node's
subscribers at once (as without a backbone) and sent to the backbone; a
message from the backbone that carries this node's id is skipped. Messages
from other nodes are matched and queued here through
``EventService.accept_remote``, which does not send them back out.

Threads: a sender (encodes and PUBLISHes in batches, so the accept lock only
appends to a deque), one reader per Redis instance (header check, duplicate
check, hand-off; see link.py) and an injector (decodes and queues for local
subscribers; it may wait for room under the blocking full-queue policy, and
the hand-off, bounded in bytes, absorbs that; beyond it remote events are
dropped and counted rather than slowing the reader until Redis cuts it off).

Exactly once: each message carries (node id, sequence number per Redis
instance); a node drops a message whose number is not above the last one it
took from that sender through that instance. That covers the moment a node
switches between exact channels and the pattern catch-all, when it is
briefly subscribed to both.
"""
from __future__ import annotations

import collections
import logging
import math
import os
import threading
import time
import typing as t

from ...core.subjects import fold
from . import codec
from .link import Link
from .routing import Interest, channel

__all__ = ["Node", "parse_urls", "start_node"]

log = logging.getLogger(__name__)

#: bytes of received messages waiting for the injector, at most
HANDOFF_BYTES = 64 * 1024 * 1024
#: publishes waiting for the sender, at most
OUTGOING_LIMIT = 100_000
#: senders whose last sequence number is remembered, at most
KNOWN_SENDERS = 4096
#: most messages one PUBLISH round trip carries
SEND_BATCH = 500


class _Service(t.Protocol):
    settings: t.Any
    backbone: t.Any
    _index: t.Any

    def accept_remote(self, subjects: list[str], message: t.Any, stamp: float) -> int: ...


def parse_urls(urls: str | list[str]) -> list[str]:
    """``redis://a,redis://b`` (or a list) as a list of URLs; ValueError naming what is wrong."""
    items = [url.strip() for url in (urls.split(",") if isinstance(urls, str) else urls)]
    if not items or not all(items):
        raise ValueError(f"--backbone needs one or more comma-separated redis:// or rediss:// URLs, got {urls!r}")
    for url in items:
        if not url.startswith(("redis://", "rediss://")):
            raise ValueError(f"backbone URL must start with redis:// or rediss:// (unix sockets and Redis Cluster "
                             f"are not supported): {url.split('@')[-1]!r}")
    if len(set(items)) != len(items):
        raise ValueError("the same backbone URL is given twice")
    return items


class Node:
    """One EventService's membership in the backbone.

    :param service: the EventService (its ``backbone`` attribute is set to this node)
    :param urls: one URL per independent Redis instance
    :param password: overrides a password in the URLs
    """

    def __init__(self, service: _Service, urls: str | list[str], password: str | None = None) -> None:
        self.urls = parse_urls(urls)
        self.node_id = os.urandom(codec.NODE_ID_SIZE)
        self._service = service
        settings = service.settings
        self._max_subjects = settings.max_subjects_per_publish
        self._max_subject_length = settings.max_subject_length
        self._max_size = settings.max_message_size + 64 * 1024
        self.interest = Interest(len(self.urls))
        self.links = [Link(url, shard, self.interest, self._received, password) for shard, url in enumerate(self.urls)]
        self._stopping = threading.Event()
        self._outgoing: collections.deque[tuple[list[str], t.Any, float]] = collections.deque()
        self._send_wake = threading.Event()
        self._seq = [0] * len(self.links)
        self._handoff: collections.deque[tuple[bytes, bytes, codec.Header]] = collections.deque()
        self._handoff_bytes = 0
        self._handoff_ready = threading.Condition()
        self._last_seq: list[collections.OrderedDict[bytes, int]] = [collections.OrderedDict() for _ in self.links]
        self._count_lock = threading.Lock()  # for counters more than one thread adds to
        self._threads: list[threading.Thread] = []
        self.counters = dict.fromkeys(
            ("sent", "received", "lost", "dropped", "garbage", "duplicates", "unencodable"), 0)
        self._overflow = 0  # publishes not sent because too many waited (added under the accept lock)
        self._unencodable_types: set[str] = set()

    # -- life ------------------------------------------------------------

    def start(self) -> None:
        """Join: watch local subscriptions, connect, and start the threads."""
        self._service._index.listener = self._subscriptions_changed
        self._service.backbone = self
        for target, name in ((self._send_loop, "es-backbone-sender"), (self._inject_loop, "es-backbone-injector")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        for link in self.links:
            link.start()

    def wait_connected(self, timeout: float) -> bool:
        """Wait (up to ``timeout``) for the first attempt to reach each Redis instance; True if all got
        through (the node works, and retries, either way)."""
        deadline = time.monotonic() + timeout
        for link in self.links:
            link.attempted.wait(max(0.0, deadline - time.monotonic()))
        return all(link.ever_connected.is_set() for link in self.links)

    def close(self) -> None:
        """Leave the backbone; local delivery goes on as without one."""
        if self._service.backbone is self:
            self._service.backbone = None
        if self._service._index.listener == self._subscriptions_changed:
            self._service._index.listener = None
        self._stopping.set()
        self._send_wake.set()
        with self._handoff_ready:
            self._handoff_ready.notify_all()
        for thread in self._threads:
            thread.join(5)
        for link in self.links:
            link.close()

    # -- the seam: called by the service ---------------------------------

    def published(self, subjects: list[str], message: t.Any, stamp: float) -> None:
        """A publish this node accepted (called under the service's accept lock, so in accepted order)."""
        if len(self._outgoing) >= OUTGOING_LIMIT:
            self._overflow += 1
            if self._overflow % 10000 == 1:
                log.warning("backbone: %d publishes wait to be sent; not sending this one (%d so far)",
                            OUTGOING_LIMIT, self._overflow)
            return
        self._outgoing.append((subjects, message, stamp))
        if not self._send_wake.is_set():
            self._send_wake.set()

    def stats(self) -> dict[str, t.Any]:
        """Counters (``backbone_*``, never decreasing) and gauges for the service's stats()."""
        counts: dict[str, t.Any] = {f"backbone_{name}": value for name, value in self.counters.items()}
        counts["backbone_lost"] += self._overflow
        counts["backbone_outages"] = sum(link.outages for link in self.links)
        counts.update({
            "backbone_links": len(self.links),
            "backbone_connected": sum(link.connected for link in self.links),
            "backbone_pending": sum(link.unconfirmed() for link in self.links),
            "backbone_subjects": self.interest.subjects(),
            "backbone_catch_all": self.interest.catch_all,
            "backbone_outgoing": len(self._outgoing),
            "backbone_handoff_bytes": self._handoff_bytes,
        })
        return counts

    # -- interest --------------------------------------------------------

    def _subscriptions_changed(self, added: t.Iterable[str], removed: t.Iterable[str], patterns: int) -> None:
        for shard in self.interest.changed(added, removed, patterns):
            self.links[shard].interest_changed()

    # -- sending ---------------------------------------------------------

    def _send_loop(self) -> None:
        outgoing = self._outgoing
        while not self._stopping.is_set():
            self._send_wake.wait()
            self._send_wake.clear()
            while outgoing and not self._stopping.is_set():
                batches: list[list[tuple[bytes, bytes]]] = [[] for _ in self.links]
                for _ in range(min(len(outgoing), SEND_BATCH)):
                    self._encode(*outgoing.popleft(), batches)
                for link, batch in zip(self.links, batches, strict=True):
                    if not batch:
                        continue
                    if link.publish(batch):
                        self.counters["sent"] += len(batch)
                    else:
                        self.counters["lost"] += len(batch)

    def _encode(self, subjects: list[str], message: t.Any, stamp: float, batches: list[list[tuple[bytes, bytes]]]) -> None:
        try:
            packed = codec.encode_message(message)
        except codec.UnencodableError as error:
            self.counters["unencodable"] += 1
            kind = type(message).__name__
            if kind not in self._unencodable_types:
                self._unencodable_types.add(kind)
                log.warning("backbone: a publish to %s was delivered on this node only: %s", subjects[0], error)
            return
        for (shard, name), group in self.interest.route(subjects).items():
            self._seq[shard] += 1
            batches[shard].append((name, codec.encode(self.node_id, self._seq[shard], stamp, group, packed)))

    # -- receiving -------------------------------------------------------

    def _received(self, shard: int, name: bytes, data: bytes) -> None:
        """In a link's reader thread: cheap checks, then the hand-off. Never blocks."""
        if len(data) > self._max_size:
            self._garbage(f"{len(data)} bytes on {name[:80]!r}, more than max_message_size")
            return
        try:
            header = codec.read_header(data)
        except codec.BadMessageError as error:
            self._garbage(f"{error} on {name[:80]!r}")
            return
        if header.node == self.node_id:
            return  # delivered here when it was accepted
        known = self._last_seq[shard]  # only this link's reader thread uses it
        last = known.get(header.node)
        if last is not None and header.seq <= last:
            with self._count_lock:
                self.counters["duplicates"] += 1
            return
        known[header.node] = header.seq
        known.move_to_end(header.node)
        if len(known) > KNOWN_SENDERS:
            known.popitem(last=False)
        with self._handoff_ready:
            if self._handoff_bytes + len(data) > HANDOFF_BYTES:
                self.counters["dropped"] += 1
                if self.counters["dropped"] % 10000 == 1:
                    log.warning("backbone: local subscribers do not keep up; dropped %d events from other nodes so far",
                                self.counters["dropped"])
                return
            self._handoff.append((name, data, header))
            self._handoff_bytes += len(data)
            self._handoff_ready.notify()

    def _inject_loop(self) -> None:
        handoff = self._handoff
        while not self._stopping.is_set():
            with self._handoff_ready:
                while not handoff and not self._stopping.is_set():
                    self._handoff_ready.wait()
                if self._stopping.is_set():
                    return
                name, data, header = handoff.popleft()
                self._handoff_bytes -= len(data)
            try:
                subjects, message = codec.decode_body(data, self._max_subjects, self._max_subject_length)
                if not math.isfinite(header.time):
                    raise codec.BadMessageError("time stamp is not a finite number")
                if any(channel(fold(subject)) != name for subject in subjects):
                    raise codec.BadMessageError("a subject does not belong to the channel it came on")
            except codec.BadMessageError as error:
                self._garbage(f"{error} on {name[:80]!r}")
                continue
            self.counters["received"] += 1
            try:
                self._service.accept_remote(subjects, message, header.time)
            except Exception:  # a bug must not end remote delivery for everyone
                log.exception("backbone: could not queue an event from another node")

    def _garbage(self, what: str) -> None:
        with self._count_lock:
            self.counters["garbage"] += 1
            count = self.counters["garbage"]
        if count <= 10 or count % 1000 == 0:
            log.warning("backbone: dropped a message that is not ours to read (%d so far): %s", count, what)


def start_node(service: _Service, urls: str | list[str], password: str | None = None, connect_timeout: float = 5.0) -> Node:
    """Join ``service`` to the backbone at ``urls``; waits up to ``connect_timeout`` for Redis and warns if
    it is not there yet (the node keeps trying; meanwhile it works as a single Event Service)."""
    node = Node(service, urls, password)
    node.start()
    if not node.wait_connected(connect_timeout):
        log.warning("backbone: not every Redis answered within %.0f s; serving local clients and retrying", connect_timeout)
    return node
