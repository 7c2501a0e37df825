"""When the delivery loop starts its next round of calls, and how long it lingers under load.

The loop works in rounds: it starts a call to every subscriber with events,
then starts the next round once every call of this one has been answered, or
``round_seconds`` after it began, whichever is first. Replies that come early
wait for the round's end, so what arrives meanwhile goes out in one batch.
Rounds start at most every ``gap`` seconds (2 ms): back-to-back publishes
then share calls, to one subscriber or to many, which is what keeps the CPU
per event low under load; an event that comes longer than that after the last
round (say at 200/s), and anything on an idle service, goes out at once. Under
sustained fan-out load (rounds of several calls, each carrying more than one
event on average) rounds start at most every ``linger`` seconds: calls get
fewer and bigger still. A subscriber that does not answer holds up one round
by ``round_seconds`` and nothing after that. Pure: times are passed in.
"""
from __future__ import annotations

__all__ = ["IDLE_ROUND_GAP", "ROUND_GAP", "ROUND_SECONDS", "Rounds"]

#: longest a round of calls holds back the next one
ROUND_SECONDS = 0.001
#: a pause between rounds this long means the load is over: delivery no longer lingers
IDLE_ROUND_GAP = 0.1
#: rounds start at most this often (at most every ``linger``): events closer together share calls
ROUND_GAP = 0.002


class Rounds:
    """The round and linger decision of one delivery loop.

    :param linger: seconds between rounds under load (0: never linger)
    """

    __slots__ = (
        "events",
        "gap",
        "idle_gap",
        "linger",
        "lingering",
        "load",
        "number",
        "pending",
        "round_seconds",
        "started",
    )

    def __init__(self, linger: float, round_seconds: float = ROUND_SECONDS, idle_gap: float = IDLE_ROUND_GAP,
                 gap: float = ROUND_GAP) -> None:
        self.linger = linger
        self.gap = min(gap, linger)
        self.round_seconds = round_seconds
        self.idle_gap = idle_gap
        self.number = 0  #: the current round
        self.pending = 0  #: its calls still unanswered
        self.events = 0  #: events its calls carry
        self.started = float("-inf")  #: when it started
        self.lingering = 0.0  #: the spacing in force: ``linger`` under fan-out load, else ``gap``
        self.load = 1.0  #: events per call, averaged over the last rounds

    def ends(self) -> float:
        """When the current round stops holding back the next one at the latest."""
        return self.started + self.round_seconds

    def next_start(self) -> float:
        """The earliest time the next round may start."""
        return max(self.ends() if self.pending else float("-inf"), self.started + self.lingering)

    def is_open(self, now: float) -> bool:
        """True while the current round has calls in flight and has not run out of time."""
        return bool(self.pending) and now < self.ends()

    def begin(self, now: float) -> int:
        """Start a new round at ``now``; returns its number."""
        if now - self.started > self.idle_gap:
            self.load = 1.0  # a pause ends any load: what comes next is not a backlog
        self.number += 1
        self.pending = self.events = 0
        self.started = now
        return self.number

    def call_started(self, events: int) -> None:
        """A call carrying ``events`` events went out in the current round."""
        self.pending += 1
        self.events += events

    def call_ended(self, number: int) -> None:
        """A call of round ``number`` was answered (or failed)."""
        if number == self.number and self.pending:
            self.pending -= 1

    def calls_started(self) -> None:
        """Every call of the round is out: update the load and decide whether the next round lingers."""
        if self.pending:
            self.load = (self.load + self.events / self.pending) / 2
        # the full linger only for fan-out: a lone subscriber's bigger batches would only delay its events
        self.lingering = self.linger if self.load > 1.5 and self.pending > 1 else self.gap
