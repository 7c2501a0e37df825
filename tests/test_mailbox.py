"""Mailbox: one delivery call's bytes out and its reply in, without blocking, over a local socket pair."""
import socket

import pytest
from Pyro5 import errors

from eventservice.pyro.wire import ReplyReader, encode_result
from eventservice.server.mailbox import Mailbox


@pytest.fixture
def connected():
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    mailbox = Mailbox("sub", "PYRO:sub@127.0.0.1:9", 10, "block")
    mailbox.sock = ours
    yield mailbox, theirs
    ours.close()
    theirs.close()


def test_send_goes_on_where_a_full_socket_stopped_it(connected):
    mailbox, theirs = connected
    mailbox.outgoing = memoryview(b"x" * 5_000_000)  # more than a socket buffer holds
    assert mailbox.send() is False and mailbox.outgoing
    received = 0
    while mailbox.outgoing or received < 5_000_000:
        received += len(theirs.recv(1 << 20))
        mailbox.send()
    assert received == 5_000_000


def test_receive_returns_the_reply_once_complete(connected):
    mailbox, theirs = connected
    mailbox.reply = ReplyReader()
    reply = encode_result(3, 42)
    theirs.sendall(reply[:10])
    assert mailbox.receive() is None  # not yet whole
    theirs.sendall(reply[10:])
    assert mailbox.receive() == (3, 42, False)


def test_receive_reports_a_closed_connection_and_junk(connected):
    mailbox, theirs = connected
    mailbox.reply = ReplyReader()
    theirs.sendall(b"HTTP/1.1 200 OK\r\n\r\n")
    with pytest.raises(errors.ProtocolError):
        mailbox.receive()
    mailbox.reply = ReplyReader()
    theirs.close()
    with pytest.raises(errors.ConnectionClosedError):
        mailbox.receive()


def test_unasked_input_tells_an_idle_close_from_nothing(connected):
    mailbox, theirs = connected
    assert mailbox.unasked_input() is False
    theirs.close()
    assert mailbox.unasked_input() is True
