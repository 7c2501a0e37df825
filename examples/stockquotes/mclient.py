#!/usr/bin/env python3
"""Follows stock quotes by subject pattern: by default every symbol starting with S.

    python examples/stockquotes/mclient.py                     # pattern ^STOCKQUOTE\\.S.*$
    python examples/stockquotes/mclient.py --pattern '^STOCKQUOTE\\.(IBM|SAP)$' --count 10
    python examples/stockquotes/mclient.py --es-uri PYRO:Pyro.EventService@127.0.0.1:9999

Patterns are regular expressions matched case-insensitively from the start of the subject.
"""
from __future__ import annotations

import argparse
import sys

from quotes import DEFAULT_PATTERN, add_connection_options, run_listener


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Print the stock quotes whose subject matches a pattern.")
    parser.add_argument("-p", "--pattern", action="append", dest="patterns",
                        help=f"subject pattern, may be repeated (default: {DEFAULT_PATTERN})")
    parser.add_argument("-c", "--count", type=int, help="stop after this many quotes (default: run until Ctrl-C)")
    add_connection_options(parser)
    options = parser.parse_args(argv)
    patterns = options.patterns or [DEFAULT_PATTERN]
    return run_listener(options, lambda listener: listener.subscribeMatch(patterns),
                        "subjects matching " + " or ".join(patterns))


if __name__ == "__main__":
    sys.exit(main())
