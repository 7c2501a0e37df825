"""The one seam to Pyro5: wire frames, daemons, passphrase, TLS, naming, serialization.

Nothing outside this package reaches into Pyro5's internals.
"""
from .serialization import register_event_class

register_event_class()
