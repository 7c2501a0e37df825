"""es --stats-interval: the one-line summary, its setting, and the es command logging it."""
from __future__ import annotations

import logging
import subprocess

import pytest

from conftest import LOCALHOST, read_line, wait_until
from eventservice.core.config import Settings, from_environment
from eventservice.server.statslog import StatsLogger, format_stats

CONTRACT_SHAPE = {
    "counters": {"published": 12, "delivered": 24, "dropped": 0},
    "gauges": {"subscribers": 2, "queued": 0, "uptime": 61.25},
}


def test_summary_lists_counters_with_their_growth_then_gauges():
    previous = {"counters": {"published": 2, "delivered": 4, "dropped": 0}, "gauges": {}}
    line = format_stats(CONTRACT_SHAPE, previous)
    assert line == "stats: published=12(+10) delivered=24(+20) dropped=0 | subscribers=2 queued=0 uptime=61.2"
    assert "\n" not in line


def test_summary_of_the_first_reading_and_of_the_flat_shape():
    assert format_stats(CONTRACT_SHAPE) == "stats: published=12 delivered=24 dropped=0 | subscribers=2 queued=0 uptime=61.2"
    flat = {"published": 3, "subscribers": 1, "name": "not a figure"}
    assert format_stats(flat, flat) == "stats: published=3 subscribers=1"


def test_stats_logger_logs_until_stopped_and_survives_a_failing_reading(caplog):
    readings = iter([CONTRACT_SHAPE, RuntimeError("gone"), CONTRACT_SHAPE])

    def stats():
        reading = next(readings, CONTRACT_SHAPE)
        if isinstance(reading, Exception):
            raise reading
        return reading

    caplog.set_level(logging.INFO, logger="eventservice.server.statslog")
    logger = StatsLogger(stats, 0.01).start()
    try:
        wait_until(lambda: sum("stats: " in r.getMessage() for r in caplog.records) >= 3, message="three summaries")
    finally:
        logger.stop()
    assert any(r.levelno == logging.ERROR and "could not read" in r.getMessage() for r in caplog.records)
    with pytest.raises(ValueError, match="stats interval"):
        StatsLogger(stats, 0)


def test_stats_interval_setting_defaults_off_and_comes_from_the_environment(monkeypatch):
    assert Settings().stats_interval == 0
    monkeypatch.setenv("EVENTSERVICE_STATS_INTERVAL", "2.5")
    assert from_environment().stats_interval == 2.5
    with pytest.raises(ValueError, match="stats_interval"):
        Settings(stats_interval=-1)


@pytest.mark.network
def test_es_command_logs_a_summary_every_interval_without_verbose(processes):
    server = processes.spawn("-m", "eventservice.server", "-N", "-n", LOCALHOST, "--stats-interval", "0.2",
                             stderr=subprocess.STDOUT)
    read_line(server, expect="Event Service URI:")
    first = read_line(server, expect="stats: ")
    assert "eventservice.server.statslog" in first and "published=0" in first
    read_line(server, expect="stats: ")  # and again
