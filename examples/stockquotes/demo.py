#!/usr/bin/env python3
"""The whole stock quote example in one command, on a machine with nothing but Python 3.

    python3 examples/stockquotes/demo.py [--seconds 10]

It first runs dev/bootstrap.py, which re-runs this script inside the project's
.venv (creating it and installing the project on the first run). Then, all in
this process and on 127.0.0.1: a name server and the Event Service, a market
publishing quotes, a subscriber following SUN and IBM, and a pattern subscriber
following ``^STOCKQUOTE\\.S.*$``. Every quote a subscriber receives is printed
with that subscriber's name in front. After ``--seconds`` everything stops
(also on Ctrl-C), a summary is printed and the demo exits.

Set ES_NO_BOOTSTRAP=1 to skip the bootstrap and run in the current Python
(which then needs Pyro5 and regex; the tests do this).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if os.environ.get("ES_NO_BOOTSTRAP") != "1":
    sys.path.insert(0, str(ROOT / "dev"))
    import bootstrap

    bootstrap.ensure_venv()
sys.path.insert(0, str(ROOT))

import argparse  # noqa: E402
import threading  # noqa: E402

from Pyro5 import config as pyro_config  # noqa: E402

import eventservice  # noqa: E402
from quotes import DEFAULT_PATTERN, Market, QuoteListener, say, subject_for  # noqa: E402

LOCALHOST = "127.0.0.1"
FOLLOWED_SYMBOLS = ("SUN", "IBM")
JOIN_TIMEOUT = 10.0


def _stop_thread(thread: threading.Thread | None) -> None:
    if thread is not None:
        thread.join(JOIN_TIMEOUT)
        if thread.is_alive():
            print(f"demo: thread {thread.name} did not stop", file=sys.stderr)


def run(seconds: float, rate: float) -> int:
    """Run the demo for ``seconds``; returns the exit code."""
    pyro_config.HOST = LOCALHOST  # the subscribers' own daemons
    starter = eventservice.EventServiceStarter()
    starter.initialize(LOCALHOST, 0, embeddedNameServer=True, nsHost=LOCALHOST, nsPort=0)
    pyro_config.NS_HOST = LOCALHOST  # clients find the Event Service in the embedded name server
    pyro_config.NS_PORT = starter.nsUri.port
    server = threading.Thread(target=starter.handleRequests, name="demo-event-service")
    server.start()
    say(f"Name server:   {starter.nsUri}")
    say(f"Event Service: {starter.uri}")

    stop = threading.Event()
    listeners: list[QuoteListener] = []
    listen_threads: list[threading.Thread] = []
    publisher: eventservice.Publisher | None = None
    market: Market | None = None
    market_thread: threading.Thread | None = None
    try:
        by_symbol = QuoteListener("symbols")
        listeners.append(by_symbol)
        by_symbol.subscribe([subject_for(symbol) for symbol in FOLLOWED_SYMBOLS])
        by_pattern = QuoteListener("pattern")
        listeners.append(by_pattern)
        by_pattern.subscribeMatch(DEFAULT_PATTERN)
        listen_threads = [listener.listenInThread() for listener in listeners]

        publisher = eventservice.Publisher()
        market = Market(publisher)
        market_thread = threading.Thread(target=market.run, kwargs={"rate": rate, "stop": stop}, name="demo-market")
        market_thread.start()
        say(f"Market quoting {', '.join(market.prices)} for {seconds:g} seconds...")
        stop.wait(seconds)
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        _stop_thread(market_thread)
        if publisher is not None:
            publisher.close()
        for listener in listeners:
            listener.abort()
        for thread in listen_threads:
            _stop_thread(thread)  # listening ended: now the daemons can close
        for listener in listeners:
            listener.close()
        starter.shutdown()
        _stop_thread(server)

    say("Summary:")
    say(f"  market published {market.published if market else 0} quotes")
    for listener, follows in zip(listeners, (", ".join(FOLLOWED_SYMBOLS), DEFAULT_PATTERN), strict=False):  # fewer after Ctrl-C
        say(f"  {listener.name} ({follows}): received {listener.received} quotes")
    leftover = [thread.name for thread in threading.enumerate() if thread is not threading.current_thread()]
    if leftover:
        print(f"demo: threads still running: {', '.join(leftover)}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Name server, Event Service, a stock market and two subscribers "
                                                 "in one process, for a few seconds.")
    parser.add_argument("-s", "--seconds", type=float, default=10.0, help="how long the market runs (default 10)")
    parser.add_argument("-r", "--rate", type=float, default=8.0, help="quotes per second (default 8)")
    options = parser.parse_args(argv)
    return run(options.seconds, options.rate)


if __name__ == "__main__":
    sys.exit(main())
