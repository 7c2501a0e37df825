"""An elastic pool of threads for work that blocks, such as connecting to subscribers.

Connecting (TCP connect, passphrase handshake, metadata) can take as long as
a subscriber makes it take, so it must not hold up the delivery loop. The
pool starts a thread while work waits and no thread is idle, up to a limit,
and an idle thread retires after a while: a quiet service runs none.
"""
from __future__ import annotations

import collections
import collections.abc as c
import threading
import typing as t

__all__ = ["ConnectorPool"]

#: a thread idle this long retires
IDLE_SECONDS = 5.0


class ConnectorPool:
    """Runs ``work(*args)`` for each ``submit(*args)``, in order of submission, in up to ``limit`` threads."""

    def __init__(self, work: c.Callable[..., None], limit: int, name: str = "es-connect") -> None:
        self._work = work
        self._limit = limit
        self._name = name
        self._waiting: collections.deque[tuple[t.Any, ...]] = collections.deque()
        self._wanted = threading.Condition(threading.Lock())
        self._threads: list[threading.Thread] = []
        self._idle = 0
        self._stopped = False

    def submit(self, *args: t.Any) -> None:
        """Queue ``work(*args)``; a thread takes it as soon as one is free."""
        with self._wanted:
            self._waiting.append(args)
            if len(self._waiting) > self._idle and len(self._threads) < self._limit and not self._stopped:
                thread = threading.Thread(target=self._serve, name=f"{self._name}-{len(self._threads) + 1}",
                                          daemon=True)
                self._threads.append(thread)
                thread.start()
            else:
                self._wanted.notify()

    def busy(self) -> int:
        """Work waiting or running."""
        with self._wanted:
            return len(self._waiting) + len(self._threads) - self._idle

    def size(self) -> int:
        """Threads in the pool."""
        return len(self._threads)

    def stop(self) -> None:
        """Let the threads end (work already running finishes); nothing more is taken."""
        with self._wanted:
            self._stopped = True
            self._wanted.notify_all()

    def _serve(self) -> None:
        while True:
            with self._wanted:
                self._idle += 1
                while not self._waiting and not self._stopped:
                    if not self._wanted.wait(IDLE_SECONDS) and not self._waiting:
                        break
                self._idle -= 1
                if self._stopped or not self._waiting:
                    self._threads.remove(threading.current_thread())
                    return
                args = self._waiting.popleft()
            self._work(*args)
