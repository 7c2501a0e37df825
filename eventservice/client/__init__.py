"""What applications import: the Publisher and Subscriber skeletons, pull-style and asyncio clients."""
from . import aio
from .publisher import Publisher
from .queue import QueueClosedError, QueueSubscriber
from .subscriber import Subscriber

__all__ = ["Publisher", "QueueClosedError", "QueueSubscriber", "Subscriber", "aio"]
