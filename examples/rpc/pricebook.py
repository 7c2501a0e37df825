#!/usr/bin/env python3
"""RPC beside publish/subscribe: one program subscribes, publishes, and serves its own Pyro object.

    python examples/rpc/pricebook.py            # until Ctrl-C

The price book follows every STOCKQUOTE.<SYMBOL> quote (a Subscriber), keeps
the last price of each symbol, and answers questions about them through a
Pyro object of its own, registered in the same name server as the Event
Service under "example.PriceBook". Orders placed through that object are
published as ORDER.<SYMBOL> events, so anybody may watch them
(``esc tail --match '^ORDER\\.'``). trader.py is a client of all three.
"""
from __future__ import annotations

import argparse
import sys
import threading

from Pyro5.api import Daemon, expose
from Pyro5.errors import PyroError

import eventservice
from eventservice.pyro.naming import locate_ns

PRICEBOOK_NAME = "example.PriceBook"


class QuoteFollower(eventservice.Subscriber):
    """Keeps the last price of every symbol quoted."""

    def __init__(self, ident: str | None = None) -> None:
        super().__init__(ident)
        self.prices: dict[str, float] = {}
        self.lock = threading.Lock()

    def event(self, event: eventservice.Event) -> None:
        symbol, price = event.msg
        with self.lock:
            self.prices[symbol] = price


@expose
class PriceBook:
    """What other programs may ask: a remote object beside the events."""

    def __init__(self, quotes: QuoteFollower, publisher: eventservice.Publisher) -> None:
        self._quotes = quotes
        self._publisher = publisher

    def last_price(self, symbol: str) -> float | None:
        """The last quoted price of ``symbol``, None if it was never quoted."""
        with self._quotes.lock:
            return self._quotes.prices.get(symbol.upper())

    def symbols(self) -> list[str]:
        with self._quotes.lock:
            return sorted(self._quotes.prices)

    def place_order(self, symbol: str, quantity: int) -> float:
        """Buy ``quantity`` at the last price: published as ORDER.<SYMBOL>; returns the price."""
        price = self.last_price(symbol)
        if price is None:
            raise ValueError(f"no quote for {symbol!r} yet")
        self._publisher.publish(f"ORDER.{symbol.upper()}", (symbol.upper(), quantity, price))
        return price


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Follow quotes, serve a PriceBook object, publish orders.")
    parser.add_argument("-i", "--ident", help="the passphrase the Event Service requires, if any")
    options = parser.parse_args(argv)
    try:
        quotes = QuoteFollower(options.ident)
        publisher = eventservice.Publisher(options.ident)
    except PyroError as error:
        print(f"Cannot reach the Event Service: {error}", file=sys.stderr)
        return 1
    daemon = Daemon()  # Pyro5's HOST; with a passphrase, only the events are protected, not this object
    uri = daemon.register(PriceBook(quotes, publisher), PRICEBOOK_NAME)
    with locate_ns() as ns:  # the name server the Event Service is registered in
        ns.register(PRICEBOOK_NAME, uri)
    try:
        quotes.subscribeMatch(r"^STOCKQUOTE\.")
        quotes.listenInThread()
        print(f"PriceBook ready at {uri} as {PRICEBOOK_NAME!r}; following quotes (Ctrl-C stops).", flush=True)
        daemon.requestLoop()
    except KeyboardInterrupt:
        pass
    finally:
        with locate_ns() as ns:
            ns.remove(PRICEBOOK_NAME)
        daemon.close()
        quotes.close()
        publisher.close()
    print("PriceBook closed.", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
