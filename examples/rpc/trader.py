#!/usr/bin/env python3
"""A client of pricebook.py: publishes a quote, asks the PriceBook for it, places an order, sees it published.

    python examples/rpc/trader.py SUN 22.5 --quantity 100
"""
from __future__ import annotations

import argparse
import queue
import sys
import time

from Pyro5.api import Proxy
from Pyro5.errors import PyroError

import eventservice
from eventservice.pyro.naming import locate_ns

PRICEBOOK_NAME = "example.PriceBook"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Publish a quote, then trade on it through the PriceBook.")
    parser.add_argument("symbol")
    parser.add_argument("price", type=float)
    parser.add_argument("-q", "--quantity", type=int, default=10)
    parser.add_argument("-i", "--ident", help="the passphrase the Event Service requires, if any")
    options = parser.parse_args(argv)
    symbol = options.symbol.upper()
    try:
        with locate_ns() as ns:
            book_uri = ns.lookup(PRICEBOOK_NAME)  # a plain Pyro object, found in the Event Service's name server
        with eventservice.QueueSubscriber(subjects=f"ORDER.{symbol}", ident=options.ident) as orders, \
                eventservice.Publisher(options.ident) as publisher, Proxy(book_uri) as book:
            publisher.publish(f"STOCKQUOTE.{symbol}", (symbol, options.price))
            deadline = time.monotonic() + 10
            while book.last_price(symbol) != options.price:  # the quote travels as an event, the question as RPC
                if time.monotonic() > deadline:
                    print(f"The PriceBook did not see the quote for {symbol}.", file=sys.stderr)
                    return 1
                time.sleep(0.05)
            print(f"PriceBook: last price of {symbol} is {book.last_price(symbol)}")
            paid = book.place_order(symbol, options.quantity)
            print(f"Ordered {options.quantity} {symbol} at {paid}")
            order = orders.get(timeout=10)
            print(f"Event {order.subject}: {order.msg}")
    except (PyroError, queue.Empty) as error:
        print(f"trader: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
