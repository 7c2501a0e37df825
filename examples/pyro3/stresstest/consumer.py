#!/usr/bin/env python3
"""Pyro3's stresstest/consumer.py, ported mechanically to Python 3 and eventservice.

Twenty TrafficCounters, each a Subscriber *and* a Thread, listen at once;
each switches its subscription from inside event() after four cars. Ctrl-C
aborts them all and waits for their threads.

    python examples/pyro3/stresstest/consumer.py     # with producer.py running too
"""
import threading
import time
from threading import Thread

from Pyro5.errors import NamingError

from eventservice import Subscriber


class TrafficCounter(Subscriber, Thread):
    def __init__(self, id):
        self.subjPrefix = "STRESSTEST.CARS.HEADING."
        Subscriber.__init__(self)
        Thread.__init__(self)
        self.patterns = ["north", "east", "south", "west"]
        self.currentPattern = None
        self.counter = 0
        self.id = id
        self.lock = threading.Lock()  # Pyro3: Pyro.util.getLockObject()
        self.subscribeNextPattern()

    def subscribeNextPattern(self):
        # because this is called from an event,
        # and that may occur in multiple threads concurrently,
        # we need a lock on this.
        with self.lock:
            if self.currentPattern:
                self.unsubscribe(self.subjPrefix + self.currentPattern)
            try:
                self.currentPattern = self.patterns.pop()
                print(self.id, "I am now watching for cars heading", self.currentPattern, flush=True)
                self.subscribe(self.subjPrefix + self.currentPattern)
            except IndexError:
                print(self.id, "I watched all directions. Start over.", flush=True)
                self.patterns = ["north", "south", "east", "west"]
                self.currentPattern = self.patterns.pop()
                self.subscribe(self.subjPrefix + self.currentPattern)

    def event(self, event):
        (color, car) = event.msg
        print(self.id, "A", color, car, "went", event.subject[len(self.subjPrefix):], flush=True)
        self.counter += 1
        if self.counter >= 4:
            self.counter = 0
            print(self.id, "There were enough cars in that direction. Let's look somewhere else.", flush=True)
            self.subscribeNextPattern()

    def run(self):
        try:
            print(self.id, "Going to count cars.", flush=True)
            self.listen()
            print(self.id, "Stopped counting cars.", flush=True)
        except NamingError:
            print("Cannot find service. Is the Event Service running?")


def main():
    threads = []
    for i in range(20):
        tc = TrafficCounter(i)
        tc.start()
        threads.append(tc)

    try:
        while 1:
            time.sleep(10)
    except KeyboardInterrupt:
        print("Break-- waiting for threads to stop.", flush=True)
        for tc in threads:
            tc.abort()
        for tc in threads:
            tc.join()


if __name__ == "__main__":
    main()
