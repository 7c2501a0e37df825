#!/usr/bin/env python3
"""Counts cars one direction at a time, switching its subscription from inside event().

It subscribes to CARS.HEADING.NORTH, and after ``--cars`` cars it unsubscribes
that subject and subscribes to the next direction (EAST, SOUTH, WEST). After
the last direction it calls abort(), which ends listen().

    python examples/countingcars/counter.py                     # 5 cars each way
    python examples/countingcars/counter.py --cars 3
    python examples/countingcars/counter.py --es-uri PYRO:Pyro.EventService@127.0.0.1:9999
"""
from __future__ import annotations

import argparse
import sys
import time

from Pyro5.errors import PyroError

import eventservice
from cars import DIRECTIONS, SUBJECT_PREFIX


class TrafficCounter(eventservice.Subscriber):
    """Watches one direction at a time until it has seen ``cars`` cars heading that way."""

    def __init__(self, cars: int, ident: str | None = None, esURI: str | None = None) -> None:
        super().__init__(ident, esURI)
        self.cars = cars
        self.counts = dict.fromkeys(DIRECTIONS, 0)
        self.current: str | None = None
        self._to_watch = list(DIRECTIONS)
        self._since = 0.0

    def watch_next(self) -> None:
        """Stop watching the current direction and start on the next; abort() after the last."""
        if self.current is not None:
            self.unsubscribe(SUBJECT_PREFIX + self.current)
            seconds = time.monotonic() - self._since
            print(f"{self.counts[self.current]} cars heading {self.current}, in {seconds:.1f} s", flush=True)
        if not self._to_watch:
            self.current = None
            print("I watched all directions.", flush=True)
            self.abort()
            return
        self.current = self._to_watch.pop(0)
        self.subscribe(SUBJECT_PREFIX + self.current)
        self._since = time.monotonic()
        print(f"Now watching for cars heading {self.current}.", flush=True)

    def event(self, event: eventservice.Event) -> None:
        direction = event.subject[len(SUBJECT_PREFIX):].upper()
        if direction != self.current:
            return  # was already on its way when we switched directions
        plate, color, make = event.msg
        self.counts[direction] += 1
        print(f"  a {color} {make} ({plate}) went {direction}", flush=True)
        if self.counts[direction] >= self.cars:
            self.watch_next()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Count cars heading each direction, one direction at a time.")
    parser.add_argument("-n", "--cars", type=int, default=5, help="cars to count per direction (default 5)")
    parser.add_argument("--es-uri", help="the Event Service's URI, to use it without a name server")
    parser.add_argument("-i", "--ident", help="the passphrase the Event Service requires, if any")
    options = parser.parse_args(argv)
    if options.cars < 1:
        parser.error("--cars must be at least 1")
    try:
        counter = TrafficCounter(options.cars, options.ident, options.es_uri)
    except PyroError as error:
        print(f"Cannot reach the Event Service: {error}", file=sys.stderr)
        return 1
    try:
        counter.watch_next()
        counter.listen()
    except KeyboardInterrupt:
        pass
    finally:
        counter.close()
    print("Counted: " + ", ".join(f"{direction} {count}" for direction, count in counter.counts.items()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
