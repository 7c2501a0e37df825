"""``es --stats-interval S``: one log line of the ES's figures every S seconds.

The line shows every counter with its growth since the previous line, then
the gauges, so an operator reading the log sees rates and levels at once:

    stats: published=1200(+120) delivered=2400(+240) dropped=0 ... | subscribers=2 queued=0 ...

It reads ``EventService.stats()`` through a callable, ``{"counters": {...},
"gauges": {...}}``; a flat dict (older services) is logged as gauges.
"""
from __future__ import annotations

import collections.abc as c
import logging
import threading
import typing as t

__all__ = ["StatsLogger", "format_stats"]

log = logging.getLogger(__name__)


def _number(value: t.Any) -> str:
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value)


def format_stats(stats: c.Mapping[str, t.Any], previous: c.Mapping[str, t.Any] | None = None) -> str:
    """One line: counters (with growth since ``previous``'s counters, when given), then gauges."""
    if isinstance(stats.get("counters"), c.Mapping) and isinstance(stats.get("gauges"), c.Mapping):
        counters, gauges = stats["counters"], stats["gauges"]
    else:
        counters, gauges = {}, stats
    before = (previous or {}).get("counters") or {}
    parts = []
    for name, value in counters.items():
        growth = value - before[name] if isinstance(before.get(name), (int, float)) else None
        parts.append(f"{name}={_number(value)}" + (f"(+{_number(growth)})" if growth else ""))
    text = " ".join(parts)
    gauge_text = " ".join(f"{name}={_number(value)}" for name, value in gauges.items()
                          if isinstance(value, (int, float)))
    return "stats: " + (f"{text} | {gauge_text}" if text else gauge_text)


class StatsLogger:
    """A daemon thread logging ``format_stats(stats())`` at INFO every ``interval`` seconds."""

    def __init__(self, stats: c.Callable[[], c.Mapping[str, t.Any]], interval: float) -> None:
        if not interval > 0:
            raise ValueError(f"stats interval must be greater than 0, got {interval!r}")
        self._stats = stats
        self._interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> StatsLogger:
        """Start logging in a daemon thread; returns self."""
        self._thread = threading.Thread(target=self._run, name="es-statslog", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop logging (the thread ends at its next wake-up; nothing waits for it)."""
        self._stop.set()

    def _run(self) -> None:
        previous: c.Mapping[str, t.Any] | None = None
        while not self._stop.wait(self._interval):
            try:
                current = self._stats()
                log.info("%s", format_stats(current, previous))
                previous = current
            except Exception:  # a monitoring line must never take the service down
                log.exception("could not read the Event Service's stats")
