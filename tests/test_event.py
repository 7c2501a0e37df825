"""Offline tests of the Event value and its Pyro5 serialization."""
from __future__ import annotations

import re
import time

import pytest
from Pyro5 import serializers

import eventservice
from eventservice.core.event import SERIALIZED_CLASS, Event

SERIALIZERS = ["serpent", "json", "marshal", "msgpack"]
#: a local wall-clock time, as the brief's example: 2026-11-22 18:44:40
LOCAL_SECOND = time.mktime((2026, 11, 22, 18, 44, 40, 0, 0, -1))
STR_PATTERN = re.compile(r"^<Event (?P<subject>.*) @ (?P<stamp>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)\.(?P<millis>\d{3}): (?P<msg>.*)>$")


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


def test_event_has_no_instance_dict():
    """Events use __slots__: no stray attributes can be set."""
    event = Event("s", 1, 1.0)
    with pytest.raises(AttributeError):
        event.other = 1


def test_str_format_with_local_time_and_millis():
    """str(event) reads '<Event SUBJECT @ YYYY-MM-DD HH:MM:SS.mmm: msg>' in local time."""
    event = Event("STOCKQUOTE.SUN", 22.44, LOCAL_SECOND + 0.123)
    text = str(event)
    assert STR_PATTERN.match(text), text
    assert text == "<Event STOCKQUOTE.SUN @ 2026-11-22 18:44:40.123: 22.44>"


@pytest.mark.parametrize("fraction", [0.0, 0.001, 0.1, 0.25, 0.5, 0.7, 0.999])
def test_str_shows_the_millisecond_given(fraction):
    """The millisecond field shows the creationTime's milliseconds, not one less from float error."""
    event = Event("s", "m", LOCAL_SECOND + fraction)
    match = STR_PATTERN.match(str(event))
    assert match, str(event)
    assert match["stamp"] == "2026-11-22 18:44:40"
    assert int(match["millis"]) == round(fraction * 1000)


def test_str_millis_never_overflow_three_digits():
    """A time just below a whole second shows a valid stamp, never a 4-digit millisecond field."""
    event = Event("s", "m", LOCAL_SECOND + 0.9999)
    match = STR_PATTERN.match(str(event))
    assert match, str(event)
    assert (match["stamp"], match["millis"]) in {("2026-11-22 18:44:40", "999"), ("2026-11-22 18:44:41", "000")}


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
