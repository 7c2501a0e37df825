"""The Event Service Pyro object: publish, subscribe, subscribeMatch, unsubscribe.

It validates arguments, stamps each publish with one time, matches subjects
through the :class:`~eventservice.subscriptions.SubscriptionIndex` and hands
events to the :class:`~eventservice.delivery.Dispatcher`. Accepting a publish
(stamping, matching, queueing) happens under one short lock, so every
subscriber sees events in one global accepted order; waiting for room in full
queues happens after that lock is released.
"""
from __future__ import annotations

import logging
import threading
import time
import typing as t

from Pyro5 import core, errors
from Pyro5.client import Proxy
from Pyro5.server import expose

from ..core.config import Settings
from ..core.rates import SubjectRates
from ..core.subjects import as_texts
from ..core.subscriptions import SubscriptionIndex
from ..pyro import auth, compat
from .delivery import Dispatcher
from .mailbox import Mailbox
from .patterncheck import PatternChecker

__all__ = ["COSTLY_SUBJECTS", "PARKING", "EventService", "costly_batch", "costly_publish", "subscriber_key"]

log = logging.getLogger(__name__)

#: the backbone node's figures that only grow (the rest of its stats() are gauges)
BACKBONE_COUNTERS = frozenset(f"backbone_{name}" for name in
                              ("sent", "received", "lost", "dropped", "garbage", "duplicates", "unencodable", "outages"))

#: why subscribers are removed, as counted in stats()
REMOVAL_REASONS = ("dead", "timed_out", "unsubscribed", "closed")


class _Parking(threading.local):
    """Set by a thread that serves clients without blocking (the event loop): instead of waiting for room
    in full queues, ``publish`` leaves them in ``full`` and the loop parks the client until there is room."""

    full: list[Mailbox] | None = None


PARKING = _Parking()

#: a publish (or publishBatch) naming more subjects than this is matched off the event loop: its
#: matching may take long (every new subject meets every pattern), and other publishers must not wait
COSTLY_SUBJECTS = 64


def _subject_count(subjects: t.Any) -> int:
    return len(subjects) if isinstance(subjects, (list, tuple)) else 1


def costly_publish(args: t.Sequence[t.Any], kwargs: t.Mapping[str, t.Any]) -> bool:
    """Whether the call ``publish(*args, **kwargs)`` names so many subjects that it should not run on the loop."""
    subjects = args[0] if args else kwargs.get("subjects")
    return _subject_count(subjects) > COSTLY_SUBJECTS


def costly_batch(args: t.Sequence[t.Any], kwargs: t.Mapping[str, t.Any]) -> bool:
    """Whether the call ``publishBatch(*args, **kwargs)`` names so many subjects that it should not run on the loop."""
    items = args[0] if args else kwargs.get("items")
    if not isinstance(items, (list, tuple)):
        return False  # refused at once
    if len(items) > COSTLY_SUBJECTS:
        return True
    return sum(_subject_count(item[0]) for item in items if isinstance(item, (list, tuple)) and item) > COSTLY_SUBJECTS


def subscriber_key(subscriber: t.Any) -> str:
    """The identity of a subscriber: the URI of its Pyro object, as text."""
    return str(subscriber._pyroUri)


class EventService:
    """The Pyro object that decouples publishers from subscribers.

    Only the decorated methods are exposed to Pyro clients.

    :param settings: queue size, full-queue policy, limits (see ``config.Settings``)
    :param authenticator: proves the passphrase to subscriber daemons, when the ES has one
    :param dispatcher: what moves events to subscribers (``delivery.Dispatcher``; tests pass an offline one)
    """

    def __init__(self, settings: Settings | None = None, authenticator: auth.Authenticator | None = None,
                 dispatcher: t.Callable[..., Dispatcher] = Dispatcher) -> None:
        self.settings = settings or Settings()
        self._authenticator = authenticator
        self._index = SubscriptionIndex(
            max_subscriptions=self.settings.max_subscriptions,
            pattern_timeout=self.settings.pattern_timeout,
            cache_size=self.settings.match_cache_size,
            on_pattern_timeout=self._pattern_timed_out,
        )
        self._dispatcher = dispatcher(self.settings, self._make_subscriber_proxy, self._subscriber_dead)
        self._pattern_checker = PatternChecker()
        self._accept_lock = threading.Lock()
        self._membership_lock = threading.Lock()
        self._last_time = 0.0
        self.published = 0
        self.removed = dict.fromkeys(REMOVAL_REASONS, 0)
        self._started = time.monotonic()
        #: the number of client connections served (set by whoever serves them)
        self.connections: t.Callable[[], int] = lambda: 0
        self._rates = SubjectRates() if self.settings.http else None  # per-subject rates for the monitor
        #: the backbone node (server/backbone/node.py) while this ES shares its subjects with others; else None
        self.backbone: t.Any = None

    # -- the classic API ---------------------------------------------------

    @expose
    def publish(self, subjects: str | list[str] | tuple[str, ...], message: t.Any) -> int:
        """Publish ``message`` once per subject; returns the number of events queued.

        All events of one call carry the same time. Blocks while a receiving
        subscriber's queue is full and the policy is to block.
        """
        _refuse_oneway("publish")
        return self._accept([(self._subjects(subjects), message)])

    @expose
    def publishBatch(self, items: list[tuple[t.Any, t.Any]]) -> list[list[t.Any]]:
        """Publish many ``(subjects, message)`` items in order, each as one ``publish``.

        Valid items are published even when others are not; returns one
        ``[index, error type, message]`` per refused item (empty when all
        went through). Used by the pipelined Publisher.
        """
        _refuse_oneway("publishBatch")
        if not isinstance(items, (list, tuple)):
            raise TypeError(f"items must be a list of (subjects, message) pairs, not {type(items).__name__}")
        accepted, refused = [], []
        for index, item in enumerate(items):
            try:
                if not isinstance(item, (list, tuple)) or len(item) != 2:
                    raise TypeError(f"item must be a (subjects, message) pair, not {type(item).__name__}")
                subjects = self._subjects(item[0])
            except (TypeError, ValueError) as error:
                refused.append([index, type(error).__name__, str(error)])
                continue
            accepted.append((subjects, item[1]))
        self._accept(accepted)
        return refused

    @expose
    def subscribe(self, subjects: str | list[str] | tuple[str, ...], subscriber: t.Any) -> None:
        """Subscribe to exact subjects (case-insensitive)."""
        subjects = as_texts(subjects, "subjects", self.settings.max_subject_length, "max_subject_length")
        key = self._join(subscriber)
        with self._membership_lock:
            self._index.add_subjects(key, subjects)
            self._open_mailbox(key, subscriber)

    @expose
    def subscribeMatch(self, subjectPatterns: str | list[str] | tuple[str, ...], subscriber: t.Any) -> None:
        """Subscribe to regex patterns, matched case-insensitively from the subject's start."""
        patterns = as_texts(subjectPatterns, "subjectPatterns", self.settings.max_pattern_length, "max_pattern_length")
        key = self._join(subscriber)
        self._pattern_checker.check(patterns)  # before the ES compiles them: some crash or swamp the compiler
        with self._membership_lock:
            self._index.add_patterns(key, patterns)
            self._open_mailbox(key, subscriber)

    @expose
    def unsubscribe(self, subjects: str | list[str] | tuple[str, ...], subscriber: t.Any) -> None:
        """Remove exact subjects and patterns of these texts; other subscriptions stay."""
        subjects = as_texts(subjects, "subjects", max(self.settings.max_subject_length, self.settings.max_pattern_length),
                            "max_subject_length/max_pattern_length")
        key = self._join(subscriber)
        with self._membership_lock:
            if self._index.remove(key, subjects) and self._dispatcher.close(key):
                self.removed["unsubscribed"] += 1

    # -- beyond the classic API ------------------------------------------

    @expose
    def unsubscribeAll(self, subscriber: t.Any) -> None:
        """Remove every subscription of ``subscriber`` (used by the skeleton when it closes)."""
        self._drop(self._join(subscriber), "closed")

    @expose
    def hasSubscriptions(self, subscriber: t.Any) -> bool:
        """True if ``subscriber`` holds any subscription here (clients use it to notice an ES restart)."""
        subjects, patterns = self._index.subscriptions(self._join(subscriber))
        return bool(subjects or patterns)

    @expose
    def ping(self) -> bool:
        """True; lets clients check that the ES answers."""
        return True

    @expose
    def limits(self) -> dict[str, t.Any]:
        """The limits clients must respect (message size, subject and pattern length, subscriptions)."""
        return {name: getattr(self.settings, name) for name in
                ("max_message_size", "max_subject_length", "max_pattern_length", "max_subscriptions", "queuesize")}

    @expose
    def setQueuePolicy(self, subscriber: t.Any, policy: str, queuesize: int | None = None) -> None:
        """Give ``subscriber`` its own full-queue policy ("block", "drop", "drop-oldest") and queue size.

        ``queuesize`` (None: the ES's default) may not exceed the ES setting
        max_queuesize; a bad value is a ValueError naming it. The subscriber
        must hold a subscription here.
        """
        key = self._join(subscriber)
        with self._membership_lock:
            self._dispatcher.set_policy(key, policy, queuesize)

    @expose
    def stats(self) -> dict[str, dict[str, t.Any]]:
        """{"counters": ..., "gauges": ...} for monitoring; counters never decrease over the ES's life."""
        index = self._index.stats()
        delivery_counters, delivery_gauges = self._dispatcher.stats()
        counters: dict[str, t.Any] = {"published": self.published, **delivery_counters,
                                      "pattern_timeouts": index["pattern_timeouts"]}
        counters.update((f"removed_{reason}", count) for reason, count in self.removed.items())
        counters.update(cache_hits=index["cache_hits"], cache_misses=index["cache_misses"])
        gauges: dict[str, t.Any] = {
            "subscribers": index["subscribers"],
            "subscriptions_exact": index["subjects"],
            "subscriptions_pattern": index["patterns"],
            "queued": delivery_gauges.pop("queued"),
            "deepest_queue": delivery_gauges.pop("deepest_queue"),
            "connections": self.connections(),
            "uptime": time.monotonic() - self._started,
            "cached_subjects": index["cached_subjects"],
            **delivery_gauges,
        }
        backbone = self.backbone
        if backbone is not None:  # the node's figures, split the same way
            for name, value in backbone.stats().items():
                (counters if name in BACKBONE_COUNTERS else gauges)[name] = value
        return {"counters": counters, "gauges": gauges}

    @expose
    def subscribers(self) -> list[dict[str, t.Any]]:
        """One dict per subscriber: uri, subscription counts, queue depth, size and policy, delivered,
        dropped, and the time of its last delivery (epoch seconds, or None)."""
        listing = []
        for mailbox in self._dispatcher.mailboxes():
            subjects, patterns = self._index.subscriptions(mailbox.key)
            listing.append({"uri": mailbox.key, "subjects": len(subjects), "patterns": len(patterns),
                            "queued": len(mailbox.events), "queuesize": mailbox.queuesize, "policy": mailbox.policy,
                            "delivered": mailbox.delivered, "dropped": mailbox.dropped,
                            "last_delivery": mailbox.last_delivery})
        return listing

    def subject_rates(self) -> SubjectRates | None:
        """Per-subject publish rates (a bounded top list) when the monitoring endpoint is on, else None."""
        return self._rates

    # -- internals -------------------------------------------------------

    def _subjects(self, subjects: t.Any) -> list[str]:
        texts = as_texts(subjects, "subjects", self.settings.max_subject_length, "max_subject_length")
        if len(texts) > self.settings.max_subjects_per_publish:
            raise ValueError(f"{len(texts)} subjects in one publish; the limit is "
                             f"{self.settings.max_subjects_per_publish} (setting max_subjects_per_publish)")
        return texts

    def _accept(self, items: list[tuple[list[str], t.Any]]) -> int:
        """Match, then stamp and queue publishes in order; then wait for room in full queues.

        Matching (which may run patterns) happens before the accept lock, so a
        costly publish does not hold up the others; stamping and queueing,
        which fix the order every subscriber sees, happen under it.
        """
        match = self._index.match
        matched = [(subjects, message, [(subject, match(subject)) for subject in subjects]) for subjects, message in items]
        full: list[t.Any] = []
        queued = 0
        post = self._dispatcher.post
        with self._accept_lock:
            if self._rates is not None:
                self._rates.observe(items)
            backbone = self.backbone
            for subjects, message, subject_keys in matched:
                stamp = max(time.time(), self._last_time)  # never backwards within one subscriber's stream
                self._last_time = stamp
                for subject, keys in subject_keys:
                    if keys:
                        queued += post(keys, (subject, message, stamp), full)
                self.published += 1
                if backbone is not None:  # under the lock: other nodes get publishes in accepted order
                    backbone.published(subjects, message, stamp)
        if full:
            parked = PARKING.full
            if parked is not None:
                parked.extend(full)  # the event loop parks this publisher until there is room
            else:
                self._dispatcher.wait_for_room(full)
        return queued

    def accept_remote(self, subjects: list[str], message: t.Any, stamp: float) -> int:
        """Match and queue a publish another node accepted (from the backbone); it is not sent back there.

        Not exposed: only the backbone node in this process calls it, with
        checked subjects. Waits for room like a publisher, so the node's
        bounded hand-off absorbs slow subscribers.
        """
        match = self._index.match
        subject_keys = [(subject, match(subject)) for subject in subjects]
        full: list[t.Any] = []
        queued = 0
        with self._accept_lock:
            for subject, keys in subject_keys:
                if keys:
                    queued += self._dispatcher.post(keys, (subject, message, stamp), full)
        if full:
            self._dispatcher.wait_for_room(full)  # the node's own thread, never the event loop
        return queued

    def _join(self, subscriber: t.Any) -> str:
        if not isinstance(subscriber, Proxy):
            raise TypeError(
                "subscriber must be a Pyro callback object (registered in a daemon) or a proxy to one, "
                f"not {type(subscriber).__name__}"
            )
        methods = subscriber._pyroMethods
        if methods and "event" not in methods and "events" not in methods:
            raise TypeError(f"subscriber {subscriber._pyroUri} does not expose an event(event) method")
        return subscriber_key(subscriber)

    def _open_mailbox(self, key: str, subscriber: Proxy) -> None:
        self._dispatcher.open(key, subscriber._pyroUri)

    def _drop(self, key: str, reason: str) -> None:
        with self._membership_lock:
            self._index.remove_subscriber(key)
            if self._dispatcher.close(key):
                self.removed[reason] += 1

    def _make_subscriber_proxy(self, uri: core.URI) -> Proxy:
        return auth.make_proxy(uri, self._authenticator)

    def _subscriber_dead(self, key: str, error: Exception) -> None:
        log.warning("removing subscriber %s: delivery failed: %s: %s", key, type(error).__name__, error)
        self._drop(key, "timed_out" if isinstance(error, errors.TimeoutError) else "dead")

    def _pattern_timed_out(self, pattern: str, keys: frozenset[str]) -> None:
        log.warning("pattern %r took longer than %.3fs on one subject; removed from subscribers %s",
                    pattern, self.settings.pattern_timeout, ", ".join(sorted(keys)))
        with self._membership_lock:
            for key in keys:
                if not any(self._index.subscriptions(key)) and self._dispatcher.close(key):
                    self.removed["unsubscribed"] += 1

    def deliver_from(self, loop: t.Any) -> None:
        """Deliver from ``loop`` (an ``EventLoop``) instead of a thread of the service's own."""
        loop.drive(self._dispatcher)

    def close(self) -> None:
        """Stop delivering and forget every subscription."""
        self._dispatcher.stop()
        self._pattern_checker.close()


def _refuse_oneway(method: str) -> None:
    """A client may mark any method oneway; Pyro5 then runs each call in a thread of its own.

    Publishing may block (full queues), so oneway publishes would pile up
    threads without bound: they are refused (the pipelined Publisher is the
    fast path that keeps order and reports errors).
    """
    if compat.in_oneway_call():
        log.warning("refused a oneway %s call: publish synchronously or use the pipelined Publisher", method)
        raise errors.PyroError(f"{method} cannot be called oneway")
