"""EventServiceStarter: runs an Event Service in this process, as Pyro3's starter did.

It builds the daemon, registers the service in the name server (or an
embedded one) and serves. The ``es`` command (``cli.py``) is a thin layer on it.
"""
from __future__ import annotations

import logging
import select
import threading
import time
import typing as t

from Pyro5 import config as pyro_config
from Pyro5 import core, errors
from Pyro5.nameserver import NameServerDaemon

from ..core.config import Settings, from_environment
from ..pyro import auth, naming
from ..pyro.daemon import BoundedRequestsMixin, ConnectionGuardMixin
from ..pyro.naming import EVENTSERVER_NAME
from .loop import LoopDaemon
from .monitor import Monitor
from .registration import RegistrationWatcher
from .service import EventService, costly_batch, costly_publish
from .statslog import StatsLogger

__all__ = ["AlreadyRunningError", "EventServiceStarter"]

log = logging.getLogger(__name__)


class AlreadyRunningError(errors.NamingError):
    """A live Event Service is already registered in the name server."""


class _AuthNameServerDaemon(ConnectionGuardMixin, BoundedRequestsMixin, auth.AuthDaemonMixin, NameServerDaemon):
    def __init__(self, host: str, port: int, authenticator: auth.Authenticator | None, idle_timeout: float) -> None:
        self.authenticator = authenticator
        super().__init__(host, port, idle_timeout=idle_timeout)


class _SelectorHandle:
    """Something to select() on that is readable whenever the Event Service has work (an epoll selector's fd)."""

    def __init__(self, selector: t.Any) -> None:
        self._selector = selector

    def fileno(self) -> int:
        return int(self._selector.fileno())


class EventServiceStarter:
    """Runs an Event Service in this process, as Pyro3's starter did.

    :param identification: the passphrase clients must prove (None: no passphrase)
    :param settings: the ES tunables; defaults plus ``EVENTSERVICE_*`` environment variables
    :param backbone: ``redis://HOST:PORT[/DB]`` (or ``rediss://``; several, comma-separated) to share
        subjects with other Event Services over Redis (needs ``eventservice[redis]``); None: a single ES
    :param backbone_password: the Redis password, overriding one in the URLs

    ``start`` serves until ``shutdown``; ``initialize`` sets everything up and
    returns, for programs that call ``handleRequests`` themselves or serve from
    a thread, or from their own select loop with ``getServerSockets()`` and
    ``handleRequests(0)`` (Pyro3's way; Pyro5's is ``daemon.sockets`` and
    ``daemon.events(ready)``). Starting lowers one of
    Pyro5's process-wide settings, which Pyro5 offers no other way:
    MAX_MESSAGE_SIZE, to about ``max_message_size``; and it raises the
    process's soft limit of open files to the hard limit.
    """

    def __init__(self, identification: str | None = None, settings: Settings | None = None,
                 backbone: str | None = None, backbone_password: str | None = None) -> None:
        self.settings = settings or from_environment()
        self._backbone = backbone  # redis://HOST:PORT[/DB][,redis://...]: share subjects with other nodes
        self._backbone_password = backbone_password
        self.node: t.Any = None  # the backbone node (server/backbone/node.py) when there is a backbone
        self._node_name: str | None = None
        self.authenticator = auth.Authenticator(identification, self.settings.handshake_window) if identification else None
        self.service: EventService | None = None
        self.daemon: LoopDaemon | None = None
        self.uri: core.URI | None = None
        self.nsUri: core.URI | None = None
        self.monitor: Monitor | None = None  # the HTTP monitoring endpoint, when settings.http is set
        self._ns_daemon: _AuthNameServerDaemon | None = None
        self._ns_thread: threading.Thread | None = None
        self._ns_location: tuple[str | None, int | None] | None = None
        self._started = threading.Event()
        self._start_decided = threading.Event()  # started, or failed to
        self._stopping = threading.Event()
        self._stopped = threading.Event()
        self._loop_idle = threading.Event()
        self._loop_idle.set()
        self._loop_thread: threading.Thread | None = None
        self._background: list[RegistrationWatcher | StatsLogger] = []  # stopped first at shutdown

    def __enter__(self) -> EventServiceStarter:
        return self

    def __exit__(self, *exc_info: t.Any) -> None:
        self.shutdown()

    def start(self, *args: t.Any, **kwargs: t.Any) -> None:
        """Set up (same arguments as ``initialize``) and serve until ``shutdown()``."""
        self.initialize(*args, **kwargs)
        try:
            self.handleRequests()
        finally:
            self.shutdown()

    def initialize(
        self,
        hostname: str = "",
        port: int | None = None,
        useNameServer: bool = True,
        embeddedNameServer: bool = False,
        nsHost: str | None = None,
        nsPort: int | None = None,
        norange: bool = False,
    ) -> core.URI:
        """Create the daemon and the service, register it, and return its URI without serving.

        :param hostname: interface to bind ('' for Pyro5's HOST setting)
        :param port: port to bind (None or 0 for any free port)
        :param useNameServer: register in a name server (False: clients need the URI)
        :param embeddedNameServer: run a name server in this process (on nsHost:nsPort)
        :param nsHost: the name server's host (default Pyro5's NS_HOST, or ``hostname`` when embedded)
        :param nsPort: the name server's port (default Pyro5's NS_PORT)
        :param norange: Pyro3's "bind exactly this port, try no range"; accepted and
            always true here: Pyro5 binds exactly ``port`` (0 or None: a free one)
        Raises AlreadyRunningError when a live ES is registered already.
        """
        del norange  # nothing to do: Pyro5 never tries a range of ports
        host = hostname or pyro_config.HOST
        _raise_file_limit()  # a socket per client and per subscriber: the usual 1024 is too few
        # room for the request's subjects and framing on top of the message itself
        pyro_config.MAX_MESSAGE_SIZE = min(pyro_config.MAX_MESSAGE_SIZE, self.settings.max_message_size + 64 * 1024)
        if embeddedNameServer:
            nsHost = nsHost or host  # noqa: N806  (Pyro3's parameter names)
            self._start_name_server(nsHost, nsPort if nsPort is not None else pyro_config.NS_PORT)
            assert self._ns_daemon is not None
            nsPort = self._ns_daemon.sock.getsockname()[1]  # noqa: N806
        try:
            take_name = True
            if useNameServer:
                self._ns_location = (nsHost, nsPort)
                take_name = self._refuse_if_running()
            self.service = EventService(self.settings, self.authenticator)
            if self._backbone:
                from .backbone.node import start_node  # imports redis: only with a backbone
                self.node = start_node(self.service, self._backbone, self._backbone_password)
            self.daemon = LoopDaemon(host, port or 0, authenticator=self.authenticator,
                                     idle_timeout=self.settings.idle_timeout,
                                     max_connections=self.settings.max_connections)
            self.uri = self.daemon.register(self.service, EVENTSERVER_NAME)
            for method in ("publish", "publishBatch"):  # the skeletons' marshalled publishes
                self.daemon.serve_directly(EVENTSERVER_NAME, method, getattr(self.service, method))
            self.daemon.serve_in_thread("subscribeMatch")  # checks new patterns in a helper process
            self.daemon.serve_in_thread("publish", when=costly_publish)  # many subjects: long matching
            self.daemon.serve_in_thread("publishBatch", when=costly_batch)
            self.service.connections = self.daemon.transportServer.connections
            self.service.deliver_from(self.daemon.transportServer)
            if self.settings.http:
                self.monitor = Monitor(self.service, self.uri, self.settings, self.authenticator is not None)
            if useNameServer:
                with naming.locate_ns(nsHost, nsPort, self.authenticator) as ns:
                    if take_name:
                        ns.register(EVENTSERVER_NAME, self.uri)
                        log.info("registered %s as %s", self.uri, EVENTSERVER_NAME)
                    if self.node is not None:  # every node also under its own name, found by its metadata
                        self._node_name = naming.node_name(self.uri)
                        ns.register(self._node_name, self.uri, metadata=naming.node_metadata())
                        log.info("registered %s as %s", self.uri, self._node_name)
                if take_name:
                    watcher = RegistrationWatcher(EVENTSERVER_NAME, self.uri, nsHost, nsPort, self.authenticator)
                    self._background.append(watcher.start())
            if self.settings.stats_interval:
                self._background.append(StatsLogger(self.service.stats, self.settings.stats_interval).start())
        except BaseException:
            self._start_decided.set()  # waitUntilStarted() answers False now instead of waiting on
            self._cleanup()
            raise
        self._started.set()
        self._start_decided.set()
        return self.uri

    def waitUntilStarted(self, timeout: float | None = None) -> bool:
        """True once the ES is set up and registered; False if ``timeout`` passed first or starting failed."""
        self._start_decided.wait(timeout)
        return self._started.is_set()

    def getServerSockets(self) -> list[t.Any]:
        """The sockets to select on for reading when serving from your own loop (Pyro3's name).

        Call ``handleRequests(0)`` when one is ready. The Event Service serves every
        connection from one selector, so this is one object standing for all of them
        (the selector's own file descriptor, readable whenever any connection is):
        a list taken once, as Pyro3 programs do, stays right as clients come and go.
        """
        if self.daemon is None:
            raise RuntimeError("initialize() the Event Service first")
        selector = getattr(self.daemon.transportServer, "selector", None)
        if selector is not None and hasattr(selector, "fileno"):
            return [_SelectorHandle(selector)]
        return list(self.daemon.sockets)

    def mustContinueRunning(self) -> bool:
        """True until ``shutdown()`` was called (Pyro3's loop condition)."""
        return not self._stopping.is_set()

    @property
    def running(self) -> bool:
        """Pyro3's attribute: True until ``shutdown()``."""
        return self.mustContinueRunning()

    @property
    def started(self) -> threading.Event:
        """Pyro3's attribute: the event set once the ES is started (see ``waitUntilStarted``)."""
        return self._started

    @property
    def es(self) -> EventService | None:
        """Pyro3's attribute: the Event Service object (also ``service``)."""
        return self.service

    def handleRequests(self, timeout: float | None = None) -> None:
        """Serve requests for ``timeout`` seconds (None: until ``shutdown()``).

        ``handleRequests(0)`` serves what is pending now and returns at once:
        the call for your own loop when a socket of ``getServerSockets()`` is ready.
        """
        if self.daemon is None:
            raise RuntimeError("initialize() the Event Service first")
        if self._stopping.is_set():
            return
        if timeout is not None and timeout <= 0:
            self._serve_pending()
            return
        deadline = None
        timer = None
        if timeout is not None:
            deadline = time.monotonic() + timeout
            timer = threading.Timer(timeout, self._wake)
            timer.daemon = True
            timer.start()
        self._loop_thread = threading.current_thread()
        self._loop_idle.clear()
        try:
            self.daemon.requestLoop(
                lambda: not self._stopping.is_set() and (deadline is None or time.monotonic() < deadline))
        finally:
            self._loop_thread = None
            self._loop_idle.set()
            if timer is not None:
                timer.cancel()

    def shutdown(self, es: t.Any = None) -> None:
        """Stop serving, unregister from the name server and release everything. Idempotent.

        Called from inside the serving thread (a signal handler, say) it only
        ends the loop; the caller of ``start``/``handleRequests`` then cleans up.
        ``es``: Pyro3's argument, this starter's Event Service (``starter.es``) or None.
        """
        if es is not None and es is not self.service:
            raise ValueError("shutdown(es) takes this starter's own Event Service (starter.es) or None")
        self._stopping.set()
        for task in self._background:  # before unregistering: the watcher would register again
            task.stop()
        loop_thread = self._loop_thread
        if loop_thread is not None:
            self._wake()
            if loop_thread is threading.current_thread():
                return
            self._loop_idle.wait(10)
        self._cleanup()

    # -- internals -------------------------------------------------------

    def _serve_pending(self, rounds: int = 100) -> None:
        """Serve what is ready on the daemon's sockets now, without waiting (bounded rounds)."""
        daemon = self.daemon
        for _ in range(rounds):
            if daemon is None or self._stopping.is_set():
                return
            sockets = list(daemon.sockets)
            ready = select.select(sockets, [], [], 0)[0] if sockets else []
            if not ready:
                return
            daemon.events(ready)

    def _wake(self) -> None:
        if self.daemon is not None:
            self.daemon.wakeup()

    def _start_name_server(self, host: str, port: int) -> None:
        self._ns_daemon = _AuthNameServerDaemon(host, port, self.authenticator, self.settings.idle_timeout)
        self.nsUri = self._ns_daemon.uriFor(core.NAMESERVER_NAME)
        self._ns_thread = threading.Thread(target=self._ns_daemon.requestLoop, name="es-nameserver", daemon=True)
        self._ns_thread.start()
        log.info("embedded name server at %s", self.nsUri)

    def _refuse_if_running(self) -> bool:
        """True if EVENTSERVER_NAME is free (or stale) for us; a live one is an error, except for a
        backbone node, which then joins under its own name only."""
        assert self._ns_location is not None
        ns_host, ns_port = self._ns_location
        with naming.locate_ns(ns_host, ns_port, authenticator=self.authenticator) as ns:
            try:
                existing = ns.lookup(EVENTSERVER_NAME)
            except errors.NamingError:
                return True  # nothing registered
        if naming.is_alive(existing, self.authenticator):
            if self._backbone:
                return False
            raise AlreadyRunningError(f"an Event Service is already running at {existing}; stop it first")
        log.warning("replacing stale registration of %s (%s does not answer)", EVENTSERVER_NAME, existing)
        return True

    def _cleanup(self) -> None:
        if self._stopped.is_set():
            return
        if self._ns_location is not None and self.uri is not None:
            try:
                with naming.locate_ns(*self._ns_location, authenticator=self.authenticator) as ns:
                    if self._node_name is not None:
                        ns.remove(self._node_name)
                    if str(ns.lookup(EVENTSERVER_NAME)) == str(self.uri):
                        ns.remove(EVENTSERVER_NAME)
            except errors.PyroError as error:
                log.warning("could not unregister %s from the name server: %s", EVENTSERVER_NAME, error)
        if self.monitor is not None:
            self.monitor.close()
        if self.node is not None:
            self.node.close()
        if self.service is not None:
            self.service.close()
        if self.daemon is not None:
            self.daemon.close()
        if self._ns_daemon is not None:
            self._ns_daemon.shutdown()
            if self._ns_thread is not None:
                self._ns_thread.join(5)
        self._stopped.set()


def _raise_file_limit() -> None:
    try:
        import resource
    except ImportError:  # not on this platform
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard if hard != resource.RLIM_INFINITY else max(soft, 65536), hard))
        except (ValueError, OSError) as error:
            log.info("could not raise the open file limit from %s: %s", soft, error)
