"""The adaptive limit of a provider (orchd.providers.Aimd): slow start, decrease, additive increase."""

from __future__ import annotations

from orchd.providers import ROUNDS, START, Aimd


def test_slow_start_takes_a_step_each_time_the_last_one_is_proven() -> None:
    limit = Aimd(16)
    assert limit.allowed == START and limit.recorded is None
    assert not limit.answered(started=0.0, using=1, excess=0, now=1.0)  # the limit is not in use
    assert limit.answered(started=0.0, using=2, excess=0, now=2.0) and limit.allowed == 3
    # a session started before that step says nothing of it
    assert not limit.answered(started=1.5, using=3, excess=0, now=3.0)
    assert limit.answered(started=2.5, using=3, excess=0, now=4.0) and limit.allowed == 4
    assert limit.answered(started=4.5, using=4, excess=0, now=5.0) and limit.allowed == 5
    for n in range(6, 30):  # from 8 sessions on, a quarter more at a time
        limit.answered(started=n, using=limit.allowed, excess=0, now=n + 0.5)
    assert limit.allowed == 16 and limit.recorded is None  # the global cap, never more


def test_no_step_while_a_session_is_throttled() -> None:
    limit = Aimd(16)
    assert not limit.answered(started=1.0, using=2, excess=1, now=2.0)
    assert limit.allowed == START


def test_a_throttle_lowers_the_limit_to_the_sessions_the_provider_served() -> None:
    limit = Aimd(16, start=8)
    # eight sessions ran, three of them throttled: the provider served five
    assert limit.throttle(started=1.0, using=8, excess=3, now=2.0)
    assert limit.allowed == 5 and limit.recorded == 5 and not limit.slow
    assert limit.throttled == 1


def test_sessions_started_before_the_last_change_tell_nothing_new() -> None:
    limit = Aimd(16, start=5)
    assert limit.throttle(started=1.0, using=5, excess=1, now=5.0) and limit.allowed == 4
    assert not limit.throttle(started=2.0, using=5, excess=2, now=6.0)  # one of the same excess
    assert limit.allowed == 4 and limit.throttled == 2
    assert limit.throttle(started=7.0, using=4, excess=1, now=8.0)  # started since: still too many
    assert limit.allowed == 3


def test_a_throttle_lowers_the_limit_by_one_or_to_what_was_served() -> None:
    limit = Aimd(16, start=4)
    assert limit.throttle(started=1.0, using=2, excess=1, now=2.0) and limit.allowed == 1
    limit = Aimd(16, start=4)
    assert limit.throttle(started=1.0, using=4, excess=0, now=2.0) and limit.allowed == 3
    limit = Aimd(16, start=1)
    assert not limit.throttle(started=1.0, using=1, excess=1, now=2.0) and limit.allowed == 1


def test_once_throttled_the_limit_grows_by_one_every_rounds_answers_per_session() -> None:
    limit = Aimd(16, start=4)
    limit.throttle(started=1.0, using=4, excess=1, now=2.0)
    assert limit.allowed == 3
    grew = [limit.answered(started=3.0, using=3, excess=0, now=4.0 + i) for i in range(ROUNDS * 3)]
    assert grew == [False] * (ROUNDS * 3 - 1) + [True] and limit.allowed == 4
    assert limit.recorded == 4
    assert not any(  # not in use: no growth
        limit.answered(started=99.0, using=2, excess=0, now=100.0 + i) for i in range(ROUNDS * 8)
    )
    assert limit.allowed == 4


def test_back_at_the_cap_the_log_keeps_no_limit() -> None:
    limit = Aimd(2, start=1)
    assert limit.recorded == 1
    for i in range(ROUNDS):
        limit.answered(started=1.0, using=1, excess=0, now=2.0 + i)
    assert limit.allowed == 2 and limit.recorded is None
