"""Which backbone channels a node listens to and where a subject is published: pure, no I/O.

Exact subscriptions are routed by interest: a node subscribes the channel of a
folded subject while it has local subscribers for it (reference-counted). Regex
patterns cannot be pushed to Redis, so a node holding any pattern subscribes
one catch-all pattern instead and matches locally; it then drops its exact
channels, so each message reaches it once. :class:`Interest` keeps the wanted
state and hands each Redis link the commands that move what it subscribed
towards it, in batches, additions before removals (so no event falls into a
gap; the doubles such a switch may cause are dropped by sequence number).

Subjects are spread over several independent Redis instances by a stable hash
of the folded subject (jump consistent hash over BLAKE2b; not Python's
``hash()``, which differs between processes).
"""
from __future__ import annotations

import collections.abc as c
import hashlib
import threading

from ...core.subjects import fold

__all__ = ["CATCH_ALL", "CHANNEL_PREFIX", "Command", "Interest", "channel", "shard_of"]

#: every backbone channel is this prefix plus a folded subject, UTF-8
CHANNEL_PREFIX = b"eventservice:"
#: the pattern a node holding regex subscriptions PSUBSCRIBEs
CATCH_ALL = CHANNEL_PREFIX + b"*"
#: most channels in one SUBSCRIBE/UNSUBSCRIBE command
BATCH = 1000
#: subjects whose route is remembered (the sender's cache; cleared when full)
ROUTE_CACHE = 10000

Command = tuple[str, list[bytes]]


def channel(folded: str) -> bytes:
    """The backbone channel of a folded subject."""
    return CHANNEL_PREFIX + folded.encode("utf-8", "surrogatepass")


def shard_of(folded: str, shards: int) -> int:
    """The Redis instance (0 .. shards-1) that carries ``folded``; the same in every process."""
    if shards == 1:
        return 0
    key = int.from_bytes(hashlib.blake2b(folded.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "big")
    return _jump_hash(key, shards)


def _jump_hash(key: int, buckets: int) -> int:
    """Lamping and Veach's jump consistent hash: adding an instance moves only 1/n of the subjects."""
    bucket, jump = -1, 0
    while jump < buckets:
        bucket = jump
        key = (key * 2862933555777941757 + 1) & 0xFFFFFFFFFFFFFFFF
        jump = int((bucket + 1) * (float(1 << 31) / float((key >> 33) + 1)))
    return bucket


class _Shard:
    __slots__ = ("catch_all", "subscribed", "wanted")

    def __init__(self) -> None:
        self.wanted: set[bytes] = set()  # channels with local interest
        self.subscribed: set[bytes] = set()  # channels the link was told to subscribe
        self.catch_all = False  # the link was told to PSUBSCRIBE CATCH_ALL


class Interest:
    """Local interest (reference counts per folded subject, a pattern count) as Redis commands per shard.

    Thread-safe: the subscription index reports changes from the subscribing
    threads; each link's thread asks for its commands with :meth:`commands`.
    """

    def __init__(self, shards: int = 1, batch: int = BATCH) -> None:
        if shards < 1:
            raise ValueError("shards must be 1 or more")
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}
        self._patterns = 0
        self._shards = [_Shard() for _ in range(shards)]
        self._batch = batch
        self._routes: dict[str, tuple[str, int, bytes]] = {}  # subject -> (folded, shard, channel), bounded

    @property
    def shards(self) -> int:
        return len(self._shards)

    def changed(self, added: c.Iterable[str] = (), removed: c.Iterable[str] = (), patterns: int = 0) -> set[int]:
        """Record local subscribers gained and lost (folded subjects, one entry per subscriber) and
        the change in pattern subscriptions; returns the shards whose commands changed."""
        dirty: set[int] = set()
        with self._lock:
            for subject in added:
                count = self._counts.get(subject, 0)
                self._counts[subject] = count + 1
                if not count:
                    dirty.add(self._want(subject, True))
            for subject in removed:
                count = self._counts.get(subject, 0) - 1
                if count > 0:
                    self._counts[subject] = count
                elif count == 0:
                    del self._counts[subject]
                    dirty.add(self._want(subject, False))
            before = self._patterns > 0
            self._patterns = max(0, self._patterns + patterns)
            if (self._patterns > 0) != before:
                dirty.update(range(len(self._shards)))
        return dirty

    def _want(self, subject: str, wanted: bool) -> int:
        index = shard_of(subject, len(self._shards))
        name = channel(subject)
        if wanted:
            self._shards[index].wanted.add(name)
        else:
            self._shards[index].wanted.discard(name)
        return index

    @property
    def catch_all(self) -> bool:
        """True while the node holds any pattern subscription."""
        with self._lock:
            return self._patterns > 0

    def subjects(self) -> int:
        """How many folded subjects have local subscribers."""
        with self._lock:
            return len(self._counts)

    def commands(self, shard: int) -> list[Command]:
        """The commands that bring ``shard``'s link from what it was told to what is wanted.

        The link must send them all, in order; they count as sent from now on.
        Additions come first, so switching between exact channels and the
        catch-all leaves no gap.
        """
        with self._lock:
            state = self._shards[shard]
            catch_all = self._patterns > 0
            wanted = set() if catch_all else state.wanted
            result: list[Command] = []
            if catch_all and not state.catch_all:
                result.append(("PSUBSCRIBE", [CATCH_ALL]))
            result += self._batched("SUBSCRIBE", wanted - state.subscribed)
            result += self._batched("UNSUBSCRIBE", state.subscribed - wanted)
            if state.catch_all and not catch_all:
                result.append(("PUNSUBSCRIBE", [CATCH_ALL]))
            state.subscribed = set(wanted)
            state.catch_all = catch_all
            return result

    def reset(self, shard: int) -> None:
        """The link lost its connection: it holds no subscription any more (resubscribe everything)."""
        with self._lock:
            state = self._shards[shard]
            state.subscribed = set()
            state.catch_all = False

    def _batched(self, command: str, channels: set[bytes]) -> list[Command]:
        ordered = sorted(channels)
        return [(command, ordered[start:start + self._batch]) for start in range(0, len(ordered), self._batch)]

    def route(self, subjects: c.Iterable[str]) -> dict[tuple[int, bytes], list[str]]:
        """Subjects of one publish grouped by (shard, channel): spellings that fold alike share one."""
        known = self._routes
        routes: dict[tuple[int, bytes], list[str]] = {}
        for subject in subjects:
            route = known.get(subject)
            if route is None:
                if len(known) >= ROUTE_CACHE:
                    known.clear()
                folded = fold(subject)
                route = known[subject] = (folded, shard_of(folded, len(self._shards)), channel(folded))
            routes.setdefault((route[1], route[2]), []).append(subject)
        return routes
