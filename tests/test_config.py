"""Offline tests of the Event Service settings: defaults, EVENTSERVICE_* environment, overrides, validation."""
from __future__ import annotations

import dataclasses
import os

import pytest

from eventservice.core.config import ENV_PREFIX, Settings, environment_names, from_environment


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    """No EVENTSERVICE_* variable from the outer environment leaks into these tests."""
    for name in list(os.environ):
        if name.startswith(ENV_PREFIX):
            monkeypatch.delenv(name)


def test_defaults_match_pyro3():
    """Defaults: queue size 1000 and a blocking full queue, as in Pyro3."""
    settings = from_environment()
    assert settings.queuesize == 1000
    assert settings.blockqueue is True
    assert settings == Settings()


def test_queuesize_from_environment(monkeypatch):
    """EVENTSERVICE_QUEUESIZE sets the queue size as an int."""
    monkeypatch.setenv("EVENTSERVICE_QUEUESIZE", "25")
    settings = from_environment()
    assert settings.queuesize == 25
    assert isinstance(settings.queuesize, int)


@pytest.mark.parametrize(("text", "value"), [("0", False), ("false", False), ("No", False), ("off", False),
                                              ("1", True), ("TRUE", True), ("yes", True), (" on ", True)])
def test_blockqueue_from_environment(monkeypatch, text, value):
    """EVENTSERVICE_BLOCKQUEUE accepts the usual spellings of true and false."""
    monkeypatch.setenv("EVENTSERVICE_BLOCKQUEUE", text)
    assert from_environment().blockqueue is value


def test_float_setting_from_environment(monkeypatch):
    """A float setting (EVENTSERVICE_DELIVERY_TIMEOUT) is read as a float."""
    monkeypatch.setenv("EVENTSERVICE_DELIVERY_TIMEOUT", "2.5")
    assert from_environment().delivery_timeout == 2.5


def test_overrides_beat_environment(monkeypatch):
    """Keyword overrides win over EVENTSERVICE_* variables."""
    monkeypatch.setenv("EVENTSERVICE_QUEUESIZE", "25")
    monkeypatch.setenv("EVENTSERVICE_BLOCKQUEUE", "true")
    settings = from_environment(queuesize=7, blockqueue=False)
    assert (settings.queuesize, settings.blockqueue) == (7, False)


def test_none_overrides_are_ignored(monkeypatch):
    """An override of None leaves the environment value (or default) in place."""
    monkeypatch.setenv("EVENTSERVICE_QUEUESIZE", "25")
    settings = from_environment(queuesize=None, blockqueue=None, batch_size=None)
    assert (settings.queuesize, settings.blockqueue, settings.batch_size) == (25, True, 200)


@pytest.mark.parametrize(("name", "text"), [("EVENTSERVICE_QUEUESIZE", "lots"), ("EVENTSERVICE_QUEUESIZE", "1.5"),
                                             ("EVENTSERVICE_BLOCKQUEUE", "maybe"), ("EVENTSERVICE_PATTERN_TIMEOUT", "soon")])
def test_invalid_environment_value_names_the_variable(monkeypatch, name, text):
    """A value that does not parse raises ValueError naming the variable."""
    monkeypatch.setenv(name, text)
    with pytest.raises(ValueError, match=name):
        from_environment()


@pytest.mark.parametrize("field", [field.name for field in dataclasses.fields(Settings)
                                   if field.name not in ("blockqueue", "linger", "stats_interval")])
@pytest.mark.parametrize("value", [0, -1])
def test_non_positive_numbers_name_the_setting(field, value):
    """Every numeric setting must be greater than 0; the error names the setting."""
    with pytest.raises(ValueError, match=rf"\b{field}\b"):
        Settings(**{field: value})


def test_linger_may_be_zero_but_not_negative_or_nan():
    """linger 0 turns batching delays off; a negative or NaN linger is refused, naming it."""
    assert Settings(linger=0).linger == 0
    for value in (-0.001, float("nan")):
        with pytest.raises(ValueError, match="linger"):
            Settings(linger=value)


def test_non_positive_environment_value_names_the_setting(monkeypatch):
    """EVENTSERVICE_QUEUESIZE=0 parses but is refused, naming the setting."""
    monkeypatch.setenv("EVENTSERVICE_QUEUESIZE", "0")
    with pytest.raises(ValueError, match="queuesize"):
        from_environment()


def test_non_positive_override_names_the_setting():
    """An override of -5 is refused, naming the setting."""
    with pytest.raises(ValueError, match="max_connections"):
        from_environment(max_connections=-5)


@pytest.mark.parametrize("text", ["nan", "-inf"])
def test_nan_and_negative_infinity_are_refused(monkeypatch, text):
    """'nan' and '-inf' parse as floats but are not positive numbers, so they are refused."""
    monkeypatch.setenv("EVENTSERVICE_PATTERN_TIMEOUT", text)
    with pytest.raises(ValueError, match="pattern_timeout"):
        from_environment()


def test_pyro_settings_are_left_to_pyro5(monkeypatch):
    """Pyro5's own PYRO_* settings do not change the ES settings."""
    monkeypatch.setenv("PYRO_QUEUESIZE", "3")
    assert from_environment() == Settings()


@pytest.mark.parametrize("policy", ["block", "drop", "drop-oldest"])
def test_full_queue_from_environment(monkeypatch, policy):
    """EVENTSERVICE_FULL_QUEUE names the policy; blockqueue follows it."""
    monkeypatch.setenv("EVENTSERVICE_FULL_QUEUE", policy)
    settings = from_environment()
    assert (settings.full_queue, settings.blockqueue) == (policy, policy == "block")


def test_blockqueue_stays_an_alias_of_full_queue(monkeypatch):
    """Pyro3's EVENTSERVICE_BLOCKQUEUE=0 means drop, unless EVENTSERVICE_FULL_QUEUE says otherwise."""
    monkeypatch.setenv("EVENTSERVICE_BLOCKQUEUE", "0")
    assert from_environment().full_queue == "drop"
    monkeypatch.setenv("EVENTSERVICE_FULL_QUEUE", "drop-oldest")
    assert from_environment().full_queue == "drop-oldest"


def test_unknown_policy_and_oversized_queue_are_refused():
    """A bad policy names the choices; a queuesize above max_queuesize names both settings."""
    with pytest.raises(ValueError, match=r"full_queue.*block, drop, drop-oldest"):
        Settings(full_queue="newest")
    with pytest.raises(ValueError, match=r"queuesize.*max_queuesize"):
        Settings(queuesize=20, max_queuesize=10)


def test_full_queue_option_beats_the_environment_in_either_spelling(monkeypatch):
    """An override (the es option) wins over EVENTSERVICE_BLOCKQUEUE and EVENTSERVICE_FULL_QUEUE."""
    monkeypatch.setenv("EVENTSERVICE_BLOCKQUEUE", "0")
    assert from_environment(full_queue="block").full_queue == "block"
    monkeypatch.setenv("EVENTSERVICE_FULL_QUEUE", "drop-oldest")
    assert from_environment(full_queue="block").full_queue == "block"
    assert from_environment(blockqueue=True).full_queue == "block"
    assert from_environment().full_queue == "drop-oldest"
def test_unknown_environment_name_is_refused_listing_the_known_ones(monkeypatch):
    """A misspelt EVENTSERVICE_* name is an error naming it and every known name, as Pyro5 does for PYRO_*."""
    monkeypatch.setenv("EVENTSERVICE_QUEUSIZE", "25")
    with pytest.raises(ValueError, match="unknown environment variable EVENTSERVICE_QUEUSIZE;") as refused:
        from_environment(queuesize=7)  # an override of the meant setting does not excuse the typo
    known = str(refused.value).split("the known ones are ", 1)[1].split(", ")
    assert known == environment_names()
    assert "EVENTSERVICE_QUEUESIZE" in known and "EVENTSERVICE_IDLE_TIMEOUT" in known


def test_unknown_names_are_all_listed(monkeypatch):
    """Several unknown names are reported together, sorted."""
    monkeypatch.setenv("EVENTSERVICE_ZZZ", "1")
    monkeypatch.setenv("EVENTSERVICE_DELIVERY_WORKERS", "4")
    with pytest.raises(ValueError, match="unknown environment variables EVENTSERVICE_DELIVERY_WORKERS, EVENTSERVICE_ZZZ;"):
        from_environment()


def test_every_known_name_is_read(monkeypatch):
    """Each listed name, one per Settings field, is read: set to its setting's default, it gives the defaults."""
    defaults = Settings()
    for field in dataclasses.fields(Settings):
        value = getattr(defaults, field.name)
        text = ("true" if value else "false") if isinstance(value, bool) else str(value)
        monkeypatch.setenv(ENV_PREFIX + field.name.upper(), text)
    assert sorted(name for name in os.environ if name.startswith(ENV_PREFIX)) == sorted(environment_names())
    assert from_environment() == defaults
