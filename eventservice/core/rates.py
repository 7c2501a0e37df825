"""Per-subject publish rates for a bounded number of subjects (the status page's "busiest subjects").

The Event Service calls :meth:`SubjectRates.observe` once per accepted publish
call; it only counts subjects in a dict (of a large batch, an even sample of
them), so the publish path pays well under a microsecond per call. A monitor thread calls :meth:`SubjectRates.tick` about once a
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
import random
import threading
import typing as t

__all__ = ["SubjectRates"]


class SubjectRates:
    """Bounded per-subject event rates.

    :param capacity: most distinct subjects counted per interval (more: counted as "other")
    :param keep: most subjects whose smoothed rate is kept between intervals
    :param halflife: seconds after which an interval's rate weighs half (smoothing)
    :param sample: most publishes of one call counted one by one (more: an even sample of them)
    :param seed: seeds the sampling's random start (tests)
    """

    def __init__(self, capacity: int = 10000, keep: int = 100, halflife: float = 2.0, sample: int = 32,
                 seed: int | None = None) -> None:
        if capacity < 1 or keep < 1 or sample < 1 or not halflife > 0:
            raise ValueError("capacity, keep and sample must be at least 1 and halflife above 0, "
                             f"got {capacity}, {keep}, {sample}, {halflife}")
        self.capacity = capacity
        self.keep = keep
        self.halflife = halflife
        self.sample = sample
        self._random = random.Random(seed).random
        self._lock = threading.Lock()  # observe (publish path) against the swap in tick
        self._rates_lock = threading.Lock()  # tick against top (monitor threads only)
        self._counts: dict[str, float] = {}
        self._overflow = 0.0
        self._rates: dict[str, float] = {}
        self._other_rate = 0.0
        self._last_tick: float | None = None

    def observe(self, publishes: t.Sequence[tuple[t.Sequence[str], t.Any]]) -> None:
        """Count the subjects of accepted publishes: ``(subjects, message)`` pairs; messages are ignored.

        Up to ``sample`` publishes are counted one by one. Of a longer batch (the
        pipelined Publisher sends hundreds per call) every k-th publish from a
        random start is counted k times (k = len // sample): an unbiased
        estimate for a fraction of the cost.
        """
        weight = 1
        if len(publishes) > self.sample:
            weight = len(publishes) // self.sample  # every item is counted with probability 1/weight
            publishes = publishes[int(self._random() * weight)::weight]
        with self._lock:
            counts = self._counts
            capacity = self.capacity
            for subjects, _ in publishes:
                for subject in subjects:
                    count = counts.get(subject)
                    if count is not None:
                        counts[subject] = count + weight
                    elif len(counts) < capacity:
                        counts[subject] = weight
                    else:
                        self._overflow += weight

    def tick(self, now: float) -> None:
        """Fold the counts since the previous tick into the smoothed rates; ``now`` in seconds (monotonic)."""
        with self._lock:
            counts, self._counts = self._counts, {}
            overflow, self._overflow = self._overflow, 0.0
        with self._rates_lock:
            self._fold(counts, overflow, now)

    def _fold(self, counts: dict[str, float], overflow: float, now: float) -> None:
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
