#!/usr/bin/env python3
"""Traffic: publishes a CARS.HEADING.<direction> event for every car that passes.

The message is ``(plate, color, make)``; the direction is NORTH, EAST, SOUTH or WEST.

    python examples/countingcars/cars.py                        # until Ctrl-C
    python examples/countingcars/cars.py --count 100 --rate 20
    python examples/countingcars/cars.py --es-uri PYRO:Pyro.EventService@127.0.0.1:9999
"""
from __future__ import annotations

import argparse
import random
import string
import sys
import time

from Pyro5.errors import PyroError

import eventservice

SUBJECT_PREFIX = "CARS.HEADING."
DIRECTIONS = ("NORTH", "EAST", "SOUTH", "WEST")
COLORS = ("red", "blue", "white", "black", "silver", "green", "yellow")
MAKES = ("Volvo", "Fiat", "Toyota", "Ford", "Citroen", "Saab", "Tesla", "Skoda")


def random_car(rng: random.Random) -> tuple[str, str, str]:
    """A (plate, color, make) for a car."""
    plate = "".join(rng.choices(string.ascii_uppercase, k=2)) + "-" + "".join(rng.choices(string.digits, k=3))
    return plate, rng.choice(COLORS), rng.choice(MAKES)


def drive(publisher: eventservice.Publisher, rate: float, count: int | None, rng: random.Random,
          verbose: bool) -> None:
    """Publish ``rate`` cars a second, each heading a random direction, until ``count`` cars."""
    interval = 1.0 / rate if rate > 0 else 0.0
    passed = 0
    while count is None or passed < count:
        direction = rng.choice(DIRECTIONS)
        car = random_car(rng)
        publisher.publish(SUBJECT_PREFIX + direction, car)
        passed += 1
        if verbose:
            plate, color, make = car
            print(f"a {color} {make} ({plate}) heads {direction}", flush=True)
        time.sleep(interval)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Publish CARS.HEADING.<direction> events for passing cars.")
    parser.add_argument("-c", "--count", type=int, help="stop after this many cars (default: run until Ctrl-C)")
    parser.add_argument("-r", "--rate", type=float, default=10.0,
                        help="cars per second (default 10; 0: as fast as possible)")
    parser.add_argument("--seed", type=int, help="seed for the random traffic, for repeatable runs")
    parser.add_argument("-q", "--quiet", action="store_true", help="do not print every car")
    parser.add_argument("--es-uri", help="the Event Service's URI, to use it without a name server")
    parser.add_argument("-i", "--ident", help="the passphrase the Event Service requires, if any")
    options = parser.parse_args(argv)
    try:
        publisher = eventservice.Publisher(options.ident, options.es_uri)
    except PyroError as error:
        print(f"Cannot reach the Event Service: {error}", file=sys.stderr)
        return 1
    print("Traffic is flowing (Ctrl-C stops it).", flush=True)
    try:
        drive(publisher, options.rate, options.count, random.Random(options.seed), not options.quiet)
    except KeyboardInterrupt:
        pass
    finally:
        publisher.close()
    print("Traffic stopped.", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
