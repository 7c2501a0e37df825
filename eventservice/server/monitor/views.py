"""What the monitor reads from the Event Service, in one shape whatever the service's version.

``stats()`` returns ``{"counters": {...}, "gauges": {...}}``; older services
returned one flat dict, which :func:`split_stats` sorts into the same two
parts. ``subscribers()`` lists the subscribers; for a service without it,
:func:`subscriber_list` reads what the service keeps and says that the list is
partial. Nothing here ever reads a message.
"""
from __future__ import annotations

import logging
import typing as t

__all__ = ["COUNTERS", "split_stats", "subscriber_list"]

log = logging.getLogger(__name__)

#: counters of stats() (never decreasing); the flat stats() of older services had some of them
COUNTERS = ("published", "delivered", "dropped", "delivery_timeouts", "pattern_timeouts",
            "removed_dead", "removed_timed_out", "removed_unsubscribed", "removed_closed")
_FLAT_COUNTERS = frozenset(COUNTERS) | {"cache_hits", "cache_misses"}
_FLAT_GAUGE_NAMES = {"subjects": "subscriptions_exact", "patterns": "subscriptions_pattern"}


def split_stats(raw: t.Mapping[str, t.Any]) -> tuple[dict[str, t.Any], dict[str, t.Any]]:
    """(counters, gauges) from a ``stats()`` result, in either its current or its older flat shape."""
    counters, gauges = raw.get("counters"), raw.get("gauges")
    if isinstance(counters, dict) and isinstance(gauges, dict):
        return dict(counters), dict(gauges)
    counters, gauges = {}, {}
    for name, value in raw.items():
        if name in _FLAT_COUNTERS:
            counters[name] = value
        else:
            gauges[_FLAT_GAUGE_NAMES.get(name, name)] = value
    return counters, gauges


def subscriber_list(service: t.Any) -> tuple[list[dict[str, t.Any]], str | None]:
    """(one dict per subscriber, None) from ``service.subscribers()``; or what is known and a note why it is partial."""
    method = getattr(service, "subscribers", None)
    if callable(method):
        return list(method()), None
    note = "this Event Service has no subscribers(): last_delivery is unknown and counts are per connection"
    try:  # an older service: read its dispatcher's mailboxes and its subscription index
        dispatcher, index, settings = service._dispatcher, service._index, service.settings
        with dispatcher._pool_lock:
            mailboxes = list(dispatcher._mailboxes.values())
        entries = []
        for mailbox in mailboxes:
            subjects, patterns = index.subscriptions(mailbox.key)
            entries.append({
                "uri": mailbox.key, "subjects": len(subjects), "patterns": len(patterns),
                "queued": len(mailbox.events), "queuesize": settings.queuesize,
                "policy": "block" if settings.blockqueue else "drop",
                "delivered": mailbox.delivered, "dropped": mailbox.dropped, "last_delivery": None,
            })
        return entries, note
    except (AttributeError, TypeError) as error:
        log.info("cannot list subscribers of this Event Service: %s", error)
        return [], "this Event Service cannot list its subscribers"
