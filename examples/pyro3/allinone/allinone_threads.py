#!/usr/bin/env python3
"""Pyro3's AllInOne/allinone_threads.py, ported mechanically to Python 3, eventservice and Pyro5.

This application creates a Name Server, Event Server, Pyro server, and
clients, and uses threads to keep them all running in parallel. The main
loop calls Pyro objects to set some artificial properties. Those objects
publish those events on a ES channel, on which an event listener is
subscribed. That listener prints the events that it receives.

Thread 1: Pyro Name Server
Thread 2: Pyro Event Server (EventServiceStarter.start(port=0, norange=True))
Thread 3: our own Pyro Daemon
Thread 4: our own Event listener loop (Subscriber.listen())
Thread 5: Main Loop, calling our Pyro object to set properties.

    python examples/pyro3/allinone/allinone_threads.py [--rounds 10] [--interval 1]

NOTE: it starts its own name server on Pyro5's NS_HOST/NS_PORT: no other may run there.
The port changed what allinone_ownloop.py's did (see there).
"""
import argparse
import random
import string
import sys
import threading
import time
from threading import Thread

from Pyro5 import api as pyro
from Pyro5 import nameserver

import eventservice
from eventservice import Publisher, Subscriber

####################### EVENT SERVER LISTENER & PUBLISHER #################


@pyro.expose
class PropertyChangePublisher(Publisher):
    def __init__(self, name):
        Publisher.__init__(self)
        self.name = name

    def setProperty(self, property, value):
        print(f"{self.name} sets {property} to {value}", flush=True)
        self.publish(self.name + "." + property, value)


class PropertyChangeListener(Subscriber):
    def __init__(self):
        Subscriber.__init__(self)
        self.received = []
        self.changed = threading.Condition()

    def event(self, event):
        # event.msg, subject, time
        print(f"Listener got Event: {event.subject}={event.msg}", flush=True)
        with self.changed:
            self.received.append(event.msg)
            self.changed.notify_all()


####################### NS, ES, DAEMON, EVENT LISTENER THREADS ############


class NameServer(Thread):
    def __init__(self):
        Thread.__init__(self)
        self.daemon = True
        self.started = threading.Event()

    def run(self):
        print("Launching Pyro Name Server", flush=True)
        _, self.ns_daemon, _ = nameserver.start_ns(enableBroadcast=False)
        self.started.set()
        self.ns_daemon.requestLoop()

    def waitUntilStarted(self):
        return self.started.wait()


class EventServer(Thread):
    def __init__(self):
        Thread.__init__(self)
        self.daemon = True
        self.starter = eventservice.EventServiceStarter()  # no special identification

    def run(self):
        print("Launching Pyro Event Server", flush=True)
        # we're using the OS's automatic port allocation
        es_port = 0
        self.starter.start(port=es_port, norange=(es_port == 0))

    def waitUntilStarted(self, timeout=None):
        return self.starter.waitUntilStarted(timeout)


class PyroServer(Thread):
    def __init__(self):
        Thread.__init__(self)
        self.daemon = True
        self.ready = threading.Event()

    def run(self):
        print("Creating Pyro server objects and Pyro Daemon", flush=True)
        # we're using the OS's automatic port allocation
        self.pdaemon = pyro.Daemon(port=0)
        ns = pyro.locate_ns()
        for name in ("publisher1", "publisher2", "publisher3"):
            ns.register(name, self.pdaemon.register(PropertyChangePublisher(name), name))
        self.ready.set()
        self.pdaemon.requestLoop()


class EventListener(Thread):
    def __init__(self):
        Thread.__init__(self)
        self.daemon = True
        self.listener = PropertyChangeListener()
        self.listener.subscribeMatch("^publisher.\\..*$")

    def run(self):
        print("EVENT LISTENER ACTIVATED", flush=True)
        self.listener.listen()


############################# MAIN LOOP #############################


def main(argv=None):
    parser = argparse.ArgumentParser(description="Name server, Event Service, publishers and a listener, "
                                                 "each in a thread of one process.")
    parser.add_argument("--rounds", type=int, default=10, help="property changes per publisher (default 10)")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between rounds (default 1)")
    options = parser.parse_args(argv)

    nss = NameServer()
    nss.start()
    nss.waitUntilStarted()  # wait until the NS has fully started.
    ess = EventServer()
    ess.start()
    if not ess.waitUntilStarted(10):  # wait until the ES has fully started.
        print("THE EVENT SERVER DID NOT START", flush=True)
        return 1

    listening = EventListener()
    listening.start()

    server = PyroServer()
    server.start()
    server.ready.wait()

    p1 = pyro.Proxy("PYRONAME:publisher1")
    p2 = pyro.Proxy("PYRONAME:publisher2")
    p3 = pyro.Proxy("PYRONAME:publisher3")
    sent = []
    for _ in range(options.rounds):
        print("MAIN LOOP CHANGES PROPERTIES...", flush=True)
        for proxy in (p1, p2, p3):
            sent.append(len(sent))
            proxy.setProperty(random.choice(string.ascii_uppercase), sent[-1])
        time.sleep(options.interval)

    listener = listening.listener
    with listener.changed:
        listener.changed.wait_for(lambda: len(listener.received) >= len(sent), timeout=10)
    in_order = listener.received == sent
    order = "IN ORDER" if in_order else "OUT OF ORDER"
    print(f"LISTENER RECEIVED {len(listener.received)} OF {len(sent)} EVENTS, {order}", flush=True)
    listener.abort()
    listening.join(10)
    listener.close()
    ess.starter.shutdown()
    ess.join(10)
    print("EVENT SERVER SHUT DOWN:", not ess.starter.mustContinueRunning(), flush=True)
    server.pdaemon.shutdown()
    nss.ns_daemon.shutdown()
    return 0 if in_order else 1


if __name__ == "__main__":
    sys.exit(main())
