"""What applications import: the Publisher and Subscriber skeletons, pull-style, asyncio and decorator-style clients."""
from . import aio
from .app import EventApp
from .publisher import Publisher
from .queue import QueueClosedError, QueueSubscriber
from .subscriber import Subscriber

__all__ = ["EventApp", "Publisher", "QueueClosedError", "QueueSubscriber", "Subscriber", "aio"]
