"""`orchctl why`'s headline: where a task stands and what became of each attempt, from its events
folded as the daemon folds them."""

from __future__ import annotations

from datetime import datetime

import pytest

from orchctl import story
from orchd import events as ev
from orchd import state as st
from orchd import views
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
        st.apply(state, ev.Record(seq, ts, type(event).__name__, event))
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
