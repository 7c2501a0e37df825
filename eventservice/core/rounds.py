"""When the delivery loop starts its next round of calls, and how long it lingers under load.

The loop works in rounds: it starts a call to every subscriber with events,
then starts the next round once every call of this one has been answered, or
``round_seconds`` after it began, whichever is first. Replies that come early
wait for the round's end, so what arrives meanwhile goes out in one batch.
Under sustained fan-out load (rounds of several calls, each carrying more
than one event on average) rounds also start at most every ``linger``
seconds: calls get fewer and bigger, which keeps the CPU per event low; an
idle service delivers at once. A wide round (``wide`` calls or more) keeps
the next one at most ``wide_linger`` away even while calls carry one event
each: back-to-back publishes to many subscribers then share calls, and
events further apart than that (say 200/s) are not held at all. A subscriber that does not answer holds up one
round by ``round_seconds`` and nothing after that. Pure: times are passed in.
"""
from __future__ import annotations

__all__ = ["IDLE_ROUND_GAP", "ROUND_SECONDS", "WIDE_LINGER", "WIDE_ROUND", "Rounds"]

#: longest a round of calls holds back the next one
ROUND_SECONDS = 0.001
#: a pause between rounds this long means the load is over: delivery no longer lingers
IDLE_ROUND_GAP = 0.1
#: a round of this many calls or more is wide: the next one waits up to WIDE_LINGER (at most ``linger``)
WIDE_ROUND = 8
WIDE_LINGER = 0.002


class Rounds:
    """The round and linger decision of one delivery loop.

    :param linger: seconds between rounds under load (0: never linger)
    """

    __slots__ = (
        "events",
        "idle_gap",
        "linger",
        "lingering",
        "load",
        "number",
        "pending",
        "round_seconds",
        "started",
        "wide",
        "wide_linger",
    )

    def __init__(self, linger: float, round_seconds: float = ROUND_SECONDS, idle_gap: float = IDLE_ROUND_GAP,
                 wide: int = WIDE_ROUND, wide_linger: float = WIDE_LINGER) -> None:
        self.linger = linger
        self.wide = wide
        self.wide_linger = min(wide_linger, linger)
        self.round_seconds = round_seconds
        self.idle_gap = idle_gap
        self.number = 0  #: the current round
        self.pending = 0  #: its calls still unanswered
        self.events = 0  #: events its calls carry
        self.started = float("-inf")  #: when it started
        self.lingering = 0.0  #: the spacing in force: ``linger`` under load, else 0
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
        # a lone subscriber keeps up without lingering, which would only delay its events
        if self.load > 1.5 and self.pending > 1:
            self.lingering = self.linger
        elif self.pending >= self.wide:
            self.lingering = self.wide_linger
        else:
            self.lingering = 0.0
