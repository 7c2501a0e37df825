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

from Pyro5 import core
from Pyro5.client import Proxy
from Pyro5.server import expose

from . import auth
from .config import Settings
from .delivery import Dispatcher
from .subscriptions import SubscriptionIndex

__all__ = ["EventService", "subscriber_key"]

log = logging.getLogger("eventservice.service")


def _as_texts(value: t.Any, what: str, limit: int) -> list[str]:
    """One str or a list/tuple of str, validated; raises TypeError/ValueError naming the problem."""
    texts = [value] if isinstance(value, str) else value
    if not isinstance(texts, (list, tuple)):
        raise TypeError(f"{what} must be a str or a list/tuple of str, not {type(value).__name__}")
    if not texts:
        raise ValueError(f"{what} must not be empty")
    for text in texts:
        if not isinstance(text, str):
            raise TypeError(f"each of {what} must be a str, not {type(text).__name__} ({text!r:.60})")
        if not text:
            raise ValueError(f"{what} must not contain an empty string")
        if len(text) > limit:
            raise ValueError(f"{what[:-1] if what.endswith('s') else what} of {len(text)} characters is longer than the limit of {limit}")
    return list(texts)


def subscriber_key(subscriber: t.Any) -> str:
    """The identity of a subscriber: the URI of its Pyro object, as text."""
    return str(subscriber._pyroUri)


class EventService:
    """The Pyro object that decouples publishers from subscribers.

    Only the decorated methods are exposed to Pyro clients.

    :param settings: queue size, full-queue policy, limits (see ``config.Settings``)
    :param authenticator: proves the passphrase to subscriber daemons, when the ES has one
    """

    def __init__(self, settings: Settings | None = None, authenticator: auth.Authenticator | None = None) -> None:
        self.settings = settings or Settings()
        self._authenticator = authenticator
        self._index = SubscriptionIndex(
            max_subscriptions=self.settings.max_subscriptions,
            pattern_timeout=self.settings.pattern_timeout,
            cache_size=self.settings.match_cache_size,
            on_pattern_timeout=self._pattern_timed_out,
        )
        self._dispatcher = Dispatcher(self.settings, self._make_subscriber_proxy, self._subscriber_dead)
        self._accept_lock = threading.Lock()
        self._membership_lock = threading.Lock()
        self._last_time = 0.0
        self.published = 0

    # -- the classic API ---------------------------------------------------

    @expose
    def publish(self, subjects: str | list[str] | tuple[str, ...], message: t.Any) -> int:
        """Publish ``message`` once per subject; returns the number of events queued.

        All events of one call carry the same time. Blocks while a receiving
        subscriber's queue is full and the policy is to block.
        """
        subjects = _as_texts(subjects, "subjects", self.settings.max_subject_length)
        full = []
        queued = 0
        with self._accept_lock:
            stamp = max(time.time(), self._last_time)  # never backwards within one subscriber's stream
            self._last_time = stamp
            for subject in subjects:
                keys = self._index.match(subject)
                if not keys:
                    continue
                event = (subject, message, stamp)
                post = self._dispatcher.post
                for key in keys:
                    mailbox = post(key, event)
                    if mailbox is not None:
                        full.append(mailbox)
                queued += len(keys)
            self.published += 1
        if full:
            self._dispatcher.wait_for_room(full)
        return queued

    @expose
    def subscribe(self, subjects: str | list[str] | tuple[str, ...], subscriber: t.Any) -> None:
        """Subscribe to exact subjects (case-insensitive)."""
        subjects = _as_texts(subjects, "subjects", self.settings.max_subject_length)
        key = self._join(subscriber)
        with self._membership_lock:
            self._index.add_subjects(key, subjects)
            self._open_mailbox(key, subscriber)

    @expose
    def subscribeMatch(self, subjectPatterns: str | list[str] | tuple[str, ...], subscriber: t.Any) -> None:
        """Subscribe to regex patterns, matched case-insensitively from the subject's start."""
        patterns = _as_texts(subjectPatterns, "subjectPatterns", self.settings.max_pattern_length)
        key = self._join(subscriber)
        with self._membership_lock:
            self._index.add_patterns(key, patterns)
            self._open_mailbox(key, subscriber)

    @expose
    def unsubscribe(self, subjects: str | list[str] | tuple[str, ...], subscriber: t.Any) -> None:
        """Remove exact subjects and patterns of these texts; other subscriptions stay."""
        subjects = _as_texts(subjects, "subjects", max(self.settings.max_subject_length, self.settings.max_pattern_length))
        key = self._join(subscriber)
        with self._membership_lock:
            if self._index.remove(key, subjects):
                self._dispatcher.close(key)

    # -- beyond the classic API ------------------------------------------

    @expose
    def unsubscribeAll(self, subscriber: t.Any) -> None:
        """Remove every subscription of ``subscriber`` (used by the skeleton when it closes)."""
        self._drop(self._join(subscriber))

    @expose
    def ping(self) -> bool:
        """True; lets clients check that the ES answers."""
        return True

    @expose
    def stats(self) -> dict[str, t.Any]:
        """Counts for monitoring: subscribers, subjects, patterns, cache, queues, drops."""
        counts: dict[str, t.Any] = {"published": self.published}
        counts.update(self._index.stats())
        counts.update(self._dispatcher.stats())
        return counts

    # -- internals -------------------------------------------------------

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
        self._dispatcher.open(key, subscriber._pyroUri, "events" in subscriber._pyroMethods)

    def _drop(self, key: str) -> None:
        with self._membership_lock:
            self._index.remove_subscriber(key)
            self._dispatcher.close(key)

    def _make_subscriber_proxy(self, uri: core.URI) -> Proxy:
        return auth.make_proxy(uri, self._authenticator)

    def _subscriber_dead(self, key: str, error: Exception) -> None:
        log.warning("removing subscriber %s: delivery failed: %s: %s", key, type(error).__name__, error)
        self._drop(key)

    def _pattern_timed_out(self, pattern: str, keys: frozenset[str]) -> None:
        log.warning("pattern %r took longer than %.3fs on one subject; removed from subscribers %s",
                    pattern, self.settings.pattern_timeout, ", ".join(sorted(keys)))
        with self._membership_lock:
            for key in keys:
                if not any(self._index.subscriptions(key)):
                    self._dispatcher.close(key)

    def close(self) -> None:
        """Stop delivering and forget every subscription."""
        self._dispatcher.stop()
