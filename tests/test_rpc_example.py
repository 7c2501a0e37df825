"""examples/rpc: a program that subscribes, publishes and serves its own Pyro object in the same name server."""
from __future__ import annotations

import signal

import pytest
from Pyro5 import errors
from Pyro5.api import Proxy

from conftest import WAIT, read_line
from eventservice.pyro.naming import locate_ns

pytestmark = pytest.mark.network

PRICEBOOK_NAME = "example.PriceBook"


def test_pricebook_serves_rpc_beside_pub_sub(es, processes, collectors):
    orders = collectors()
    orders.subscribe("ORDER.SUN")
    pricebook = processes.spawn("examples/rpc/pricebook.py")
    read_line(pricebook, expect="PriceBook ready")

    trader = processes.spawn("examples/rpc/trader.py", "SUN", "22.5", "--quantity", "100")
    out, err = trader.communicate(timeout=WAIT * 2)
    assert trader.returncode == 0, err
    assert out.splitlines() == ["PriceBook: last price of SUN is 22.5", "Ordered 100 SUN at 22.5",
                                "Event ORDER.SUN: ('SUN', 100, 22.5)"]
    order, = orders.take()
    assert (order.subject, order.msg) == ("ORDER.SUN", ("SUN", 100, 22.5))  # seen by every subscriber, not just the trader

    with locate_ns() as ns, Proxy(ns.lookup(PRICEBOOK_NAME)) as book:
        assert book.symbols() == ["SUN"]
        with pytest.raises(ValueError, match="no quote for 'IBM'"):
            book.place_order("IBM", 1)

    pricebook.send_signal(signal.SIGINT)
    rest, _ = pricebook.communicate(timeout=WAIT)
    assert pricebook.returncode == 0 and "PriceBook closed." in rest
    with locate_ns() as ns, pytest.raises(errors.NamingError):
        ns.lookup(PRICEBOOK_NAME)  # it left the name server
