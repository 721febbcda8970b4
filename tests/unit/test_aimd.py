"""The adaptive limit of a provider (orchd.providers.Aimd): slow start, decrease, additive increase."""

from __future__ import annotations

from orchd.providers import ROUNDS, START, Aimd


def test_slow_start_grows_with_answers_while_the_limit_is_in_use() -> None:
    limit = Aimd(16)
    assert limit.allowed == START and limit.recorded is None
    assert limit.answered(1) is False  # one answered of two allowed: the limit is not in use
    assert (
        limit.answered(2) and limit.allowed == 3
    )  # both answered: one more may wait for its answer
    assert limit.answered(3) and limit.allowed == 4
    assert limit.answered(4) and limit.allowed == 5
    assert not limit.answered(4)  # four answered: at most one more unanswered
    for answering in range(5, 30):  # past 8 answered, a quarter of them may be unanswered
        limit.answered(answering)
    assert limit.allowed == 16 and limit.recorded is None  # the global cap, never more


def test_a_throttle_lowers_the_limit_to_what_the_provider_served() -> None:
    limit = Aimd(16)
    for answering in (2, 3, 4, 4, 4):
        limit.answered(answering)
    assert limit.allowed == 5  # four answered, one probing
    assert limit.throttle(started=10.0, answering=4, now=11.0)
    assert limit.allowed == 4 and limit.recorded == 4 and not limit.slow


def test_sessions_started_before_a_decrease_tell_nothing_new() -> None:
    limit = Aimd(16, start=8)
    assert limit.throttle(started=1.0, answering=4, now=5.0) and limit.allowed == 4
    assert not limit.throttle(started=2.0, answering=4, now=6.0)  # one of the same excess
    assert limit.allowed == 4 and limit.throttled == 2
    assert limit.throttle(started=7.0, answering=4, now=8.0)  # started since: 4 is still too many
    assert limit.allowed == 3


def test_one_decrease_at_most_halves_the_limit() -> None:
    limit = Aimd(16, start=12)
    assert limit.throttle(started=1.0, answering=0, now=2.0) and limit.allowed == 6
    limit = Aimd(16, start=1)
    assert not limit.throttle(started=1.0, answering=0, now=2.0) and limit.allowed == 1


def test_the_lagging_count_of_answers_does_not_lower_the_limit_below_what_was_served() -> None:
    limit = Aimd(16)
    for answering in (2, 3, 4):  # four served at once (the limit rises to five)
        limit.answered(answering)
    assert limit.allowed == 5
    assert limit.throttle(started=1.0, answering=3, now=2.0)  # one answer not yet counted
    assert limit.allowed == 4


def test_once_throttled_the_limit_grows_by_one_every_rounds_answers_per_session() -> None:
    limit = Aimd(16, start=4)
    limit.throttle(started=1.0, answering=4, now=2.0)
    assert limit.allowed == 3
    grew = [limit.answered(3) for _ in range(ROUNDS * 3)]
    assert grew == [False] * (ROUNDS * 3 - 1) + [True] and limit.allowed == 4
    assert limit.recorded == 4
    assert not any(limit.answered(2) for _ in range(ROUNDS * 8))  # not in use: no growth
    assert limit.allowed == 4


def test_back_at_the_cap_the_log_keeps_no_limit() -> None:
    limit = Aimd(2, start=1)
    assert limit.recorded == 1
    for _ in range(ROUNDS):
        limit.answered(1)
    assert limit.allowed == 2 and limit.recorded is None
