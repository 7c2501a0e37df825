"""How an Event crosses the wire: registered with Pyro5's class-to-dict hooks.

Every Pyro5 serializer (serpent, json, marshal, msgpack) then carries events
as a tagged dict. Importing ``eventservice.pyro`` registers it once.
"""
from __future__ import annotations

import typing as t

from Pyro5 import api as pyro

from ..core.event import SERIALIZED_CLASS, Event

__all__ = ["register_event_class"]


def _event_to_dict(event: Event) -> dict[str, t.Any]:
    return {"__class__": SERIALIZED_CLASS, "subject": event.subject, "msg": event.msg, "time": event.time}


def _event_from_dict(classname: str, data: dict[str, t.Any]) -> Event:
    return Event(data["subject"], data["msg"], data["time"])


def register_event_class() -> None:
    """Let every Pyro5 serializer carry :class:`Event` (idempotent)."""
    pyro.register_class_to_dict(Event, _event_to_dict)
    pyro.register_dict_to_class(SERIALIZED_CLASS, _event_from_dict)
