"""decide(): what a task does after an attempt ends, as a table, checked against the fold."""

from __future__ import annotations

import random

import msgspec
import pytest

from orchd import decide as d
from orchd import events as ev
from orchd import state as st
from orchd.decide import Ended, Exit, Outcome
from orchd.fold import replay
from orchd.plan import BackoffSpec, RunSpec, TaskSpec

NOW = 10_000.0
BACKOFF = BackoffSpec(initial=2.0, factor=2.0, max=300.0, jitter="none")


def task_after(
    history: list[str], retries_spent: int = 0, max_retries: int = 2, cancel: bool = False
) -> tuple[st.State, st.TaskState]:
    """The fold of a run whose task `t` ended attempts with `history`'s outcomes, then launched one more."""
    spec = TaskSpec(
        id="t", agent="command", cwd="/w", command=["x"], max_retries=max_retries, backoff=BACKOFF
    )
    events: list[ev.Event] = [ev.RunSubmitted("r", RunSpec("r", 1, "/w", [spec]))]
    for n, outcome in enumerate(history, start=1):
        events.append(ev.AttemptLaunching("r", "t", n, ["x"], "/w", f"/l/{n}"))
        events.append(ev.AttemptFinished("r", "t", n, outcome))
        events.append(ev.TaskRetrying("r", "t", due_at=NOW, delay=0.0, spends_retry=False))
    if cancel:
        events.append(ev.CancelRequested("r", ["t"]))
    events.append(ev.AttemptLaunching("r", "t", len(history) + 1, ["x"], "/w", "/l/last"))
    state = replay([ev.Record(i + 1, NOW, ev.kind_of(e), e) for i, e in enumerate(events)])
    task = state.runs["r"].tasks["t"]
    task.retries_spent = retries_spent  # however they were spent
    return state, task


def ended(
    outcome: str,
    stopped: str | None = None,
    park_in: float | None = None,
    verify: ev.VerifyResult | None = None,
) -> Ended:
    park = NOW + park_in if park_in is not None else None
    exit = Exit(0 if outcome == d.SUCCESS else 1, None, "/l/last")
    reading = Outcome(outcome, reason=f"it said {outcome}", park_until=park, verify=verify)
    return Ended(1, reading, exit, stopped)


# how the task's checks went (the plan's `verify`, run after the agent exited 0)
PYTEST = ["python3", "-m", "pytest", "-q"]
PASSED = ev.VerifyResult("passed", checks=1)
FAILED = ev.VerifyResult("failed", checks=1, argv=PYTEST, detail="exit 1", output="1 failed")
HUNG = ev.VerifyResult("timeout", checks=1, argv=PYTEST, detail="timed out after 5s")
GONE = ev.VerifyResult("not_found", checks=1, argv=["nope"], detail="not found")
VF = d.VERIFY_FAILED


# (history, retries spent, cancel requested, how it ended) -> (recorded outcome, task state, retry spent, delay)
TABLE = [
    # success wins over a cancel that came too late to stop it
    ([], 0, False, ended(d.SUCCESS), d.SUCCESS, "completed", False, None),
    ([], 0, True, ended(d.SUCCESS), d.SUCCESS, "completed", False, None),
    # orch stopped it
    ([], 0, False, ended(d.SUCCESS, stopped=d.CANCELLED), d.CANCELLED, "cancelled", False, None),
    ([], 0, False, ended(d.RETRY, stopped=d.TIMEOUT), d.TIMEOUT, "retrying", True, 2.0),
    (
        [d.TIMEOUT, d.TIMEOUT],
        2,
        False,
        ended(d.RETRY, stopped=d.TIMEOUT),
        d.TIMEOUT,
        "failed",
        False,
        None,
    ),
    # a cancel requested while it ran turns any other end into cancelled
    ([], 0, True, ended(d.RETRY), d.CANCELLED, "cancelled", False, None),
    ([], 0, True, ended(d.PERMANENT), d.CANCELLED, "cancelled", False, None),
    # the output's reading
    ([], 0, False, ended(d.PERMANENT), d.PERMANENT, "failed", False, None),
    ([], 0, False, ended(d.RETRY), d.RETRY, "retrying", True, 2.0),
    ([d.RETRY], 1, False, ended(d.RETRY), d.RETRY, "retrying", True, 4.0),
    ([d.RETRY, d.RETRY], 2, False, ended(d.RETRY), d.RETRY, "failed", False, None),
    # parks spend no retry, wait until the named time, at most MAX_PARK ahead
    ([], 0, False, ended(d.PARK, park_in=3600.0), d.PARK, "retrying", False, 3600.0),
    ([], 2, False, ended(d.PARK, park_in=3600.0), d.PARK, "retrying", False, 3600.0),
    ([], 0, False, ended(d.PARK, park_in=1e9), d.PARK, "retrying", False, d.MAX_PARK),
    # ... until MAX_PARKS in a row: then a park spends a retry, and fails the task without one left
    ([d.PARK] * 3, 0, False, ended(d.PARK, park_in=60.0), d.PARK, "retrying", True, 60.0),
    ([d.PARK] * 3, 2, False, ended(d.PARK, park_in=60.0), d.PARK, "failed", False, None),
    (
        [d.PARK, d.RETRY, d.PARK],
        1,
        False,
        ended(d.PARK, park_in=60.0),
        d.PARK,
        "retrying",
        False,
        60.0,
    ),
    # lost: retried at once without spending a retry, but the MAX_LOST-th lost attempt fails
    ([], 2, False, ended(d.LOST), d.LOST, "retrying", False, 0.0),
    ([d.LOST] * (d.MAX_LOST - 2), 0, False, ended(d.LOST), d.LOST, "retrying", False, 0.0),
    ([d.LOST] * (d.MAX_LOST - 1), 0, False, ended(d.LOST), d.LOST, "failed", False, None),
    # interrupted (orchd stopped with --end-sessions): run again at the next start, no retry
    # spent, even with none left, and never counted as lost; success and a cancel still win
    ([], 0, False, ended(d.RETRY, stopped=d.INTERRUPTED), d.INTERRUPTED, "retrying", False, 0.0),
    (
        [d.RETRY, d.RETRY],
        2,
        False,
        ended(d.PERMANENT, stopped=d.INTERRUPTED),
        d.INTERRUPTED,
        "retrying",
        False,
        0.0,
    ),
    (
        [d.LOST] * (d.MAX_LOST - 1),
        0,
        False,
        ended(d.LOST, stopped=d.INTERRUPTED),
        d.INTERRUPTED,
        "retrying",
        False,
        0.0,
    ),
    ([], 0, False, ended(d.SUCCESS, stopped=d.INTERRUPTED), d.SUCCESS, "completed", False, None),
    ([], 0, True, ended(d.RETRY, stopped=d.INTERRUPTED), d.CANCELLED, "cancelled", False, None),
    # failed on a full disk: retried after backoff without spending a retry, MAX_DISK_FULL-1 times
    ([], 2, False, ended(d.DISK_FULL), d.DISK_FULL, "retrying", False, 2.0),
    ([d.DISK_FULL] * 3, 0, False, ended(d.DISK_FULL), d.DISK_FULL, "retrying", False, 16.0),
    ([d.DISK_FULL] * 4, 0, False, ended(d.DISK_FULL), d.DISK_FULL, "retrying", True, 2.0),
    ([d.DISK_FULL] * 4, 2, False, ended(d.DISK_FULL), d.DISK_FULL, "failed", False, None),
    # the agent succeeded: its checks decide; a failed or hung check spends a retry like `retry`
    ([], 0, False, ended(d.SUCCESS, verify=PASSED), d.SUCCESS, "completed", False, None),
    ([], 0, False, ended(d.SUCCESS, verify=FAILED), VF, "retrying", True, 2.0),
    ([], 0, False, ended(d.SUCCESS, verify=HUNG), VF, "retrying", True, 2.0),
    ([VF], 1, False, ended(d.SUCCESS, verify=FAILED), VF, "retrying", True, 4.0),
    ([VF, VF], 2, False, ended(d.SUCCESS, verify=FAILED), VF, "failed", False, None),
    # ... a check that cannot be started fails the task at once: no retry installs it
    ([], 0, False, ended(d.SUCCESS, verify=GONE), d.PERMANENT, "failed", False, None),
    # ... the agent's own verdict, orch's stop and the user's cancel come first
    ([], 0, False, ended(d.RETRY, verify=PASSED), d.RETRY, "retrying", True, 2.0),
    ([], 0, False, ended(d.SUCCESS, d.TIMEOUT, verify=FAILED), d.TIMEOUT, "retrying", True, 2.0),
    ([], 0, True, ended(d.SUCCESS, verify=FAILED), d.CANCELLED, "cancelled", False, None),
    ([], 0, True, ended(d.SUCCESS, verify=GONE), d.CANCELLED, "cancelled", False, None),
    # deferred (rate-limited before any answer): again at once, no retry spent, MAX_DEFERRALS in a row
    ([], 2, False, ended(d.DEFERRED), d.DEFERRED, "retrying", False, 0.0),
    ([d.DEFERRED] * 9, 0, False, ended(d.DEFERRED), d.DEFERRED, "retrying", False, 0.0),
    ([d.DEFERRED] * 10, 0, False, ended(d.DEFERRED), d.DEFERRED, "retrying", True, 2.0),
    ([d.DEFERRED] * 10, 2, False, ended(d.DEFERRED), d.DEFERRED, "failed", False, None),
]


@pytest.mark.parametrize(
    ("history", "spent", "cancel", "end", "outcome", "then", "spends", "delay"), TABLE
)
def test_decide(history, spent, cancel, end, outcome, then, spends, delay) -> None:
    state, task = task_after(history, retries_spent=spent, cancel=cancel)
    end = Ended(len(history) + 1, end.reading, end.exit, end.stopped)
    events = d.decide("r", task, end, NOW, random.Random(1))
    finished, after = events
    assert type(finished) is ev.AttemptFinished and finished.outcome == outcome
    assert finished.attempt == len(history) + 1
    if delay is not None:
        assert type(after) is ev.TaskRetrying
        assert after.spends_retry is spends and after.delay == pytest.approx(delay)
        assert after.due_at == pytest.approx(NOW + delay)
    # checked against the fold: the events are what the state then shows
    seq = state.seq
    replay([ev.Record(seq + i + 1, NOW, ev.kind_of(e), e) for i, e in enumerate(events)], state)
    folded = state.runs["r"].tasks["t"]
    assert folded.state == then
    assert folded.current is None and folded.attempts[-1].outcome == outcome
    assert folded.retries_spent == spent + spends


@pytest.mark.parametrize(
    ("checks", "outcome", "reason"),
    [
        (PASSED, d.SUCCESS, "it said success"),
        (FAILED, VF, "verify: python3 -m pytest -q: exit 1"),
        (HUNG, VF, "verify: python3 -m pytest -q: timed out after 5s"),
        (GONE, d.PERMANENT, "verify: nope: not found (is it installed, and on orchd's PATH?)"),
    ],
)
def test_the_checks_are_recorded_with_their_reason(
    checks: ev.VerifyResult, outcome: str, reason: str
) -> None:
    _, task = task_after([])
    finished, after = d.decide("r", task, ended(d.SUCCESS, verify=checks), NOW)
    assert finished.outcome == outcome and finished.reason == reason
    assert finished.verify == checks  # `why`, `results` and the next attempt's prompt read it
    assert (finished.outcome in d.RETRYABLE) == (outcome == VF)
    if outcome == d.PERMANENT:
        assert after == ev.TaskFailed("r", "t", reason=reason)


def test_a_task_that_gave_up_says_how_many_attempts() -> None:
    _, task = task_after([d.RETRY, d.RETRY], retries_spent=2)
    events = d.decide("r", task, Ended(3, Outcome(d.RETRY, reason="exit code 1")), NOW)
    assert events[-1] == ev.TaskFailed("r", "t", reason="exit code 1 (gave up after 3 attempts)")


def test_an_attempt_lost_in_a_restart_is_retried_at_once() -> None:
    _, task = task_after([])
    finished, retrying = d.lost_in_restart("r", task, 1, NOW)
    assert finished.outcome == d.LOST and "orchd restarted" in finished.reason
    assert retrying == ev.TaskRetrying(
        "r", "t", due_at=NOW, delay=0.0, reason=finished.reason, spends_retry=False
    )


def test_a_stopped_attempt_keeps_what_its_output_reported() -> None:
    _, task = task_after([])
    report = ev.AgentReport(cost_usd=1.25, tokens_in=10)
    reading = Outcome(d.RETRY, reason="whatever", report=report)
    finished = d.decide("r", task, Ended(1, reading, stopped=d.TIMEOUT), NOW)[0]
    assert finished.outcome == d.TIMEOUT and finished.report.cost_usd == 1.25


# ------------------------------------------------------------ while an attempt runs

from orchd.streams.base import Answered, ApiError, Limit, Spend  # noqa: E402


def spec(budget: float | None = None) -> TaskSpec:
    return TaskSpec(id="t", agent="claude", cwd="/w", prompt="p", budget_usd=budget)


LIVE = [
    # a rejected credential: stop now (even while the CLI retries it), hold until the user acts
    (
        ApiError("auth", 401, "authentication_failed", retrying=True),
        d.PERMANENT,
        "auth",
        None,
        False,
    ),
    (ApiError("billing", 402, "billing_error"), d.PERMANENT, "billing", None, False),
    # a usage limit with its reset: park the attempt, hold the provider until the reset
    (Limit(NOW + 600, "five_hour limit reached"), d.PARK, "usage_limit", NOW + 600, False),
    # rate limits and overloads after the provider's first answer: the agent retries; the
    # provider is throttled
    (ApiError("rate_limit", 429, retrying=True, retry_in=7.0), None, None, None, True),
    (ApiError("overload", 529, retrying=True), None, None, None, True),
    # a limit already past, or without a time: throttle only
    (Limit(NOW - 1), None, None, None, True),
    (Limit(None), None, None, None, True),
]


@pytest.mark.parametrize(("signal", "stop", "cause", "until", "throttle"), LIVE)
def test_live(signal, stop, cause, until, throttle) -> None:
    live = d.live(signal, spec(), 0.0, NOW, hint="set ANTHROPIC_API_KEY")
    assert live is not None
    assert (live.stop.outcome if live.stop else None) == stop
    assert (live.hold.cause if live.hold else None) == cause
    assert (live.hold.until if live.hold else None) == until
    assert live.throttle is throttle
    if stop == d.PERMANENT:
        assert "set ANTHROPIC_API_KEY" in live.stop.reason
    if stop == d.PARK:
        assert live.stop.park_until == until


def test_live_counts_the_providers_first_answer() -> None:
    assert d.live(Answered(), spec(), 0.0, NOW) == d.Live(answered=True)


def test_a_rate_limit_before_the_first_answer_defers_the_attempt() -> None:
    limited = ApiError("rate_limit", 429, retrying=True, retry_in=7.0)
    live = d.live(limited, spec(), 0.0, NOW, answered=False)
    assert live.stop.outcome == d.DEFERRED and live.throttle and live.pause == 7.0
    assert live.hold is None
    # one the agent gives up on ends the attempt anyway; an overload is left to the agent
    gave_up = ApiError("rate_limit", 429, retrying=False)
    assert d.live(gave_up, spec(), 0.0, NOW, answered=False).stop is None
    overloaded = ApiError("overload", 529, retrying=True)
    assert d.live(overloaded, spec(), 0.0, NOW, answered=False).stop is None


def test_live_honours_retry_after_for_rate_limits_only() -> None:
    assert d.live(ApiError("rate_limit", 429, retry_in=7.0), spec(), 0.0, NOW).pause == 7.0
    assert d.live(ApiError("overload", 529, retry_in=7.0), spec(), 0.0, NOW).pause is None


def test_live_stops_a_task_past_its_budget() -> None:
    assert d.live(Spend(cost_usd=0.5), spec(budget=2.0), 1.0, NOW) is None
    live = d.live(Spend(cost_usd=1.5), spec(budget=2.0), 1.0, NOW)
    assert (
        live.stop.outcome == d.PERMANENT and "budget $2 reached ($2.50 spent)" in live.stop.reason
    )
    assert d.live(Spend(cost_usd=100.0), spec(), 0.0, NOW) is None  # no budget, no stop


def test_other_errors_are_left_to_the_agent() -> None:
    assert d.live(ApiError("invalid", 400), spec(), 0.0, NOW) is None
    assert d.live(ApiError("", None, "something odd"), spec(), 0.0, NOW) is None


def test_over_budget() -> None:
    assert d.over_budget(None, 5.0) is None
    assert d.over_budget(5.0, 4.99) is None
    assert d.over_budget(5.0, 5.0) == "not started: budget $5 reached ($5.00 spent)"


def test_a_stalled_attempt_is_a_timeout_that_says_so() -> None:
    _, task = task_after([])
    task.spec = msgspec.structs.replace(task.spec, stall=60.0)
    finished, after = d.decide("r", task, Ended(1, Outcome(d.RETRY), stopped=d.STALLED), NOW)
    assert finished.outcome == d.TIMEOUT and finished.reason == "stalled: no output for 60s"
    assert after.spends_retry
