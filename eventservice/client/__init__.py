"""What applications import: the Publisher and Subscriber skeletons."""
from .publisher import Publisher
from .subscriber import Subscriber

__all__ = ["Publisher", "Subscriber"]
