"""Rounds: when the delivery loop starts a round and how long it lingers, with made-up times."""
from eventservice.core.rounds import Rounds


def test_an_idle_loop_starts_at_once_and_one_subscriber_waits_only_the_gap():
    rounds = Rounds(linger=0.005, gap=0.002)
    assert rounds.next_start() <= 0.0
    for now in (1.0, 1.003, 1.006):  # further apart than the gap: each round starts when its event comes
        assert rounds.next_start() <= now
        rounds.begin(now)
        rounds.call_started(events=50)  # big batches, but one subscriber: never the full linger
        rounds.calls_started()
        rounds.call_ended(rounds.number)
        assert rounds.lingering == 0.002
    assert rounds.next_start() == 1.006 + 0.002  # an event sooner than that waits for the gap's end


def test_a_round_holds_the_next_until_its_replies_or_its_end():
    rounds = Rounds(linger=0.0, round_seconds=0.001)
    rounds.begin(10.0)
    rounds.call_started(1)
    rounds.call_started(1)
    rounds.calls_started()
    assert rounds.is_open(10.0005) and rounds.next_start() == rounds.ends()
    rounds.call_ended(rounds.number)
    rounds.call_ended(rounds.number)
    assert not rounds.is_open(10.0005) and rounds.next_start() <= 10.0005


def test_a_late_reply_of_an_old_round_does_not_count_for_the_new_one():
    rounds = Rounds(linger=0.0)
    first = rounds.begin(1.0)
    rounds.call_started(1)
    rounds.calls_started()
    rounds.begin(2.0)
    rounds.call_started(1)
    rounds.call_ended(first)
    assert rounds.pending == 1


def test_sustained_fan_out_load_lingers_and_a_pause_ends_it():
    rounds = Rounds(linger=0.005, idle_gap=0.1)
    now = 1.0
    for _ in range(3):
        rounds.begin(now)
        for _ in range(10):
            rounds.call_started(20)
        rounds.calls_started()
        now += 0.002
    assert rounds.lingering == 0.005 and rounds.next_start() >= rounds.started + 0.005
    rounds.begin(now + 1.0)  # after a pause: what comes next is no backlog
    rounds.call_started(1)
    rounds.call_started(1)
    rounds.calls_started()
    assert rounds.load < 1.5 and rounds.lingering == rounds.gap


def test_linger_zero_never_lingers():
    rounds = Rounds(linger=0.0)
    assert rounds.gap == 0.0  # --linger 0 turns the gap off too
    for step in range(5):
        rounds.begin(step * 0.01)
        for _ in range(10):
            rounds.call_started(100)
        rounds.calls_started()
        assert rounds.lingering == 0.0
        rounds.begin(step * 0.01 + 0.001)
        rounds.call_started(1)
        rounds.calls_started()
        assert rounds.lingering == 0.0


def test_back_to_back_rounds_are_spaced_by_the_gap_whatever_their_width():
    """One call or ten, of one event each: the next round waits up to the gap (so back-to-back publishes share
    calls), never the full linger, which needs fan-out load."""
    for width in (1, 3, 10):
        rounds = Rounds(linger=0.005, gap=0.002)
        rounds.begin(1.0)
        for _ in range(width):
            rounds.call_started(1)
        rounds.calls_started()
        assert rounds.lingering == 0.002
        for _ in range(width):
            rounds.call_ended(rounds.number)
        assert rounds.next_start() == rounds.started + 0.002
