"""The Event Service process: the service object, delivery, the starter and the ``es`` command."""
from .service import EventService
from .starter import AlreadyRunningError, EventServiceStarter

__all__ = ["AlreadyRunningError", "EventService", "EventServiceStarter"]
