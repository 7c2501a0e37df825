"""The decorator style for small scripts: ``@app.on(subject)``, ``@app.on_match(pattern)``, ``app.run()``.

    app = eventservice.EventApp()

    @app.on("STOCKQUOTE.SUN")
    def sun(event): ...

    @app.on_match(r"^NEWS\\.")
    def news(event): ...

    app.run()   # until Ctrl-C or app.stop()

One Subscriber underneath: the ES sends each event once, and here every
handler whose subjects or patterns match it is called once, in the order the
handlers were registered, one event at a time in the order accepted.
"""
from __future__ import annotations

import logging
import threading
import typing as t

import regex
from Pyro5 import core

from ..core.event import Event
from ..core.subjects import fold
from ..core.subscriptions import PATTERN_FLAGS
from .subscriber import Subscriber

__all__ = ["EventApp"]

log = logging.getLogger(__name__)

Handler = t.Callable[[Event], t.Any]


class _Route:
    def __init__(self, handler: Handler, subjects: t.Iterable[str] = (), patterns: t.Iterable[t.Any] = ()) -> None:
        self.handler = handler
        self.subjects = list(subjects)
        self._folded = frozenset(fold(subject) for subject in subjects)
        self.patterns = list(patterns)

    def wants(self, event: Event) -> bool:
        return fold(event.subject) in self._folded or any(pattern.match(event.subject) for pattern in self.patterns)


class _Router(Subscriber):
    def __init__(self, app: EventApp, **client: t.Any) -> None:
        super().__init__(**client)
        self._app = app

    def event(self, event: Event) -> None:
        for route in self._app._routes:
            if route.wants(event):
                try:
                    route.handler(event)
                except Exception:
                    log.exception("handler %s raised for %s; going on", getattr(route.handler, "__name__", route.handler),
                                  event.subject)


class EventApp:
    """Handlers registered by decorator, served by one Subscriber.

    Takes the Subscriber's arguments (ident, esURI, nsHost, nsPort).
    ``running`` is set once ``run()`` has subscribed and is listening.
    """

    def __init__(self, ident: str | None = None, esURI: str | core.URI | None = None,
                 nsHost: str | None = None, nsPort: int | None = None) -> None:
        self._client = {"ident": ident, "esURI": esURI, "nsHost": nsHost, "nsPort": nsPort}
        self._routes: list[_Route] = []
        self._subscriber: _Router | None = None
        self.running = threading.Event()

    def on(self, *subjects: str) -> t.Callable[[Handler], Handler]:
        """Decorator: call the function for events of these exact subjects (case-insensitive)."""
        if not subjects or not all(isinstance(subject, str) and subject for subject in subjects):
            raise ValueError(f"on() takes one or more non-empty subjects, not {subjects!r}")
        return self._add(lambda handler: _Route(handler, subjects=subjects))

    def on_match(self, *patterns: str) -> t.Callable[[Handler], Handler]:
        """Decorator: call the function for subjects matching these regex patterns (as subscribeMatch)."""
        if not patterns or not all(isinstance(pattern, str) and pattern for pattern in patterns):
            raise ValueError(f"on_match() takes one or more non-empty patterns, not {patterns!r}")
        try:
            compiled = [regex.compile(pattern, PATTERN_FLAGS) for pattern in patterns]
        except regex.error as error:
            raise ValueError(f"invalid pattern in {patterns!r}: {error}") from None
        return self._add(lambda handler: _Route(handler, patterns=compiled))

    def _add(self, route: t.Callable[[Handler], _Route]) -> t.Callable[[Handler], Handler]:
        if self._subscriber is not None:
            raise RuntimeError("register handlers before run()")

        def register(handler: Handler) -> Handler:
            self._routes.append(route(handler))
            return handler

        return register

    def run(self) -> None:
        """Subscribe to everything the handlers want and serve events until Ctrl-C or ``stop()``."""
        if not self._routes:
            raise RuntimeError("no handlers: decorate functions with @app.on(...) or @app.on_match(...) first")
        self._subscriber = subscriber = _Router(self, **self._client)
        try:
            subjects = list(dict.fromkeys(subject for route in self._routes for subject in route.subjects))
            patterns = list(dict.fromkeys(pattern.pattern for route in self._routes for pattern in route.patterns))
            if subjects:
                subscriber.subscribe(subjects)
            if patterns:
                subscriber.subscribeMatch(patterns)
            listening = subscriber.listenInThread()
            self.running.set()
            while listening.is_alive():
                listening.join(0.5)  # in the main thread, Ctrl-C gets through here
        except KeyboardInterrupt:
            pass
        finally:
            self.running.clear()
            subscriber.close()
            self._subscriber = None

    def stop(self) -> None:
        """Make ``run()`` return; may be called from a handler or another thread."""
        subscriber = self._subscriber
        if subscriber is not None:
            subscriber.abort()
