"""The one seam to Pyro5 (eventservice.pyro.compat): each internal hook is still called by Pyro5,
the import check names what is missing, and Pyro5 itself stays unchanged for daemons that are not ours."""
from __future__ import annotations

import contextlib
import socket
import threading

import Pyro5
import pytest
from Pyro5 import config as pyro_config
from Pyro5 import errors, protocol, socketutil
from Pyro5.api import Daemon, Proxy, expose

from conftest import LOCALHOST, WAIT
from eventservice.pyro import compat
from eventservice.pyro.auth import Authenticator, PassphraseError, make_proxy
from eventservice.pyro.daemon import GuardedDaemon
from eventservice.server.loop import LoopDaemon

pytestmark = pytest.mark.network


@expose
class Echo:
    def size(self, data: str) -> int:
        return len(data)


@contextlib.contextmanager
def serving(daemon):
    """Run ``daemon``'s requestLoop in a thread; yield the URI of an Echo object in it."""
    uri = daemon.register(Echo(), "echo")
    thread = threading.Thread(target=daemon.requestLoop, daemon=True)
    thread.start()
    try:
        yield uri
    finally:
        daemon.shutdown()
        thread.join(WAIT)


def closed_by_server(sock: socket.socket) -> bool:
    """True once the server closed ``sock`` (after any farewell it sends); False if it stays open for WAIT."""
    sock.settimeout(WAIT)
    try:
        while sock.recv(4096):
            pass
    except ConnectionResetError:
        pass
    except TimeoutError:
        return False
    return True


def test_import_check_names_what_is_missing_and_the_version(monkeypatch):
    """Were Pyro5 to rename an internal, importing eventservice fails loudly, naming it and Pyro5's version."""
    monkeypatch.delattr(protocol, "_header_size")
    monkeypatch.delattr(socketutil, "__ssl_client_context")
    with pytest.raises(ImportError) as refusal:
        compat._check()
    message = str(refusal.value)
    assert "_header_size" in message and "__ssl_client_context" in message and Pyro5.__version__ in message


def test_idle_close_hook_pyro5_calls_our_handshake():
    """GuardedDaemon bounds silence through its _handshake override: a silent connection gets closed."""
    with serving(GuardedDaemon(LOCALHOST, 0, idle_timeout=0.3)) as uri:
        with socket.create_connection((LOCALHOST, uri.port)) as silent:
            assert closed_by_server(silent)


def test_inflation_bound_on_our_daemons_only():
    """A compressed request that inflates beyond MAX_MESSAGE_SIZE is refused by our daemons (the subscriber's
    GuardedDaemon and the ES's LoopDaemon), while a plain Pyro5 daemon in this process serves it as Pyro5 does."""
    pyro_config.MAX_MESSAGE_SIZE = 200_000
    pyro_config.COMPRESSION = True
    bomb = "x" * 1_000_000  # about 1 KB compressed
    with serving(Daemon(LOCALHOST, 0)) as plain:
        with Proxy(plain) as proxy:
            proxy._pyroTimeout = WAIT
            assert proxy.size(bomb) == len(bomb)  # Pyro5's own behaviour, unchanged by importing eventservice
    for ours in (GuardedDaemon(LOCALHOST, 0), LoopDaemon(LOCALHOST, 0)):
        with serving(ours) as uri:
            with Proxy(uri) as proxy:
                proxy._pyroTimeout = WAIT
                assert proxy.size("small") == 5  # compressed, within the bound: served
                with pytest.raises(errors.CommunicationError):
                    proxy.size(bomb)
    assert protocol.ReceivingMessage.add_payload.__module__ == "Pyro5.protocol"  # no monkeypatch


def test_tls_context_hook_makes_pyro5_build_new_contexts():
    """Pyro5 caches one SSL context per process; use_tls relies on compat.reset_ssl_contexts to drop it."""
    try:
        first = socketutil.get_ssl_context()
        assert socketutil.get_ssl_context() is first  # cached
        compat.reset_ssl_contexts()
        assert socketutil.get_ssl_context() is not first
    finally:
        compat.reset_ssl_contexts()


class RecordingDaemon(LoopDaemon):
    def __init__(self, *args, **kwargs) -> None:
        self.handshakes: list = []
        super().__init__(*args, **kwargs)

    def validateHandshake(self, conn, data):
        self.handshakes.append(data)
        return super().validateHandshake(conn, data)


def test_handshake_hook_runs_validate_handshake_on_the_loop():
    """The ES's loop runs Pyro5's handshake (compat.daemon_handshake), which must call validateHandshake:
    the passphrase check depends on it."""
    authenticator = Authenticator("secret")
    daemon = RecordingDaemon(LOCALHOST, 0, authenticator=authenticator)
    with serving(daemon) as uri:
        with make_proxy(uri, authenticator) as proxy:
            assert proxy.size("abc") == 3
        with make_proxy(uri, None) as stranger, pytest.raises(PassphraseError):
            stranger._pyroBind()
    assert len(daemon.handshakes) == 2 and daemon.handshakes[0]["auth"]


def test_generic_clients_with_any_serializer_reach_the_loop_daemon():
    """Plain Pyro5 proxies with each serializer call an object served by the loop."""
    with serving(LoopDaemon(LOCALHOST, 0)) as uri:
        for serializer in ("serpent", "json", "marshal", "msgpack"):
            with Proxy(uri) as proxy:
                proxy._pyroSerializer = serializer
                assert proxy.size("four") == 4, serializer
                with pytest.raises(AttributeError):
                    proxy.nothing()


def test_setup_declares_the_tested_pyro5_range():
    """setup.py's Pyro5 requirement is the range compat was tested with, and the installed Pyro5 is in it."""
    from pathlib import Path

    setup = (Path(__file__).resolve().parent.parent / "setup.py").read_text()
    assert f'"Pyro5{compat.PYRO5_TESTED}"' in setup
    lowest, highest = (part.lstrip("<>=") for part in compat.PYRO5_TESTED.split(","))
    version = tuple(map(int, Pyro5.__version__.split(".")[:2]))
    assert tuple(map(int, lowest.split("."))) <= version < tuple(map(int, highest.split(".")))
