"""Offline tests of the Event value and its Pyro5 serialization."""
from __future__ import annotations

import time

import pytest
from Pyro5 import serializers

import eventservice
from eventservice.core.event import SERIALIZED_CLASS, Event

SERIALIZERS = ["serpent", "json", "marshal", "msgpack"]
#: a local wall-clock time, as the brief's example: 2026-11-22 18:44:40
LOCAL_SECOND = time.mktime((2026, 11, 22, 18, 44, 40, 0, 0, -1))


def test_event_keeps_subject_msg_and_time():
    """Event(subject, msg, creationTime) exposes .subject (case kept), .msg and .time."""
    event = Event("StockQuote.SUN", ("SUN", 22.44), 1234.5)
    assert (event.subject, event.msg, event.time) == ("StockQuote.SUN", ("SUN", 22.44), 1234.5)


def test_event_time_defaults_to_now():
    """Without creationTime an event is stamped with time.time()."""
    before = time.time()
    event = Event("s", None)
    after = time.time()
    assert before <= event.time <= after


def test_event_time_zero_is_kept():
    """creationTime=0 is a valid time, not 'missing'."""
    assert Event("s", 1, 0).time == 0


def test_applications_may_add_attributes_to_an_event():
    """As with Pyro3's events, user code may set attributes of its own on an event; the fields stay slots."""
    event = Event("s", 1, 1.0)
    event.seen_by = "me"
    assert event.seen_by == "me"
    assert Event("s", 1, 1.0) == event  # equality still compares subject, msg and time
    assert "subject" not in vars(event)


def test_str_is_pyro3s_form():
    """str(event) reads as Pyro3's: '<EVENT SUBJ subject (time.ctime(time)): msg>'."""
    event = Event("STOCKQUOTE.SUN", ("SUN", 22.44), LOCAL_SECOND + 0.123)
    assert str(event) == "<EVENT SUBJ STOCKQUOTE.SUN (Sun Nov 22 18:44:40 2026): ('SUN', 22.44)>"
    assert str(Event("s", "text", LOCAL_SECOND)) == f"<EVENT SUBJ s ({time.ctime(LOCAL_SECOND)}): text>"


def test_repr_is_evaluable():
    """repr(event) reads like the constructor call and evaluates back to an equal event."""
    event = Event("STOCKQUOTE.SUN", ("SUN", 22.44), 1795373080.5)
    assert repr(event) == "Event('STOCKQUOTE.SUN', ('SUN', 22.44), 1795373080.5)"
    assert eval(repr(event), {"Event": Event}) == event


def test_equality_compares_subject_msg_and_time():
    """Events are equal exactly when subject, msg and time are equal."""
    event = Event("s", [1, 2], 5.0)
    assert event == Event("s", [1, 2], 5.0)
    assert event != Event("S", [1, 2], 5.0)
    assert event != Event("s", [1, 3], 5.0)
    assert event != Event("s", [1, 2], 5.5)
    assert event != ("s", [1, 2], 5.0)
    assert (event == object()) is False


def test_event_is_unhashable():
    """Events carry possibly mutable messages, so they are not hashable."""
    with pytest.raises(TypeError):
        hash(Event("s", 1, 1.0))


@pytest.mark.parametrize("name", SERIALIZERS)
def test_event_round_trips_through_serializer(name):
    """dumps/loads with every Pyro5 serializer gives back an equal Event."""
    serializer = serializers.serializers[name]
    event = Event("Straße.NEWS", {"price": 22.44, "symbols": ["SUN", "SAP"], "n": 3, "none": None}, 1795373080.123)
    restored = serializer.loads(serializer.dumps(event))
    assert isinstance(restored, Event)
    assert (restored.subject, restored.msg, restored.time) == (event.subject, event.msg, event.time)
    assert restored == event


@pytest.mark.parametrize("name", SERIALIZERS)
def test_event_round_trips_as_call_argument(name):
    """An Event passed as a call argument (as ``event(event)`` deliveries are) survives dumpsCall/loadsCall."""
    serializer = serializers.serializers[name]
    event = Event("STOCKQUOTE.SUN", {"v": 22.44}, 1.5)
    other = Event("STOCKQUOTE.SAP", "text", 2.25)
    obj, method, vargs, kwargs = serializer.loadsCall(serializer.dumpsCall("objid", "event", (event,), {"other": other}))
    assert (obj, method) == ("objid", "event")
    assert list(vargs) == [event]
    assert kwargs == {"other": other}
    assert isinstance(vargs[0], Event) and isinstance(kwargs["other"], Event)


@pytest.mark.parametrize("name", ["serpent", "marshal"])
def test_tuple_message_survives_tuple_preserving_serializers(name):
    """Serializers that keep tuples deliver a tuple msg unchanged."""
    serializer = serializers.serializers[name]
    event = Event("STOCKQUOTE.SUN", ("SUN", 22.44), 3.0)
    assert serializer.loads(serializer.dumps(event)).msg == ("SUN", 22.44)


def test_importing_eventservice_registers_the_event_class():
    """Importing eventservice registers Event's class-to-dict and dict-to-class hooks with Pyro5."""
    assert eventservice.Event is Event
    base = serializers.SerializerBase
    assert Event in base._SerializerBase__custom_class_to_dict_registry
    assert SERIALIZED_CLASS in base._SerializerBase__custom_dict_to_class_registry
    as_dict = base.class_to_dict(Event("s", 1, 2.0))
    assert as_dict == {"__class__": "eventservice.Event", "subject": "s", "msg": 1, "time": 2.0}
    assert base.dict_to_class(as_dict) == Event("s", 1, 2.0)
