"""Unit tests for eventservice.server.connectors: an elastic pool of threads for blocking work."""
from __future__ import annotations

import threading

from conftest import WAIT, wait_until
from eventservice.server import connectors
from eventservice.server.connectors import ConnectorPool


def test_runs_everything_in_order_of_submission_with_one_thread():
    done = []
    pool = ConnectorPool(lambda number, flag: done.append((number, flag)), limit=1)
    for number in range(20):
        pool.submit(number, number % 2 == 0)
    wait_until(lambda: len(done) == 20, message="20 pieces of work")
    assert done == [(number, number % 2 == 0) for number in range(20)]
    assert pool.size() == 1
    pool.stop()


def test_grows_up_to_its_limit_while_work_blocks_and_no_further():
    release = threading.Event()
    started = []
    pool = ConnectorPool(lambda number: (started.append(number), release.wait(WAIT)), limit=4)
    try:
        for number in range(10):
            pool.submit(number)
        wait_until(lambda: len(started) == 4, message="4 blocked threads")
        assert pool.size() == 4 and pool.busy() == 10  # 4 running, 6 waiting
    finally:
        release.set()
    wait_until(lambda: len(started) == 10 and pool.busy() == 0, message="the rest of the work")
    assert pool.size() <= 4
    pool.stop()


def test_idle_threads_retire_and_stop_ends_them(monkeypatch):
    monkeypatch.setattr(connectors, "IDLE_SECONDS", 0.05)
    pool = ConnectorPool(lambda: None, limit=3)
    pool.submit()
    wait_until(lambda: pool.busy() == 0 and pool.size() == 0, message="the idle thread's retirement")
    pool.stop()
    pool.submit()  # after stop nothing starts
    assert pool.size() == 0 and pool.busy() == 1
