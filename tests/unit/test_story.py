"""`orchctl why`'s headline: where a task stands and what became of each attempt, from its events
folded as the daemon folds them."""

from __future__ import annotations

from datetime import datetime

import pytest

from orchctl import story
from orchd import events as ev
from orchd import state as st
from orchd import views
from orchd.fold import apply
from orchd.plan import RunSpec, TaskSpec

T0 = datetime(2026, 1, 5, 19, 40).timestamp()
SPEC = RunSpec(
    name="r",
    concurrency=1,
    workdir="/w",
    tasks=[TaskSpec(id="t", agent="command", cwd="/w", command=["x"], max_retries=1)],
)


def launch(n: int) -> list[ev.Event]:
    return [ev.AttemptLaunching("r", "t", n, ["x"], "/w", f"/l{n}")]


def failed(n: int, outcome: str = "retry", reason: str = "exit code 1") -> ev.Event:
    return ev.AttemptFinished("r", "t", n, outcome, exit_code=1, reason=reason)


def retrying(delay: float, spends: bool = True) -> ev.Event:
    return ev.TaskRetrying("r", "t", due_at=T0 + 600, delay=delay, reason="x", spends_retry=spends)


def succeeded(n: int) -> list[ev.Event]:
    return [ev.AttemptFinished("r", "t", n, "success", exit_code=0), ev.TaskCompleted("r", "t")]


def told(events: list[ev.Event]) -> str:
    """The headline of task t after `events`, each recorded a minute after the one before."""
    timed = [(T0 + 60 * i, e) for i, e in enumerate([ev.RunSubmitted("r", SPEC), *events])]
    state = st.State()
    for seq, (ts, event) in enumerate(timed, 1):
        apply(state, ev.Record(seq, ts, type(event).__name__, event))
    task = views.task_view(state.runs["r"].tasks["t"])
    return story.headline(task, story.attempts(timed[1:]))


GAVE_UP = ev.TaskFailed("r", "t", reason="exit code 1 (gave up after 2 attempts)")


@pytest.mark.parametrize(
    ("events", "headline"),
    [
        ([], "pending, no attempt yet"),
        ([*launch(1), *succeeded(1)], "completed on attempt 1"),
        (launch(1), "attempt 1 is running"),
        (
            [*launch(1), failed(1), retrying(2.0)],
            "retrying: attempt 2 at 19:50:00 (attempt 1 failed: exit code 1; retried after 2.0s)",
        ),
        (
            [*launch(1), failed(1), retrying(2.0), *launch(2), *succeeded(2)],
            "completed on attempt 2 (attempt 1 failed: exit code 1; retried after 2.0s)",
        ),
        (  # the user's retry, at the minute it was asked for
            [
                *launch(1),
                failed(1),
                ev.TaskFailed("r", "t", reason="exit code 1 (gave up after 1 attempt)"),
                ev.RetryRequested("r", ["t"]),
                *launch(2),
                *succeeded(2),
            ],
            "completed on attempt 2 (attempt 1 failed: exit code 1 (gave up after 1 attempt); "
            "retried by `orchctl retry` at 19:44)",
        ),
        (
            [*launch(1), failed(1), retrying(2.0), *launch(2), failed(2), GAVE_UP],
            "failed on attempt 2: exit code 1 (gave up after 2 attempts) "
            "(attempt 1 failed: exit code 1; retried after 2.0s)",
        ),
        (
            [
                *launch(1),
                failed(1, "park", "usage limit"),
                retrying(600, spends=False),
                *launch(2),
                failed(2, "lost", "orchd restarted"),
                retrying(0, spends=False),
                *launch(3),
                *succeeded(3),
            ],
            "completed on attempt 3 (attempt 1 was parked: usage limit; run again at 19:50, no "
            "retry spent; then attempt 2 was lost: orchd restarted; run again at 19:50, no retry "
            "spent)",
        ),
        (
            [
                *launch(1),
                ev.CancelRequested("r"),
                failed(1, "cancelled", "cancelled by the user"),
                ev.TaskCancelled("r", "t"),
            ],
            "cancelled during attempt 1",
        ),
        (
            [
                *launch(1),
                failed(1),
                retrying(2.0),
                ev.CancelRequested("r"),
                ev.TaskCancelled("r", "t"),
            ],
            "cancelled (attempt 1 failed: exit code 1; then the task was cancelled)",
        ),
    ],
)
def test_the_headline_says_what_became_of_each_attempt(
    events: list[ev.Event], headline: str
) -> None:
    assert told(events) == headline


def test_every_outcome_of_an_attempt_is_told_in_words() -> None:
    from orchd import decide as d

    outcomes = {
        d.SUCCESS,
        d.RETRY,
        d.PARK,
        d.PERMANENT,
        d.TIMEOUT,
        d.CANCELLED,
        d.LOST,
        d.DISK_FULL,
        d.VERIFY_FAILED,
        d.INTERRUPTED,
    }
    assert outcomes == set(story.ENDED)


def test_a_long_history_names_the_last_attempts_and_points_below_for_the_rest() -> None:
    events: list[ev.Event] = []
    for n in range(1, 6):
        events += [*launch(n), failed(n, "lost", "gone"), retrying(0, spends=False)]
    events += [*launch(6), *succeeded(6)]
    headline = told(events)
    assert headline.startswith("completed on attempt 6 (attempts 1-2: see below; then attempt 3 ")
    assert headline.count("was lost") == 3


def test_the_story_tells_the_user_s_retries_and_cancels_of_the_task_only() -> None:
    assert story.concerns(ev.RetryRequested("r", ["t"]), "t")
    assert not story.concerns(ev.RetryRequested("r", ["u"]), "t")
    assert story.concerns(ev.CancelRequested("r"), "t")  # the whole run
    assert not story.concerns(ev.TaskCompleted("r", "u"), "t")
    assert story.line(T0, ev.RetryRequested("r", ["t"])) == (
        "19:40:00  -> `orchctl retry`: run again with a fresh retry budget"
    )


def stopped(left: int = 1, ended: int = 0) -> ev.Event:
    return ev.DaemonStopped("", "0.2.0", 10, left_running=left, ended=ended)


def started(running: int = 1, previous: str = "stopped") -> ev.Event:
    return ev.DaemonStarted("", "0.2.0", 11, running=running, previous=previous)


ADOPTED = ev.AttemptAdopted("r", "t", 1, 123, 123)


def test_a_task_s_story_tells_the_restarts_of_orchd_its_attempt_ran_across() -> None:
    other = ev.AttemptLaunching("r", "u", 1, ["x"], "/w", "/u1")
    events = [
        stopped(),  # before the task ran: not its story
        *launch(1),
        ev.AttemptStarted("r", "t", 1, 123, 123),
        other,
        stopped(),
        started(),
        ADOPTED,
        started(previous="crashed"),
        ADOPTED,
        *succeeded(1),
        stopped(0),  # after it ended: not its story either
    ]
    timed = [(T0 + 60 * i, e) for i, e in enumerate(events)]
    kept = story.told(timed, "t")
    assert [type(e).__name__ for _, e in kept] == [
        "AttemptLaunching",
        "AttemptStarted",
        "DaemonStopped",
        "DaemonStarted",
        "AttemptAdopted",
        "DaemonStarted",
        "AttemptAdopted",
        "AttemptFinished",
        "TaskCompleted",
    ]
    assert told([e for e in events if e is not other]) == (
        "completed on attempt 1, across 2 restarts of orchd"
    )
    lines = [story.line(ts, e) for ts, e in kept]
    assert lines[2] == "19:44:00  orchd 0.2.0 stopped: sessions 1 kept running"
    assert lines[3] == "19:45:00  orchd 0.2.0 started, to take over 1 sessions"
    assert lines[4] == "19:46:00    taken over: still running as pid 123"
    assert lines[5] == "19:47:00  orchd 0.2.0 started after a crash, to take over 1 sessions"


def test_an_attempt_ended_as_orchd_stopped_is_told_interrupted() -> None:
    reason = "ended as orchd stopped (`orchctl daemon stop --end-sessions`)"
    events = [
        *launch(1),
        stopped(0, ended=1),
        failed(1, "interrupted", reason),
        retrying(0, spends=False),
        started(0),
        *launch(2),
        *succeeded(2),
    ]
    assert told(events) == (
        f"completed on attempt 2 (attempt 1 was interrupted: {reason}; run again at 19:50, no "
        "retry spent)"
    )
    assert story.line(T0, stopped(0, ended=1)) == (
        "19:40:00  orchd 0.2.0 stopped: sessions 1 ended (interrupted)"
    )
