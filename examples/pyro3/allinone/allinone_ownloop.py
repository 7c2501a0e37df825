#!/usr/bin/env python3
"""Pyro3's AllInOne/allinone_ownloop.py, ported mechanically to Python 3, eventservice and Pyro5.

This application creates a Name Server, Event Server, Pyro server, and
clients, and uses a custom event loop to keep them all running in parallel.
The custom loop runs in its own server thread otherwise we can't run client
invocations, obviously. The main loop calls Pyro objects to set some
artificial properties. Those objects publish those events on a ES channel,
on which an event listener is subscribed. That listener prints the events
that it receives.

    python examples/pyro3/allinone/allinone_ownloop.py [--rounds 10] [--interval 1]

NOTE: it starts its own name server on Pyro5's NS_HOST/NS_PORT: no other may run there.

What the port changed: print(); ``Pyro.EventService.Server``/``Clients`` ->
``eventservice``; Pyro3's NameServerStarter -> Pyro5's start_ns, whose daemon
offers ``sockets``/``events(ready)``; Pyro3's Daemon calls -> Pyro5's; and, so
that it can end by itself, --rounds/--interval, a check that the listener got
every event in order, and a clean shutdown with Pyro3's ``shutdown(es)``.
"""
import argparse
import random
import select
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


################ Multi-purpose monolithic server. #####################
# handles all socket events from NS, ES, Pyro daemon.
class Server(Thread):
    def __init__(self):
        Thread.__init__(self)
        self.daemon = True
        self.running = True
        self.ns_daemon = None
        self.ns_sockets = []
        self.es_starter = None
        self.es_sockets = []
        self.pdaemon = None
        # daemon sockets are dynamic...
        self.listener = None
        self.listener_sockets = []

    def setNameServerDaemon(self, daemon):
        self.ns_daemon = daemon
        self.ns_sockets = daemon.sockets

    def setEventServerStarter(self, starter):
        starter.waitUntilStarted()
        self.es_starter = starter
        self.es_sockets = starter.getServerSockets()

    def setPyroDaemon(self, pdaemon):
        self.pdaemon = pdaemon

    def setEventListener(self, listener):
        self.listener = listener
        self.listener_sockets = listener.getDaemon().getServerSockets()

    def run(self):
        while self.running:
            all_sockets = self.ns_sockets + self.es_sockets + self.listener_sockets
            daemon_sockets = []
            if self.pdaemon:
                # daemon sockets are dynamic.
                daemon_sockets = self.pdaemon.sockets
                all_sockets.extend(daemon_sockets)

            ################### CUSTOM EVENT LOOP ####################

            if all_sockets:
                ins = select.select(all_sockets, [], [], 1)[0]
            else:
                time.sleep(0.1)
                continue

            ##########################################################
            if not self.running:
                break
            # check for Name Server sockets...
            ready = [sock for sock in self.ns_sockets if sock in ins]
            if ready:
                self.ns_daemon.events(ready)
            # check for Event Server sockets....
            for es_sock in self.es_sockets:
                if es_sock in ins:
                    self.es_starter.handleRequests(timeout=0)
                    break
            # check for Daemon Server sockets....
            ready = [sock for sock in daemon_sockets if sock in ins]
            if ready:
                self.pdaemon.events(ready)
            # check for Event listener sockets...
            for l_sock in self.listener_sockets:
                if l_sock in ins:
                    self.listener.getDaemon().handleRequests(timeout=0)
                    break


############################# MAIN LOOP #############################


def main(argv=None):
    parser = argparse.ArgumentParser(description="Name server, Event Service, publishers and a listener, "
                                                 "all served from one custom select loop.")
    parser.add_argument("--rounds", type=int, default=10, help="property changes per publisher (default 10)")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between rounds (default 1)")
    options = parser.parse_args(argv)

    server = Server()
    server.start()

    # We are starting the different servers in a separate thread (here),
    # otherwise the custom server thread cannot handle the concurrent
    # invocations (for instance, the ES needs the NS when it starts...)
    print("STARTING NAME SERVER")
    _, ns_daemon, _ = nameserver.start_ns(enableBroadcast=False)
    server.setNameServerDaemon(ns_daemon)
    print("NAME SERVER STARTED ON", ns_daemon.locationStr)

    print("STARTING EVENT SERVER")
    starter = eventservice.EventServiceStarter()  # no special identification
    # use port autoselect
    es_port = 0
    starter.initialize(port=es_port, norange=(es_port == 0))
    server.setEventServerStarter(starter)
    print("EVENT SERVER STARTED ON", starter.daemon.locationStr)

    print("CREATING PYRO SERVER OBJECTS AND PYRO DAEMON")
    # use port autoselect
    daemon = pyro.Daemon(port=0)
    ns = pyro.locate_ns()
    publishers = [PropertyChangePublisher(f"publisher{number}") for number in (1, 2, 3)]
    for publisher in publishers:
        ns.register(publisher.name, daemon.register(publisher, publisher.name))
    server.setPyroDaemon(daemon)
    print("PYRO SERVER ACTIVATED ON", daemon.locationStr)

    listener = PropertyChangeListener()
    listener.subscribeMatch("^publisher.\\..*$")
    server.setEventListener(listener)
    print("EVENT LISTENER ACTIVATED")

    print("ALL SERVERS WERE STARTED!", flush=True)
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

    with listener.changed:
        listener.changed.wait_for(lambda: len(listener.received) >= len(sent), timeout=10)
    in_order = listener.received == sent
    order = "IN ORDER" if in_order else "OUT OF ORDER"
    print(f"LISTENER RECEIVED {len(listener.received)} OF {len(sent)} EVENTS, {order}", flush=True)
    server.running = False
    server.join()
    for proxy in (p1, p2, p3):
        proxy._pyroRelease()
    # the ES unregisters itself at shutdown: serve the name server meanwhile
    Thread(target=ns_daemon.requestLoop, daemon=True).start()
    starter.shutdown(starter.es)
    print("EVENT SERVER SHUT DOWN:", not starter.mustContinueRunning(), flush=True)
    listener.close()
    for publisher in publishers:
        publisher.close()
    daemon.close()
    ns_daemon.close()
    return 0 if in_order else 1


if __name__ == "__main__":
    sys.exit(main())
