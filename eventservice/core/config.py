"""Tunables of the Event Service, with defaults and environment overrides.

This is the only module that reads ``os.environ``. Every setting can be given
as ``EVENTSERVICE_<NAME>`` (``EVENTSERVICE_QUEUESIZE``,
``EVENTSERVICE_BLOCKQUEUE``, ...). Pyro3 spelled these ``PYRO_ES_*``, but
Pyro5 refuses to start when the environment holds a ``PYRO_*`` name it does
not know, so the Pyro3 names cannot come back. Pyro5's own ``PYRO_*``
settings are left to Pyro5. Like Pyro5, an ``EVENTSERVICE_*`` name that is no
setting is refused, so a misspelt one does not go unnoticed.
"""
from __future__ import annotations

import dataclasses
import os
import typing as t

from .queues import check_policy

__all__ = ["Settings", "environment_names", "from_environment"]

ENV_PREFIX = "EVENTSERVICE_"
_MAY_BE_ZERO = frozenset({"linger", "stats_interval"})


@dataclasses.dataclass
class Settings:
    """The Event Service's tunables; see README.txt for what each one means."""

    #: events a subscriber's queue holds before the full-queue policy applies
    queuesize: int = 1000
    #: full queue: "block" the publisher until there is room, "drop" the new event, or "drop-oldest"
    full_queue: str = "block"
    #: Pyro3's name for the policy: True is "block", False "drop" (used when full_queue is left at its default)
    blockqueue: bool | None = None
    #: largest queue size a subscriber may ask for (setQueuePolicy)
    max_queuesize: int = 10000
    #: most threads connecting to new subscribers at once (connecting blocks; delivering does not)
    connectors: int = 64
    #: most events sent to one subscriber in one call
    batch_size: int = 200
    #: under load, seconds between delivery rounds, so calls carry more events (0: deliver as soon as possible)
    linger: float = 0.005
    #: seconds a subscriber may take to accept a delivery before it counts as dead
    delivery_timeout: float = 30.0
    #: concurrent client connections the ES serves (Pyro5's THREADPOOL_SIZE is raised to it)
    max_connections: int = 1000
    #: subjects -> subscribers results kept in the match cache
    match_cache_size: int = 4096
    #: seconds all patterns together may spend on one subject; a pattern that runs out of time is removed
    pattern_timeout: float = 0.1
    #: longest subject accepted, in characters
    max_subject_length: int = 1000
    #: longest pattern accepted, in characters
    max_pattern_length: int = 1000
    #: most subjects plus patterns one subscriber may hold
    max_subscriptions: int = 10000
    #: most subjects in one publish call
    max_subjects_per_publish: int = 1000
    #: largest publish request accepted, in bytes (Pyro5's own limit is 1 GiB)
    max_message_size: int = 10 * 1024 * 1024
    #: seconds a client connection may stay silent (also mid-request) before the ES closes it
    idle_timeout: float = 60.0
    #: seconds of clock difference tolerated in the passphrase handshake
    handshake_window: float = 120.0
    #: seconds between one-line stats summaries in the log (0: none)
    stats_interval: float = 0.0
    #: monitoring endpoint (JSON, Prometheus, status page) at [HOST:]PORT, host 127.0.0.1 by default ("": off)
    http: str = ""
    #: token the monitoring endpoint requires ("": none); never shown
    http_token: str = dataclasses.field(default="", repr=False)
    #: seconds an HTTP client has to send its whole request head (slow clients get 408)
    http_request_timeout: float = 10.0

    def __post_init__(self) -> None:
        if self.blockqueue is not None and self.full_queue == "block":
            self.full_queue = "block" if self.blockqueue else "drop"
        try:
            check_policy(self.full_queue)
        except ValueError as error:
            raise ValueError(f"setting full_queue: {error}") from None
        self.blockqueue = self.full_queue == "block"
        if self.queuesize > self.max_queuesize:
            raise ValueError(f"setting queuesize ({self.queuesize}) exceeds max_queuesize ({self.max_queuesize})")
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.name in _MAY_BE_ZERO:
                if not value >= 0:  # also refuses NaN
                    raise ValueError(f"setting {field.name} must be 0 or more, got {value!r}")
            elif field.type in ("int", "float") and not value > 0:  # also refuses NaN
                raise ValueError(f"setting {field.name} must be greater than 0, got {value!r}")
            elif field.type == "str" and not isinstance(value, str):
                raise ValueError(f"setting {field.name} must be text, got {value!r}")


def _coerce(name: str, kind: str, text: str) -> t.Any:
    if kind == "str":
        return text
    try:
        if kind.startswith("bool"):
            lowered = text.strip().lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError(text)
        if kind == "str":
            return text.strip()
        return int(text) if kind == "int" else float(text)
    except ValueError:
        raise ValueError(f"environment variable {ENV_PREFIX}{name.upper()}={text!r} is not a valid {kind.split()[0]}") from None


def environment_names() -> list[str]:
    """The ``EVENTSERVICE_*`` names the environment may hold: one per Settings field."""
    return [ENV_PREFIX + field.name.upper() for field in dataclasses.fields(Settings)]


def _refuse_unknown_names() -> None:
    known = environment_names()
    unknown = sorted(name for name in os.environ if name.startswith(ENV_PREFIX) and name not in known)
    if unknown:
        raise ValueError(f"unknown environment variable{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; "
                         f"the known ones are {', '.join(known)}")


def from_environment(**overrides: t.Any) -> Settings:
    """Settings from the defaults, then ``EVENTSERVICE_*`` variables, then ``overrides`` (not None).

    An ``EVENTSERVICE_*`` variable that names no setting is a ValueError listing the known names.
    """
    _refuse_unknown_names()
    values: dict[str, t.Any] = {}
    for field in dataclasses.fields(Settings):
        text = os.environ.get(ENV_PREFIX + field.name.upper())
        if text is not None:
            values[field.name] = _coerce(field.name, str(field.type), text)
    given = {name: value for name, value in overrides.items() if value is not None}
    # the policy's two spellings: an override beats the environment, full_queue beats Pyro3's blockqueue
    if "full_queue" in given or ("full_queue" in values and "blockqueue" not in given):
        values.pop("blockqueue", None)
    elif "blockqueue" in given:
        values.pop("full_queue", None)
    values.update(given)
    return Settings(**values)
