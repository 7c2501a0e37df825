"""eventservice: the classic Pyro Event Service, rebuilt on Pyro5.

Publishers call ``publish(subjects, message)``; subscribers receive
``Event(subject, msg, time)`` through ``event()``. Subscriptions are by exact
subject or by regex pattern, both case-insensitive. See README.txt.

The package has four wings, imported one way only:
``core`` (transport-free) <- ``pyro`` (the one seam to Pyro5) <- ``server`` and ``client``.
"""
import logging

from .client import EventApp, Publisher, QueueClosedError, QueueSubscriber, Subscriber, aio
from .core.config import Settings
from .core.event import Event
from .pyro.auth import PassphraseError
from .pyro.naming import EVENTSERVER_NAME
from .pyro.tls import use_tls
from .server import AlreadyRunningError, EventService, EventServiceStarter

__version__ = "1.0.0"

__all__ = [
    "EVENTSERVER_NAME",
    "AlreadyRunningError",
    "Event",
    "EventApp",
    "EventService",
    "EventServiceStarter",
    "PassphraseError",
    "Publisher",
    "QueueClosedError",
    "QueueSubscriber",
    "Settings",
    "Subscriber",
    "aio",
    "use_tls",
]

logging.getLogger(__name__).addHandler(logging.NullHandler())
