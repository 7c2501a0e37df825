"""The decorator style (EventApp) against a real Event Service."""
from __future__ import annotations

import threading

import pytest

import eventservice
from conftest import WAIT


def test_handlers_get_their_events_once_in_order_and_stop_ends_run(es):
    app = eventservice.EventApp()
    calls: list[tuple[str, str, object]] = []

    @app.on("STOCKQUOTE.SUN", "stockquote.ibm")
    def quotes(event):
        calls.append(("quotes", event.subject, event.msg))

    @app.on_match(r"^NEWS\.", r"^STOCKQUOTE\.S")
    def news_and_s(event):
        calls.append(("news_and_s", event.subject, event.msg))
        if event.msg == "last":
            app.stop()

    @app.on_match(r"^boom$")
    def broken(event):
        raise RuntimeError("a failing handler does not stop the others")

    runner = threading.Thread(target=app.run, daemon=True)
    runner.start()
    assert app.running.wait(WAIT)
    with eventservice.Publisher() as publisher:
        publisher.publish("STOCKQUOTE.SUN", 1)    # both handlers, each once
        publisher.publish("STOCKQUOTE.IBM", 2)    # exact only, case-insensitive
        publisher.publish("STOCKQUOTE.SAP", 3)    # pattern only
        publisher.publish("BOOM", 4)              # its handler raises; run() goes on
        publisher.publish("WEATHER", 5)           # nobody
        publisher.publish("NEWS.END", "last")
    runner.join(WAIT)
    assert not runner.is_alive() and not app.running.is_set()
    assert calls == [("quotes", "STOCKQUOTE.SUN", 1), ("news_and_s", "STOCKQUOTE.SUN", 1),
                     ("quotes", "STOCKQUOTE.IBM", 2), ("news_and_s", "STOCKQUOTE.SAP", 3),
                     ("news_and_s", "NEWS.END", "last")]
    with eventservice.Publisher() as publisher:
        assert publisher.publish("STOCKQUOTE.SUN", 6) == 0  # run() left the ES


def test_bad_registrations_are_refused_at_once():
    app = eventservice.EventApp()
    with pytest.raises(ValueError, match="invalid pattern"):
        app.on_match("(unclosed")
    with pytest.raises(ValueError, match="non-empty subjects"):
        app.on()
    with pytest.raises(RuntimeError, match="no handlers"):
        app.run()
