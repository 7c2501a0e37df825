"""Per-subject publish rates for a bounded number of subjects (the status page's "busiest subjects").

The Event Service calls :meth:`SubjectRates.observe` once per accepted publish
call; it only counts subjects in a dict, so the publish path pays a few hundred
nanoseconds. A monitor thread calls :meth:`SubjectRates.tick` about once a
second: it folds the counts of that interval into smoothed rates (an
exponentially weighted average) and keeps only the busiest subjects.

Memory stays bounded however many subjects are published: an interval counts at
most ``capacity`` distinct subjects (the rest are counted together as
"other"), and at most ``keep`` smoothed rates survive a tick. Messages are never
looked at. Pure: no threads, no clock of its own, no I/O.
"""
from __future__ import annotations

import heapq
import math
import threading
import typing as t

__all__ = ["SubjectRates"]


class SubjectRates:
    """Bounded per-subject event rates.

    :param capacity: most distinct subjects counted per interval (more: counted as "other")
    :param keep: most subjects whose smoothed rate is kept between intervals
    :param halflife: seconds after which an interval's rate weighs half (smoothing)
    """

    def __init__(self, capacity: int = 10000, keep: int = 100, halflife: float = 2.0) -> None:
        if capacity < 1 or keep < 1 or not halflife > 0:
            raise ValueError(f"capacity and keep must be at least 1 and halflife above 0, got {capacity}, {keep}, {halflife}")
        self.capacity = capacity
        self.keep = keep
        self.halflife = halflife
        self._lock = threading.Lock()  # observe (publish path) against the swap in tick
        self._rates_lock = threading.Lock()  # tick against top (monitor threads only)
        self._counts: dict[str, int] = {}
        self._overflow = 0
        self._rates: dict[str, float] = {}
        self._other_rate = 0.0
        self._last_tick: float | None = None

    def observe(self, publishes: t.Iterable[tuple[t.Sequence[str], t.Any]]) -> None:
        """Count the subjects of accepted publishes: ``(subjects, message)`` pairs; messages are ignored."""
        with self._lock:
            counts = self._counts
            capacity = self.capacity
            for subjects, _ in publishes:
                for subject in subjects:
                    count = counts.get(subject)
                    if count is not None:
                        counts[subject] = count + 1
                    elif len(counts) < capacity:
                        counts[subject] = 1
                    else:
                        self._overflow += 1

    def tick(self, now: float) -> None:
        """Fold the counts since the previous tick into the smoothed rates; ``now`` in seconds (monotonic)."""
        with self._lock:
            counts, self._counts = self._counts, {}
            overflow, self._overflow = self._overflow, 0
        with self._rates_lock:
            self._fold(counts, overflow, now)

    def _fold(self, counts: dict[str, int], overflow: int, now: float) -> None:
        last, self._last_tick = self._last_tick, now
        # the first tick (or a clock that did not move) counts its interval as one second
        elapsed = 1.0 if last is None or now <= last else now - last
        weight = 1.0 - math.pow(0.5, elapsed / self.halflife)  # share of the new interval in the average
        rates = self._rates
        for subject in rates.keys() - counts.keys():
            rates[subject] *= 1.0 - weight
        for subject, count in counts.items():
            previous = rates.get(subject)  # a subject new to the list starts at its rate, not from 0
            rates[subject] = count / elapsed if previous is None else previous + (count / elapsed - previous) * weight
        self._other_rate += (overflow / elapsed - self._other_rate) * weight
        if len(rates) > self.keep:
            busiest = heapq.nlargest(self.keep, rates.items(), key=lambda item: item[1])
            self._rates = rates = dict(busiest)
        for subject in [subject for subject, rate in rates.items() if rate < 1e-3]:
            del rates[subject]

    def top(self, count: int = 10) -> list[tuple[str, float]]:
        """The ``count`` busiest subjects as (subject, events per second), busiest first."""
        with self._rates_lock:
            return heapq.nlargest(count, self._rates.items(), key=lambda item: item[1])

    def other_rate(self) -> float:
        """Events per second of subjects that were not counted one by one (beyond ``capacity``)."""
        return self._other_rate

    def tracked(self) -> int:
        """How many subjects have a rate now (at most ``keep``)."""
        return len(self._rates)
