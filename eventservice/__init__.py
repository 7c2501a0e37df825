"""eventservice: the classic Pyro Event Service, rebuilt on Pyro5.

Publishers call ``publish(subjects, message)``; subscribers receive
``Event(subject, msg, time)`` through ``event()``. Subscriptions are by exact
subject or by regex pattern, both case-insensitive. See README.txt.
"""
from .auth import PassphraseError
from .clients import Publisher, Subscriber
from .config import Settings
from .event import Event
from .naming import EVENTSERVER_NAME
from .server import AlreadyRunningError, EventServiceStarter
from .service import EventService
from .tls import use_tls

__version__ = "1.0.0"

__all__ = [
    "EVENTSERVER_NAME",
    "AlreadyRunningError",
    "Event",
    "EventService",
    "EventServiceStarter",
    "PassphraseError",
    "Publisher",
    "Settings",
    "Subscriber",
    "use_tls",
]
