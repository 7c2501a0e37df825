"""The Event value and how it crosses the wire.

An ``Event`` is what a subscriber receives: the subject as published, the
message, and the time the Event Service accepted the publish. How it
crosses the wire is ``pyro.serialization``'s business.
"""
from __future__ import annotations

import time
import typing as t

__all__ = ["SERIALIZED_CLASS", "Event"]

#: the ``__class__`` tag events carry on the wire
SERIALIZED_CLASS = "eventservice.Event"


class Event:
    """One published message for one subject.

    :param subject: the subject exactly as the publisher wrote it (case kept)
    :param msg: any value the configured Pyro5 serializer carries
    :param creationTime: seconds since the epoch; ``time.time()`` when omitted

    ``str(event)`` reads as Pyro3's did: ``<EVENT SUBJ subject (ctime): msg>``.
    Applications may add attributes of their own to an event they received.
    """

    # the three fields in slots keep events small and quick to make; "__dict__" (created only when used)
    # lets applications add attributes, as Pyro3's events allowed, and "__weakref__" keeps them weak-referenceable
    __slots__ = ("__dict__", "__weakref__", "msg", "subject", "time")

    def __init__(self, subject: str, msg: t.Any, creationTime: float | None = None) -> None:
        self.subject = subject
        self.msg = msg
        self.time = time.time() if creationTime is None else creationTime

    def __str__(self) -> str:
        """Pyro3's form, so that code parsing or printing events reads the same."""
        return f"<EVENT SUBJ {self.subject} ({time.ctime(self.time)}): {self.msg}>"

    def __repr__(self) -> str:
        return f"Event({self.subject!r}, {self.msg!r}, {self.time!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Event):
            return NotImplemented
        return (self.subject, self.msg, self.time) == (other.subject, other.msg, other.time)

    __hash__ = None  # type: ignore[assignment]  # msg may be mutable
