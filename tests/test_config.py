"""Offline tests of the Event Service settings: defaults, EVENTSERVICE_* environment, overrides, validation."""
from __future__ import annotations

import dataclasses
import os

import pytest

from eventservice.core.config import ENV_PREFIX, Settings, from_environment


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


def test_unrelated_environment_variables_are_ignored(monkeypatch):
    """Pyro5's own PYRO_* settings and unknown EVENTSERVICE_* names do not change the ES settings."""
    monkeypatch.setenv("PYRO_QUEUESIZE", "3")
    monkeypatch.setenv("EVENTSERVICE_NOT_A_SETTING", "x")
    assert from_environment() == Settings()
