#!/usr/bin/env python3
"""A stock market: publishes STOCKQUOTE.<SYMBOL> events with a (symbol, price) message.

    python examples/stockquotes/market.py                      # default symbols, until Ctrl-C
    python examples/stockquotes/market.py SUN IBM --count 20 --rate 2
    python examples/stockquotes/market.py --es-uri PYRO:Pyro.EventService@127.0.0.1:9999

Start several markets and quotes arrive faster: subscribers do not know who publishes.
"""
from __future__ import annotations

import argparse
import sys

from Pyro5.errors import PyroError

import eventservice
from quotes import DEFAULT_SYMBOLS, Market, add_connection_options, say


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Publish random-walk stock quotes to the Event Service.")
    parser.add_argument("symbols", nargs="*", default=list(DEFAULT_SYMBOLS),
                        help=f"stock symbols to quote (default: {' '.join(DEFAULT_SYMBOLS)})")
    parser.add_argument("-c", "--count", type=int, help="stop after this many quotes (default: run until Ctrl-C)")
    parser.add_argument("-d", "--duration", type=float, help="stop after this many seconds")
    parser.add_argument("-r", "--rate", type=float, default=5.0,
                        help="quotes per second (default 5; 0: as fast as possible)")
    parser.add_argument("--seed", type=int, help="seed for the random prices, for repeatable runs")
    parser.add_argument("-q", "--quiet", action="store_true", help="do not print every quote published")
    add_connection_options(parser)
    options = parser.parse_args(argv)
    try:
        publisher = eventservice.Publisher(options.ident, options.es_uri)
    except PyroError as error:
        print(f"Cannot reach the Event Service: {error}", file=sys.stderr)
        return 1
    market = Market(publisher, options.symbols, options.seed)
    say(f"Market open: quoting {', '.join(market.prices)} (Ctrl-C closes it).")
    try:
        market.run(options.rate, options.count, options.duration, verbose=not options.quiet)
    except KeyboardInterrupt:
        pass
    finally:
        publisher.close()
    say(f"Market closed after {market.published} quotes.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
