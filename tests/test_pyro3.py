"""Pyro3 code after a mechanical port: Pyro3's names and their meaning on the skeletons and the starter,
serving a Subscriber and the Event Service from the program's own loop, and ported Pyro3 examples
(examples/pyro3) run as real processes against a real name server and Event Service."""
from __future__ import annotations

import re
import select
import signal
import socket
import subprocess
import threading

import pytest
from Pyro5 import errors
from Pyro5.client import Proxy

import eventservice
from conftest import LOCALHOST, WAIT, free_port, read_line
from eventservice.client.subscriber import SubscriberDaemon
from test_examples import finish

pytestmark = pytest.mark.network

CHATBOX = "examples/pyro3/chatbox"
ALLINONE = "examples/pyro3/allinone"
STRESSTEST = "examples/pyro3/stresstest"
DISTRIBUTED = "examples/pyro3/distributed"



class OwnLoop:
    """Serves sockets from a thread the way a program's own select loop does, until stop()."""

    def __init__(self, sockets, serve) -> None:
        self._sockets = sockets  # a callable: asked each round (sockets may change)
        self._serve = serve  # called with the ready sockets
        self._running = True
        self.thread = threading.Thread(target=self._run, name="test-own-loop", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while self._running:
            ready = select.select(self._sockets(), [], [], 0.05)[0]
            if ready and self._running:
                self._serve(ready)

    def stop(self) -> None:
        self._running = False
        self.thread.join(WAIT)
        assert not self.thread.is_alive()


# -- ported Pyro3 programs, as processes ---------------------------------------------------------------


def test_allinone_own_loop_serves_ns_es_objects_and_a_subscriber_from_one_select_loop(pyro_settings, processes):
    """Pyro3's allinone_ownloop.py, ported: initialize(port=0, norange=...), getServerSockets() and
    handleRequests(timeout=0) for the ES and for the Subscriber's getDaemon(), in one select loop;
    the listener gets all 21 events in order; shutdown(es) stops the ES."""
    pyro_settings.NS_PORT = free_port()  # the program starts its own name server there
    program = processes.spawn(f"{ALLINONE}/allinone_ownloop.py", "--rounds", "7", "--interval", "0")
    output, errors_ = finish(program, timeout=3 * WAIT)
    assert program.returncode == 0, errors_
    # two threads print: a line may be split by the other's, so no anchors
    sent = re.findall(r"(publisher\d) sets (\w) to (\d+)", output)
    got = re.findall(r"Listener got Event: (publisher\d)\.(\w)=(\d+)", output)
    assert len(sent) == 21
    assert got == sent
    assert "LISTENER RECEIVED 21 OF 21 EVENTS, IN ORDER" in output
    assert "EVENT SERVER SHUT DOWN: True" in output


def test_allinone_threads_starts_the_es_with_norange_in_a_thread(pyro_settings, processes):
    """Pyro3's allinone_threads.py, ported: start(port=0, norange=...) in a thread, waitUntilStarted(),
    a listener in listen() in another; every event arrives in order; shutdown() ends start()."""
    pyro_settings.NS_PORT = free_port()
    program = processes.spawn(f"{ALLINONE}/allinone_threads.py", "--rounds", "5", "--interval", "0")
    output, errors_ = finish(program, timeout=3 * WAIT)
    assert program.returncode == 0, errors_
    sent = re.findall(r"(publisher\d) sets (\w) to (\d+)", output)
    got = re.findall(r"Listener got Event: (publisher\d)\.(\w)=(\d+)", output)
    assert len(sent) == 15
    assert got == sent
    assert "EVENT SERVER SHUT DOWN: True" in output


def test_stresstest_subscriber_threads_and_publisher_threads_stop_on_ctrl_c(es, processes):
    """Pyro3's stresstest, ported: 20 TrafficCounter(Subscriber, Thread) switch subscriptions inside
    event() while 10 VehicleProducer(Publisher, Thread) publish; Ctrl-C aborts and joins them all."""
    consumer = processes.spawn(f"{STRESSTEST}/consumer.py")
    for _ in range(20):
        read_line(consumer, expect="Going to count cars.")
    producer = processes.spawn(f"{STRESSTEST}/producer.py")
    read_line(consumer, expect="Let's look somewhere else.")  # switched its subscription inside event()
    read_line(consumer, expect="I am now watching for cars heading")  # and subscribed again
    producer.send_signal(signal.SIGINT)
    output, errors_ = finish(producer)
    assert producer.returncode == 0, errors_
    assert output.count("Producer stopped.") == 10
    consumer.send_signal(signal.SIGINT)
    output, errors_ = finish(consumer)
    assert consumer.returncode == 0, errors_
    assert "Break-- waiting for threads to stop." in output
    assert output.count("Stopped counting cars.") == 20
    assert "Traceback" not in errors_


def test_distributed_computing_monitor_shows_a_partitions_progress(es, processes):
    """Pyro3's distributed-computing monitor (a pattern Subscriber) and a TaskPartition (a Publisher
    subclass), ported: the monitor sees START, the progress steps and FINISHED, in order, then stops."""
    monitor = processes.spawn(f"{DISTRIBUTED}/monitor.py", "--events", "5", "--no-clear")
    read_line(monitor, expect="Monitor is listening (0)")
    partition = processes.spawn(f"{DISTRIBUTED}/run_partition.py", "--name", "count-1", "--steps", "4")
    output, errors_ = finish(partition)
    assert partition.returncode == 0, errors_
    output, errors_ = finish(monitor)
    assert monitor.returncode == 0, errors_
    rows = re.findall(r"^count-1 +(\[.*\])$", output, re.MULTILINE)
    assert rows == ["[" + " " * 30 + "]", "[" + "*" * 8 + " " * 22 + "]", "[" + "*" * 15 + " " * 15 + "]",
                    "[" + "*" * 23 + " " * 7 + "]", "[done]"]


def _type(process: subprocess.Popen, text: str) -> None:
    process.stdin.write(text)
    process.stdin.flush()


def test_chatbox_clients_chat_and_leave_by_quit_and_by_ctrl_c(es, processes):
    """Pyro3's chatbox-ES, ported: a Publisher+Subscriber subclass whose input thread loops on
    abortListen; /quit ends it through abort(); Ctrl-C raises KeyboardInterrupt out of listen(),
    whose handler aborts, and the input thread then sees abortListen set."""
    server = processes.spawn(f"{CHATBOX}/server.py")
    read_line(server, expect="Chatbox open.")
    alice = processes.spawn(f"{CHATBOX}/client.py", stdin=subprocess.PIPE)
    _type(alice, "lobby\nalice\n")
    read_line(alice, expect="Ready for input")
    bob = processes.spawn(f"{CHATBOX}/client.py", stdin=subprocess.PIPE)
    _type(bob, "lobby\nbob\n")
    read_line(bob, expect="Ready for input")
    read_line(alice, expect="[SERVER] ** bob joined **")
    _type(alice, "hello bob\n")
    read_line(bob, expect="[alice] hello bob")  # bob's listen() runs: it delivered this

    bob.send_signal(signal.SIGINT)
    read_line(bob, expect="Shutting down... (press enter)")
    _type(bob, "\n")
    output, errors_ = finish(bob)
    assert bob.returncode == 0, errors_
    assert "Bye!" in output
    assert "Traceback" not in errors_
    read_line(alice, expect="[SERVER] ** bob left **")

    _type(alice, "/quit\n")
    output, errors_ = finish(alice)
    assert alice.returncode == 0, errors_
    assert "Bye!" in output


# -- EventServiceStarter ----------------------------------------------------------------------------


def test_starter_served_from_own_loop_with_pyro3_calls(nameserver, collectors):
    """initialize(norange=...), getServerSockets() and handleRequests(0) in a select loop serve
    publishers and subscribers; shutdown(es) ends it and mustContinueRunning() turns False."""
    starter = eventservice.EventServiceStarter()
    uri = starter.initialize(LOCALHOST, 0, norange=True, nsHost=LOCALHOST, nsPort=nameserver.port)
    assert starter.waitUntilStarted()
    assert starter.mustContinueRunning() and starter.running
    assert starter.es is starter.service and starter.started.is_set()
    sockets = starter.getServerSockets()
    assert sockets

    def serve(ready) -> None:
        if starter.mustContinueRunning():
            starter.handleRequests(timeout=0)

    loop = OwnLoop(lambda: sockets, serve)
    subscriber = collectors()
    try:
        subscriber.subscribe("OWN.ES")
        with eventservice.Publisher() as publisher:
            assert str(publisher.ES_uri) == str(uri)
            assert [publisher.publish("OWN.ES", number) for number in range(3)] == [1, 1, 1]
        assert [event.msg for event in subscriber.take(3)] == [0, 1, 2]
    finally:
        subscriber.close()  # while the loop still serves the ES
        loop.stop()
        starter.shutdown(starter.es)
    assert not starter.mustContinueRunning() and not starter.running
    with Proxy(nameserver.uri) as ns, pytest.raises(errors.NamingError):
        ns.lookup(eventservice.EVENTSERVER_NAME)  # shutdown(es) unregistered it


def test_starter_handle_requests_zero_returns_when_nothing_is_pending(start_es):
    """handleRequests(0) serves what is pending and returns (it does not loop)."""
    running = start_es()
    starter = eventservice.EventServiceStarter()
    starter.initialize(LOCALHOST, 0, useNameServer=False)
    done = threading.Event()

    def call() -> None:
        starter.handleRequests(0)
        done.set()

    threading.Thread(target=call, daemon=True).start()
    try:
        assert done.wait(WAIT)
    finally:
        starter.shutdown(None)
    assert running.starter.mustContinueRunning()


def test_starter_shutdown_refuses_another_es_object(es):
    """shutdown(es) takes the starter's own Event Service or None; anything else is a clear error."""
    with pytest.raises(ValueError, match=r"starter\.es"):
        es.starter.shutdown(object())
    assert es.starter.mustContinueRunning()


def test_wait_until_started_answers_false_when_starting_failed(es, nameserver):
    """A second ES refused at initialize(): waitUntilStarted() returns False instead of blocking forever."""
    second = eventservice.EventServiceStarter()
    with pytest.raises(eventservice.AlreadyRunningError):
        second.initialize(LOCALHOST, 0, nsHost=LOCALHOST, nsPort=nameserver.port)
    answer: list[bool] = []
    waiter = threading.Thread(target=lambda: answer.append(second.waitUntilStarted()), daemon=True)
    waiter.start()
    waiter.join(WAIT)
    assert answer == [False]


# -- Subscriber served from the program's own loop ------------------------------------------------


class LoopRecorder(eventservice.Subscriber):
    def __init__(self) -> None:
        super().__init__()
        self.received: list = []
        self.threads: set = set()
        self.arrived = threading.Condition()

    def event(self, event) -> None:
        with self.arrived:
            self.received.append(event.msg)
            self.threads.add(threading.current_thread())
            self.arrived.notify_all()

    def wait_for(self, count: int) -> list:
        with self.arrived:
            assert self.arrived.wait_for(lambda: len(self.received) >= count, WAIT), self.received
            return list(self.received)


@pytest.mark.parametrize("threaded", [True, False])
def test_subscriber_served_from_own_loop_pyro5_style(es, threaded):
    """select on getDaemon().sockets, pass the ready ones to events(): every event arrives, in order,
    without listen(); single-threaded, event() runs in the loop's own thread."""
    subscriber = LoopRecorder()
    subscriber.setThreading(threaded)
    daemon = subscriber.getDaemon()
    assert isinstance(daemon, SubscriberDaemon) and subscriber.daemon is daemon
    loop = OwnLoop(lambda: list(daemon.sockets), daemon.events)
    try:
        subscriber.subscribe("OWN.LOOP")
        with eventservice.Publisher() as publisher:
            for number in range(21):
                assert publisher.publish("OWN.LOOP", number) == 1
        assert subscriber.wait_for(21) == list(range(21))
        if not threaded:
            assert subscriber.threads == {loop.thread}
    finally:
        loop.stop()
        subscriber.close()


def test_subscriber_served_from_own_loop_pyro3_style(es):
    """Pyro3's own loop: getDaemon().getServerSockets() once, handleRequests(timeout=0) when ready."""
    subscriber = LoopRecorder()
    subscriber.subscribeMatch(r"^OWN\.")
    daemon = subscriber.getDaemon()
    sockets = daemon.getServerSockets()
    loop = OwnLoop(lambda: sockets, lambda ready: daemon.handleRequests(timeout=0))
    try:
        with eventservice.Publisher() as publisher:
            for number in range(21):
                assert publisher.publish("OWN.PYRO3", number) == 1
        assert subscriber.wait_for(21) == list(range(21))
    finally:
        loop.stop()
        subscriber.close()


def test_subscriber_handle_requests_waits_on_other_sockets_too(es):
    """handleRequests(timeout, others, callback) as in Pyro3: ready other sockets go to the callback;
    with nothing ready it returns after the timeout."""
    with eventservice.Subscriber() as subscriber:
        daemon = subscriber.getDaemon()
        reader, writer = socket.socketpair()
        with reader, writer:
            seen: list = []
            daemon.handleRequests(0, [reader], seen.extend)
            assert seen == []
            writer.send(b"x")
            daemon.handleRequests(WAIT, [reader], seen.extend)
            assert seen == [reader]
            with pytest.raises(ValueError, match="callback"):
                daemon.handleRequests(0, [reader])


# -- Pyro3's names ----------------------------------------------------------------------------------


def test_pyro3_attributes_of_subscriber_and_publisher(es, nameserver):
    """ES_uri, ES_ident, NS (with Pyro3's resolve), getProxy(), GUID(), daemon, abortListen."""
    with eventservice.Subscriber() as subscriber, eventservice.Publisher() as publisher:
        assert str(subscriber.ES_uri) == str(es.uri) == str(publisher.ES_uri)
        assert subscriber.ES_ident is None and publisher.ES_ident is None
        with subscriber.NS as ns:
            assert str(ns.resolve(eventservice.EVENTSERVER_NAME)) == str(es.uri)
            assert str(ns.lookup(eventservice.EVENTSERVER_NAME)) == str(es.uri)
            with pytest.raises(errors.NamingError, match=r"no groups.*'Pyro\.EventService'"):
                ns.resolve(":Pyro.EventService")
            with pytest.raises(NotImplementedError, match="no groups"):
                ns.createGroup(":ChatBox-ES")
        proxy = subscriber.getProxy()
        assert proxy._pyroUri == subscriber.getAttrProxy()._pyroUri
        assert proxy._pyroUri.object == subscriber.GUID()
        assert subscriber.daemon is subscriber.getDaemon()
        assert subscriber.abortListen == 0
        with pytest.raises(NotImplementedError, match="mobile code"):
            subscriber.setCodeValidator(lambda *args: True)
        with pytest.raises(NotImplementedError, match="override event"):
            subscriber.delegateTo(object())
    with eventservice.Subscriber(esURI=es.uri) as direct:
        assert direct.NS is None  # Pyro3 had no NS when given the ES's URI


def test_getproxy_subscribes_through_a_plain_es_proxy(es):
    """Pyro3 style: getES().subscribe(subjects, self.getProxy()) on a proxy of one's own."""
    subscriber = LoopRecorder()
    thread = subscriber.listenInThread()
    try:
        with subscriber.getES() as service:
            service.subscribe("VIA.PROXY", subscriber.getProxy())
        with eventservice.Publisher() as publisher:
            assert publisher.publish("VIA.PROXY", "hi") == 1
        assert subscriber.wait_for(1) == ["hi"]
    finally:
        subscriber.close()
        thread.join(WAIT)


def test_abortlisten_stays_set_after_listen_returns_and_listen_can_run_again(es):
    """abort() sets abortListen, which stays 1 once listen() returned (threads polling it see it);
    a new listen() starts afresh and serves; setting abortListen = 1 also stops it."""
    subscriber = LoopRecorder()
    try:
        subscriber.subscribe("AGAIN")
        first = subscriber.listenInThread()
        subscriber.abort()
        first.join(WAIT)
        assert not first.is_alive()
        assert subscriber.abortListen == 1
        second = subscriber.listenInThread()
        with eventservice.Publisher() as publisher:
            assert publisher.publish("AGAIN", 1) == 1
        assert subscriber.wait_for(1) == [1]
        assert subscriber.abortListen == 0
        subscriber.abortListen = 1
        second.join(WAIT)
        assert not second.is_alive()
    finally:
        subscriber.close()


def test_subscriber_that_is_also_a_thread_keeps_threadings_daemon_flag(es):
    """Pyro3's stresstest consumer derives from Subscriber and Thread: ``daemon`` keeps threading's meaning."""

    class Counter(eventservice.Subscriber, threading.Thread):
        def __init__(self) -> None:
            eventservice.Subscriber.__init__(self)
            threading.Thread.__init__(self)

        def run(self) -> None:
            self.listen()

    counter = Counter()
    try:
        counter.daemon = True
        assert counter.daemon is True
        assert isinstance(counter.getDaemon(), SubscriberDaemon)
        counter.start()
        counter.abort()
        counter.join(WAIT)
        assert not counter.is_alive()
    finally:
        counter.close()


def test_default_event_prints_like_pyro3(es, capsys):
    """The default event() prints the event (Pyro3's ``print event``), in Pyro3's <EVENT ...> form."""
    event = eventservice.Event("STOCKQUOTE.SUN", 22.44, 0.0)
    with eventservice.Subscriber() as subscriber:
        subscriber.event(event)
    assert capsys.readouterr().out == str(event) + "\n"
    assert str(event).startswith("<EVENT SUBJ STOCKQUOTE.SUN (")
