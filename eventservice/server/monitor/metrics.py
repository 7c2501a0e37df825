"""The Prometheus exposition of ``stats()``, built with prometheus_client at scrape time.

Counters become counters (``eventservice_events_published_total``, ...), gauges
gauges, each with HELP and TYPE. Labels take only a few fixed values (the
reason a subscriber was removed, the kind of subscription): never one per
subject or per subscriber, whose number has no bound. prometheus_client is the
optional extra ``eventservice[monitoring]``; without it /metrics says so.
"""
from __future__ import annotations

import re
import typing as t

__all__ = ["CONTENT_TYPE", "available", "exposition"]

try:
    from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
    from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily
    _AVAILABLE = True
except ImportError:  # the optional extra is not installed
    _AVAILABLE = False

#: the classic text format, which every Prometheus version scrapes
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: stats() counter -> (metric name without _total, help, (label name, label value) or None)
_COUNTERS: dict[str, tuple[str, str, tuple[str, str] | None]] = {
    "published": ("eventservice_events_published", "Publishes accepted (one per publish call, however many subjects).", None),
    "delivered": ("eventservice_events_delivered", "Events delivered to subscribers.", None),
    "dropped": ("eventservice_events_dropped", "Events dropped by a full queue's drop policy.", None),
    "delivery_timeouts": ("eventservice_delivery_timeouts", "Deliveries that ran past the delivery timeout.", None),
    "pattern_timeouts": ("eventservice_pattern_timeouts", "Patterns removed for running out of matching time.", None),
    "removed_dead": ("eventservice_subscribers_removed", "Subscribers removed, by reason.", ("reason", "dead")),
    "removed_timed_out": ("eventservice_subscribers_removed", "Subscribers removed, by reason.", ("reason", "timed_out")),
    "removed_unsubscribed": ("eventservice_subscribers_removed", "Subscribers removed, by reason.", ("reason", "unsubscribed")),
    "removed_closed": ("eventservice_subscribers_removed", "Subscribers removed, by reason.", ("reason", "closed")),
    "cache_hits": ("eventservice_match_cache_hits", "Subjects matched from the match cache.", None),
    "cache_misses": ("eventservice_match_cache_misses", "Subjects matched without the match cache.", None),
}
#: stats() gauge -> (metric name, help, (label name, label value) or None)
_GAUGES: dict[str, tuple[str, str, tuple[str, str] | None]] = {
    "subscribers": ("eventservice_subscribers", "Subscribers holding a subscription.", None),
    "subscriptions_exact": ("eventservice_subscriptions", "Subscriptions, by kind.", ("kind", "exact")),
    "subscriptions_pattern": ("eventservice_subscriptions", "Subscriptions, by kind.", ("kind", "pattern")),
    "queued": ("eventservice_queued_events", "Events waiting in subscriber queues.", None),
    "deepest_queue": ("eventservice_deepest_queue_events", "Events in the fullest subscriber queue.", None),
    "connections": ("eventservice_connections", "Client connections served now.", None),
    "uptime": ("eventservice_uptime_seconds", "Seconds since the Event Service started.", None),
}


def available() -> bool:
    """True when prometheus_client is installed."""
    return _AVAILABLE


def _number(value: t.Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _metric_name(name: str) -> str:
    return "eventservice_" + re.sub(r"[^a-zA-Z0-9_]", "_", name).lower()


class _StatsCollector:
    """Reads the counters and gauges when Prometheus scrapes, never in between."""

    def __init__(self, read: t.Callable[[], tuple[dict[str, t.Any], dict[str, t.Any], str]]) -> None:
        self._read = read

    def describe(self) -> list[t.Any]:
        return []  # the names depend on the service's stats(); nothing to check at registration

    def collect(self) -> t.Iterator[t.Any]:
        counters, gauges, version = self._read()
        yield from _families(counters, _COUNTERS, CounterMetricFamily, "Counter {} of the Event Service's stats().")
        yield from _families(gauges, _GAUGES, GaugeMetricFamily, "Gauge {} of the Event Service's stats().")
        info = GaugeMetricFamily("eventservice_build_info", "The Event Service's version (value always 1).", labels=["version"])
        info.add_metric([version], 1)
        yield info


def _families(values: dict[str, t.Any], known: dict[str, tuple[str, str, tuple[str, str] | None]],
              family: t.Any, generic_help: str) -> t.Iterator[t.Any]:
    built: dict[str, t.Any] = {}
    for name, raw in values.items():
        value = _number(raw)
        if value is None:
            continue
        metric, help_text, label = known.get(name, (_metric_name(name), generic_help.format(name), None))
        if metric not in built:
            built[metric] = family(metric, help_text, labels=[label[0]] if label else None)
        if label:
            built[metric].add_metric([label[1]], value)
        else:
            built[metric].add_metric([], value)
    yield from built.values()


class Exposition:
    """A registry holding the stats collector and the process collector (memory, CPU, open files)."""

    def __init__(self, read: t.Callable[[], tuple[dict[str, t.Any], dict[str, t.Any], str]]) -> None:
        if not _AVAILABLE:
            raise RuntimeError("prometheus_client is not installed: pip install 'eventservice[monitoring]'")
        self._registry = CollectorRegistry(auto_describe=False)
        self._registry.register(_StatsCollector(read))
        ProcessCollector(registry=self._registry)

    def render(self) -> bytes:
        """The exposition text of every metric, read now."""
        return generate_latest(self._registry)


def exposition(read: t.Callable[[], tuple[dict[str, t.Any], dict[str, t.Any], str]]) -> Exposition | None:
    """An :class:`Exposition`, or None without prometheus_client."""
    return Exposition(read) if available() else None
