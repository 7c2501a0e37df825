"""The Event value and how it crosses the wire.

An ``Event`` is what a subscriber receives: the subject as published, the
message, and the time the Event Service accepted the publish. How it
crosses the wire is ``pyro.serialization``'s business.
"""
from __future__ import annotations

import time
import typing as t

__all__ = ["Event", "SERIALIZED_CLASS"]

#: the ``__class__`` tag events carry on the wire
SERIALIZED_CLASS = "eventservice.Event"


class Event:
    """One published message for one subject.

    :param subject: the subject exactly as the publisher wrote it (case kept)
    :param msg: any value the configured Pyro5 serializer carries
    :param creationTime: seconds since the epoch; ``time.time()`` when omitted
    """

    __slots__ = ("subject", "msg", "time")

    def __init__(self, subject: str, msg: t.Any, creationTime: float | None = None) -> None:
        self.subject = subject
        self.msg = msg
        self.time = time.time() if creationTime is None else creationTime

    def __str__(self) -> str:
        seconds, millis = divmod(round(self.time * 1000), 1000)
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(seconds))
        return f"<Event {self.subject} @ {stamp}.{millis:03d}: {self.msg}>"

    def __repr__(self) -> str:
        return f"Event({self.subject!r}, {self.msg!r}, {self.time!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Event):
            return NotImplemented
        return (self.subject, self.msg, self.time) == (other.subject, other.msg, other.time)

    __hash__ = None  # type: ignore[assignment]  # msg may be mutable
