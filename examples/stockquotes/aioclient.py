#!/usr/bin/env python3
"""Follows stock quotes from an asyncio program, while another task keeps the loop busy.

    python examples/stockquotes/aioclient.py                   # pattern ^STOCKQUOTE\\.S.*$, until Ctrl-C
    python examples/stockquotes/aioclient.py --count 5 --pattern '^STOCKQUOTE\\.(IBM|SAP)$'

Quotes come through ``async for`` on an eventservice.aio.Subscriber; a clock
task ticks every 0.1 s meanwhile, and the summary shows how often it ticked:
waiting for quotes never blocks the loop.
"""
from __future__ import annotations

import argparse
import asyncio
import sys
import time

from Pyro5.errors import PyroError

from eventservice import aio
from quotes import DEFAULT_PATTERN, add_connection_options


async def follow(patterns: list[str], count: int | None, ident: str | None, es_uri: str | None) -> int:
    ticks = 0

    async def clock() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.1)
            ticks += 1

    clock_task = asyncio.create_task(clock())
    received = 0
    try:
        async with aio.Subscriber(patterns=patterns, ident=ident, esURI=es_uri) as quotes:
            print(f"Subscribed to {' or '.join(patterns)}; waiting for quotes (Ctrl-C stops).", flush=True)
            async for event in quotes:
                symbol, price = event.msg
                received += 1
                clock_time = time.strftime("%H:%M:%S", time.localtime(event.time))
                print(f"{symbol:<5} {price:9.2f}   ({event.subject} at {clock_time}, clock ticked {ticks} times)",
                      flush=True)
                if count is not None and received >= count:
                    break
    finally:
        clock_task.cancel()
    print(f"Received {received} quotes; the clock ticked {ticks} times meanwhile.")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Print stock quotes matching a pattern, from asyncio.")
    parser.add_argument("-p", "--pattern", action="append", dest="patterns",
                        help=f"subject pattern, may be repeated (default: {DEFAULT_PATTERN})")
    parser.add_argument("-c", "--count", type=int, help="stop after this many quotes (default: run until Ctrl-C)")
    add_connection_options(parser)
    options = parser.parse_args(argv)
    try:
        return asyncio.run(follow(options.patterns or [DEFAULT_PATTERN], options.count, options.ident, options.es_uri))
    except PyroError as error:
        print(f"Cannot reach the Event Service: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
