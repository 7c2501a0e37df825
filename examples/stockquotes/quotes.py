"""What the stock quote scripts share: subjects, the market and a subscriber that prints quotes.

A quote is published under the subject ``STOCKQUOTE.<SYMBOL>`` with the
message ``(symbol, price)``.
"""
from __future__ import annotations

import argparse
import random
import sys
import threading
import time
import typing as t

from Pyro5.errors import PyroError

import eventservice

SUBJECT_PREFIX = "STOCKQUOTE."
DEFAULT_SYMBOLS = ("SUN", "IBM", "SAP", "SIE", "MSFT", "AAPL", "SHEL", "ORCL")
DEFAULT_PATTERN = r"^STOCKQUOTE\.S.*$"

_print_lock = threading.Lock()


def say(text: str) -> None:
    """Print one whole line, also when several threads print at once."""
    with _print_lock:
        print(text, flush=True)


def subject_for(symbol: str) -> str:
    """The subject quotes of ``symbol`` are published under."""
    return SUBJECT_PREFIX + symbol.upper()


def add_connection_options(parser: argparse.ArgumentParser) -> None:
    """The options every script takes to reach the Event Service."""
    parser.add_argument("--es-uri", help="the Event Service's URI, to use it without a name server "
                                         "(e.g. PYRO:Pyro.EventService@127.0.0.1:9999)")
    parser.add_argument("-i", "--ident", help="the passphrase the Event Service requires, if any")


class Market:
    """A stock market: random-walk prices, published one quote at a time.

    Every round quotes each symbol once, in a shuffled order, so every
    subscriber soon sees each of its symbols.
    """

    def __init__(self, publisher: eventservice.Publisher, symbols: t.Iterable[str] = DEFAULT_SYMBOLS,
                 seed: int | None = None) -> None:
        self._publisher = publisher
        self._random = random.Random(seed)
        self.prices = {symbol.upper(): round(self._random.uniform(10.0, 200.0), 2) for symbol in symbols}
        if not self.prices:
            raise ValueError("a market needs at least one symbol")
        self._round: list[str] = []
        self.published = 0

    def tick(self) -> tuple[str, float]:
        """Move the price of the next symbol a little, publish it, and return the quote."""
        if not self._round:
            self._round = list(self.prices)
            self._random.shuffle(self._round)
        symbol = self._round.pop()
        price = max(0.01, round(self.prices[symbol] * (1.0 + self._random.gauss(0.0, 0.01)), 2))
        self.prices[symbol] = price
        self._publisher.publish(subject_for(symbol), (symbol, price))
        self.published += 1
        return symbol, price

    def run(self, rate: float = 5.0, count: int | None = None, duration: float | None = None,
            stop: threading.Event | None = None, verbose: bool = False) -> int:
        """Publish ``rate`` quotes a second until ``count`` quotes, ``duration`` seconds or ``stop``.

        Returns how many quotes were published in all.
        """
        stop = stop or threading.Event()
        interval = 1.0 / rate if rate > 0 else 0.0
        start = due = time.monotonic()
        while not stop.is_set():
            if count is not None and self.published >= count:
                break
            if duration is not None and time.monotonic() - start >= duration:
                break
            symbol, price = self.tick()
            if verbose:
                say(f"published {symbol:<5} {price:9.2f}")
            due += interval
            stop.wait(max(0.0, due - time.monotonic()))
        return self.published


class QuoteListener(eventservice.Subscriber):
    """Prints every quote it receives (after ``name``, if any); stops listening after ``limit`` quotes."""

    def __init__(self, name: str = "", limit: int | None = None, ident: str | None = None,
                 esURI: str | None = None) -> None:
        super().__init__(ident, esURI)
        self.name = name
        self.limit = limit
        self.received = 0

    def event(self, event: eventservice.Event) -> None:
        if self.limit is not None and self.received >= self.limit:
            return  # already stopping: ignore what was still on its way
        symbol, price = event.msg
        self.received += 1
        clock = time.strftime("%H:%M:%S", time.localtime(event.time))
        prefix = f"{self.name}: " if self.name else ""
        say(f"{prefix}{symbol:<5} {price:9.2f}   ({event.subject} at {clock})")
        if self.limit is not None and self.received >= self.limit:
            self.abort()


def run_listener(options: argparse.Namespace, subscribe: t.Callable[[QuoteListener], None], what: str) -> int:
    """The command-line subscribers' main loop; returns the exit code.

    Connects (with ``options.ident``/``options.es_uri``), calls ``subscribe``,
    prints quotes until ``options.count`` of them or Ctrl-C, then leaves the
    Event Service.
    """
    try:
        listener = QuoteListener(limit=options.count, ident=options.ident, esURI=options.es_uri)
    except PyroError as error:
        print(f"Cannot reach the Event Service: {error}", file=sys.stderr)
        return 1
    try:
        subscribe(listener)
    except (PyroError, ValueError) as error:
        listener.close()
        print(f"Cannot subscribe: {error}", file=sys.stderr)
        return 1
    say(f"Subscribed to {what}; waiting for quotes (Ctrl-C stops).")
    try:
        listener.listen()
    except KeyboardInterrupt:
        pass
    finally:
        listener.close()
    say(f"Received {listener.received} quotes.")
    return 0
