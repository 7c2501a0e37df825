"""Unit tests for eventservice.core.rates: bounded per-subject publish rates (no sockets, no clock)."""
from __future__ import annotations

import threading

import pytest

from eventservice.core.rates import SubjectRates


def publishes(*subjects: str, times: int = 1) -> list[tuple[list[str], object]]:
    return [([subject], "message") for subject in subjects] * times


EXACT = 10**9  # a sample size no batch here reaches: every publish counted one by one


def test_rates_are_events_per_second_of_the_interval():
    rates = SubjectRates(halflife=1e-9, sample=EXACT)  # no smoothing: each tick shows its own interval
    rates.tick(100.0)
    rates.observe(publishes("A", times=30) + publishes("B", times=10))
    rates.tick(102.0)
    assert rates.top() == [("A", pytest.approx(15.0)), ("B", pytest.approx(5.0))]


def test_one_publish_with_many_subjects_counts_each_subject():
    rates = SubjectRates(halflife=1e-9)
    rates.tick(0.0)
    rates.observe([(["A", "B", "C"], None)])
    rates.tick(1.0)
    assert sorted(subject for subject, _ in rates.top()) == ["A", "B", "C"]


def test_smoothing_moves_towards_the_new_rate_and_decays_when_silent():
    rates = SubjectRates(halflife=1.0, sample=EXACT)
    rates.tick(0.0)
    rates.observe(publishes("A", times=100))
    rates.tick(1.0)
    assert rates.top() == [("A", pytest.approx(100.0))]  # a new subject starts at its rate
    rates.tick(2.0)  # a silent second: half of it is gone after one halflife
    assert rates.top() == [("A", pytest.approx(50.0))]
    rates.observe(publishes("A", times=150))
    rates.tick(3.0)
    assert rates.top() == [("A", pytest.approx(100.0))]  # halfway from 50 to 150


def test_silent_subjects_disappear():
    rates = SubjectRates(halflife=0.1)
    rates.tick(0.0)
    rates.observe(publishes("A"))
    rates.tick(1.0)
    assert rates.tracked() == 1
    rates.tick(10.0)
    assert rates.top() == [] and rates.tracked() == 0


def test_subjects_beyond_capacity_count_as_other():
    rates = SubjectRates(capacity=3, halflife=1e-9)
    rates.tick(0.0)
    rates.observe(publishes("A", "B", "C", "D", "E") + publishes("A", times=5))
    rates.tick(1.0)
    assert [subject for subject, _ in rates.top()] == ["A", "B", "C"]
    assert rates.other_rate() == pytest.approx(2.0)


def test_only_the_busiest_are_kept_between_ticks():
    rates = SubjectRates(keep=5, halflife=1e-9, sample=EXACT)
    rates.tick(0.0)
    rates.observe([([f"S{n}"], None) for n in range(100) for _ in range(n)])  # S99 busiest
    rates.tick(1.0)
    assert rates.tracked() == 5
    assert [subject for subject, _ in rates.top(3)] == ["S99", "S98", "S97"]


def test_memory_stays_bounded_with_a_new_subject_every_publish():
    rates = SubjectRates(capacity=1000, keep=50)
    for second in range(20):
        rates.observe([([f"unique.{second}.{n}"], None) for n in range(5000)])
        assert len(rates._counts) <= 1000
        rates.tick(float(second))
        assert rates.tracked() <= 50


def test_the_first_tick_counts_its_interval_as_one_second():
    rates = SubjectRates(halflife=1e-9)
    rates.observe(publishes("A", times=7))
    rates.tick(5000.0)
    assert rates.top() == [("A", pytest.approx(7.0))]


def test_bad_parameters_are_refused_by_name():
    with pytest.raises(ValueError, match="capacity"):
        SubjectRates(capacity=0)
    with pytest.raises(ValueError, match="halflife"):
        SubjectRates(halflife=0)
    with pytest.raises(ValueError, match="sample"):
        SubjectRates(sample=0)


def test_small_calls_are_counted_exactly_and_large_batches_by_an_even_sample():
    rates = SubjectRates(halflife=1e-9, sample=32, seed=1)
    rates.tick(0.0)
    rates.observe(publishes("A", times=32))  # up to the sample size: every publish counted
    rates.tick(1.0)
    assert rates.top() == [("A", 32.0)]
    rates.observe(publishes("A", times=1000))
    rates.tick(2.0)
    assert rates.top() == [("A", pytest.approx(1000.0, rel=0.04))]  # every 31st counted 31 times: 992 or 1023


@pytest.mark.parametrize("period", [3, 4, 7, 32])
def test_sampled_batches_estimate_each_subjects_share_without_bias(period):
    """Even when the subjects repeat in step with the sampling stride (period 4 or 32, stride 32)."""
    rates = SubjectRates(halflife=1e-9, sample=32, seed=period)
    rates.tick(0.0)
    batch = [([f"P{n % period}"], None) for n in range(1024)]
    for _ in range(2000):
        rates.observe(batch)
    rates.tick(1.0)
    estimates = dict(rates.top(period))
    assert len(estimates) == period
    for subject in (f"P{n}" for n in range(period)):
        assert estimates[subject] == pytest.approx(2000 * 1024 / period, rel=0.25), subject
    assert sum(estimates.values()) == pytest.approx(2000 * 1024, rel=0.01)


def test_counts_from_concurrent_publishers_and_ticks_are_not_lost():
    rates = SubjectRates(halflife=1e-9)  # each tick shows its own one-second interval: rate == count
    stop = threading.Event()
    clock = [0.0]
    seen: list[float] = []

    def ticker() -> None:
        while not stop.is_set():
            clock[0] += 1.0
            rates.tick(clock[0])
            seen.extend(rate for _, rate in rates.top())

    def publisher() -> None:
        for _ in range(2000):
            rates.observe(publishes("A"))

    tick_thread = threading.Thread(target=ticker)
    tick_thread.start()
    threads = [threading.Thread(target=publisher) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stop.set()
    tick_thread.join()
    rates.tick(clock[0] + 1.0)  # the last interval
    seen.extend(rate for _, rate in rates.top())
    assert sum(seen) == pytest.approx(8000.0)
