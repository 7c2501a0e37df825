#!/usr/bin/env python3
"""Follows the quotes of chosen stock symbols: subscribes to STOCKQUOTE.<SYMBOL> for each.

    python examples/stockquotes/subscriber.py                  # asks for the symbols
    python examples/stockquotes/subscriber.py SUN IBM --count 10
    python examples/stockquotes/subscriber.py SUN --es-uri PYRO:Pyro.EventService@127.0.0.1:9999
"""
from __future__ import annotations

import argparse
import sys

from quotes import add_connection_options, run_listener, subject_for


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Print the stock quotes of some symbols as they are published.")
    parser.add_argument("symbols", nargs="*", help="stock symbols, e.g. SUN IBM (asked for when run without arguments)")
    parser.add_argument("-c", "--count", type=int, help="stop after this many quotes (default: run until Ctrl-C)")
    add_connection_options(parser)
    argv = sys.argv[1:] if argv is None else argv
    options = parser.parse_args(argv)
    symbols = options.symbols
    if not argv:
        try:
            symbols = input("Stock symbols to follow (e.g. SUN IBM): ").split()
        except EOFError:
            symbols = []
    if not symbols:
        parser.error("give at least one stock symbol")
    subjects = [subject_for(symbol) for symbol in symbols]
    return run_listener(options, lambda listener: listener.subscribe(subjects), ", ".join(subjects))


if __name__ == "__main__":
    sys.exit(main())
