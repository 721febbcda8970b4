"""The fold: pure, deterministic, and what status shows."""

from __future__ import annotations

import random

import msgspec
import pytest

from orchd import backoff, views
from orchd import events as ev
from orchd import state as st
from orchd.fold import apply, fold_rows, replay
from orchd.plan import BackoffSpec, RunSpec, TaskSpec


def spec(n: int = 2, retries: int = 1) -> RunSpec:
    return RunSpec(
        name="r",
        concurrency=2,
        workdir="/w",
        tasks=[
            TaskSpec(id=f"t{i}", agent="command", cwd="/w", command=["true"], max_retries=retries)
            for i in range(n)
        ],
    )


def records(events: list[ev.Event], t0: float = 1000.0) -> list[ev.Record]:
    return [ev.Record(i + 1, t0 + i, ev.kind_of(e), e) for i, e in enumerate(events)]


def story() -> list[ev.Event]:
    return [
        ev.RunSubmitted("r1", spec()),
        ev.AttemptLaunching("r1", "t0", 1, ["true"], "/w", "/l/1"),
        ev.AttemptStarted("r1", "t0", 1, pid=10, pgid=10, start_ticks=5),
        ev.AttemptFinished("r1", "t0", 1, "retry", exit_code=1, reason="exit code 1"),
        ev.TaskRetrying("r1", "t0", due_at=2000.0, delay=1.0, reason="exit code 1"),
        ev.AttemptLaunching("r1", "t0", 2, ["true"], "/w", "/l/2"),
        ev.AttemptFinished(
            "r1", "t0", 2, "success", exit_code=0, report=ev.AgentReport(result="ok", cost_usd=0.5)
        ),
        ev.TaskCompleted("r1", "t0"),
        ev.CancelRequested("r1", []),
        ev.TaskCancelled("r1", "t1"),
        ev.RunFinished("r1", "cancelled"),
    ]


def test_fold_tells_the_story() -> None:
    state = replay(records(story()))
    run = state.runs["r1"]
    t0, t1 = run.tasks["t0"], run.tasks["t1"]
    assert t0.state == "completed" and len(t0.attempts) == 2 and t0.retries_spent == 1
    assert t0.attempts[0].pid == 10 and t0.attempts[0].outcome == "retry"
    assert t1.state == "cancelled" and not t1.cancel_requested
    assert run.state == "cancelled" and state.seq == len(story())
    view = views.run_view(run)
    assert view.summary.counts["completed"] == 1 and view.summary.counts["cancelled"] == 1
    assert view.summary.cost_usd == 0.5
    assert st.run_outcome(run) == "cancelled"


def test_retrying_shows_due_time_and_retry_resets_budget() -> None:
    events = story()[:5]
    state = replay(records(events))
    view = views.task_view(state.runs["r1"].tasks["t0"])
    assert view.state == "retrying" and view.due_at == 2000.0
    state = replay(
        records(
            [
                *events,
                ev.AttemptLaunching("r1", "t0", 2, [], "/w", "/l"),
                ev.AttemptFinished("r1", "t0", 2, "retry"),
                ev.TaskFailed("r1", "t0", "x"),
                ev.RetryRequested("r1", ["t0"]),
            ]
        )
    )
    task = state.runs["r1"].tasks["t0"]
    assert task.state == "pending" and task.retries_spent == 0


def test_unknown_kinds_are_skipped() -> None:
    recs = records(story()[:2])
    recs.insert(1, ev.Record(99, 0.0, "FromTheFuture", ev.decode("FromTheFuture", b"{}")))
    state = replay(recs)
    assert state.runs["r1"].tasks["t0"].state == "running"


def test_events_round_trip_through_json() -> None:
    for event in story():
        data = ev.encode(event)
        assert ev.decode(ev.kind_of(event), data) == event
        assert msgspec.json.decode(data)["kind"] == type(event).__name__


def test_replay_is_deterministic_and_views_are_stable() -> None:
    a = msgspec.json.encode([views.run_view(r) for r in replay(records(story())).runs.values()])
    b = msgspec.json.encode([views.run_view(r) for r in replay(records(story())).runs.values()])
    assert a == b


def test_backoff_exponential_capped_and_jittered() -> None:
    spec = BackoffSpec(initial=2.0, factor=2.0, max=10.0, jitter="none")
    assert [backoff.delay(spec, n) for n in (1, 2, 3, 4, 5)] == [2.0, 4.0, 8.0, 10.0, 10.0]
    rng = random.Random(1)
    full = BackoffSpec(initial=2.0, factor=2.0, max=10.0, jitter="full")
    samples = [backoff.delay(full, 3, rng) for _ in range(200)]
    assert all(0.0 <= s <= 8.0 for s in samples) and len(set(samples)) > 100


def test_running_totals_of_a_resumed_session_count_once() -> None:
    """Claude's cost and Codex's tokens are session totals: a resumed session's figure includes the first attempt's."""
    from orchd.events import AgentReport
    from orchd.state import AttemptState
    from orchd.views import _spent

    def attempt(n: int, session: str, cost: float, tokens: int) -> AttemptState:
        return AttemptState(
            n=n,
            log_path="",
            launched_at=0.0,
            report=AgentReport(
                session_id=session, cost_usd=cost, tokens_in=tokens, session_totals=["cost_usd"]
            ),
        )

    attempts = [attempt(1, "s1", 0.10, 100), attempt(2, "s1", 0.25, 50), attempt(3, "s2", 0.05, 10)]
    assert _spent(attempts, "cost_usd") == 0.25 + 0.05  # latest of s1, plus s2
    assert _spent(attempts, "tokens_in") == 160  # per attempt: summed
    assert _spent([], "cost_usd") is None


def test_a_fold_from_stored_rows_skips_unknown_kinds_and_refuses_damaged_payloads() -> None:
    rows = [(1, 0.0, b'{"kind":"FromTheFuture","run_id":"r","anything":[1]}')]
    assert fold_rows(rows).seq == 1  # kept in the log, skipped by the fold
    with pytest.raises(msgspec.ValidationError):
        fold_rows(
            [(1, 0.0, b'{"kind":"RunFinished","run_id":5}')]
        )  # a known kind that does not decode


def test_a_copy_of_a_run_folds_on_its_own_and_shares_only_frozen_parts() -> None:
    state = replay(records(story()[:3]))  # submitted, t0 launched and started
    run = state.runs["r1"]
    mine = st.copy_run(run)
    assert mine == run and mine.spec is run.spec and mine.tasks["t0"].spec is run.tasks["t0"].spec
    apply(
        st.State(runs={"r1": mine}),
        ev.Record(
            4, 1003.0, "AttemptFinished", ev.AttemptFinished("r1", "t0", 1, "success", exit_code=0)
        ),
    )
    apply(
        st.State(runs={"r1": mine}),
        ev.Record(5, 1004.0, "TaskCompleted", ev.TaskCompleted("r1", "t0")),
    )
    assert mine.tasks["t0"].state == "completed" and mine.tasks["t0"].attempts[0].exit_code == 0
    assert run.tasks["t0"].state == "running" and run.tasks["t0"].attempts[0].exit_code is None
    assert run.unfinished == 2 and mine.unfinished == 1


def test_the_daemon_s_starts_and_stops_are_folded_before_any_run() -> None:
    """Events of the whole daemon have no run ("") and say how the daemon before a start ended."""
    state = replay(records([ev.RunSubmitted("r1", spec())]))
    assert st.previous_daemon(state.daemon) == ""  # a log of orch 0.1: no daemon events
    replay(records([ev.DaemonStarted("", "0.2.0", 10, running=0)], t0=2000.0), state)
    assert state.daemon == st.DaemonState("0.2.0", 10, started_at=2000.0)
    assert st.previous_daemon(state.daemon) == "crashed"  # no DaemonStopped: it died
    replay(records([ev.DaemonStopped("", "0.2.0", 10, left_running=2)], t0=2100.0), state)
    assert state.daemon.stopped_at == 2100.0
    assert st.previous_daemon(state.daemon) == "stopped"
    assert list(state.runs) == ["r1"]  # no run "" was made
