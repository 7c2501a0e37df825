#!/usr/bin/env python3
"""Pyro3's stresstest/producer.py, ported mechanically to Python 3 and eventservice.

Ten VehicleProducers, each a Publisher *and* a Thread, publish cars as fast as
they can (a random pause under 0.1 s). Ctrl-C stops them.

    python examples/pyro3/stresstest/producer.py
"""
import random
import time
from threading import Thread

from Pyro5.errors import NamingError

from eventservice import Publisher

mustStop = 0  # noqa: N816  (Pyro3's name, kept by the port)


class VehicleProducer(Publisher, Thread):
    directions = ("north", "east", "south", "west")
    cars = ("Ford", "Toyota", "Chrysler", "Vauxhall", "Honda", "BMW")
    colors = ("red", "green", "white", "black", "blue", "yellow")

    def __init__(self, id):
        Publisher.__init__(self)
        Thread.__init__(self)
        self.id = id

    def nextVehicle(self):
        direction = random.choice(self.directions)
        car = random.choice(self.cars)
        color = random.choice(self.colors)
        self.publish("STRESSTEST.CARS.HEADING." + direction, (color, car))
        print(self.id, "published", flush=True)

    def run(self):
        print("Producer running.", flush=True)
        try:
            global mustStop
            while not mustStop:
                time.sleep(random.random() / 10)
                self.nextVehicle()
            print("Producer stopped.", flush=True)
        except NamingError:
            print("Cannot find service. Is the Event Service running?")


def main():
    threads = []
    for i in range(10):
        vp = VehicleProducer(i)
        vp.start()
        threads.append(vp)

    try:
        while 1:
            time.sleep(10)
    except KeyboardInterrupt:
        global mustStop
        mustStop = 1

    print("Break-- waiting for threads to stop.", flush=True)
    for vp in threads:
        vp.join()


if __name__ == "__main__":
    main()
