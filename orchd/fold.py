"""The state of every run as a pure fold of the event log.

`apply(state, record)` folds one record into the state (in place, for speed
on runs of 100,000 tasks, and returns it); `replay(records)` folds a whole
log. No I/O, no clocks: times come from the records. What `status`, `replay`
and `--json` show is computed from this fold alone (`views.py`), so `replay`
of the log equals `status` of the live daemon. The state it folds into: `state.py`.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import msgspec

from orchd import events as ev
from orchd.state import (
    TERMINAL,
    AttemptState,
    DaemonState,
    ProviderState,
    RunState,
    State,
    TaskState,
)
from orchd.streams.base import ApiError, Limit, Spend


def apply(state: State, record: ev.Record) -> State:
    """Fold one record into `state` and return it."""
    return fold(state, ((record.seq, record.ts, record.event),))


def fold(state: State, items: Iterable[tuple[int, float, Any]], stored: bool = False) -> State:
    """Fold (seq, ts, event) items into `state`: the one fold of orch.

    `stored`: each item's event is still its stored payload, decoded here (an event of a kind
    this version does not know is kept in the log and skipped). One loop, no call per event:
    this is most of the time of a start.
    """
    runs, task_events, run_events, state_events, terminal, submitted = (
        state.runs,
        _TASK_EVENTS,
        _RUN_EVENTS,
        _STATE_EVENTS,
        TERMINAL,
        ev.RunSubmitted,
    )
    decode = ev.decode_stored
    last = state.seq
    for seq, ts, event in items:
        last = seq
        if stored:
            try:
                event = decode(event)
            except msgspec.ValidationError:
                ev.unknown_kind(event)  # raises unless it is a kind from a newer version
                continue
        if event is None:  # a kind from a newer version: kept in the log, skipped here
            continue
        kind = type(event)
        if kind in state_events:
            state_events[kind](state, event, ts)
            state.providers_seq = seq
            continue
        if kind is submitted:
            runs[event.run_id] = RunState(
                run_id=event.run_id,
                spec=event.spec,
                submitted_at=ts,
                source=event.source,
                tasks={t.id: TaskState(spec=t) for t in event.spec.tasks},
                unfinished=len(event.spec.tasks),
                seq=seq,
            )
            continue
        run = runs.get(event.run_id)
        if run is None:
            continue
        run.seq = seq
        on_task = task_events.get(kind)
        if on_task is not None:
            task = run.tasks[event.task_id]
            was_open = task.state not in terminal
            on_task(task, event, ts)
            if was_open and task.state in terminal:
                run.unfinished -= 1
        else:
            run_events[kind](run, event, ts)
    if last > state.seq:  # events come in order: the last one is the latest
        state.seq = last
    return state


def _tasks(run: RunState, task_ids: list[str]) -> list[TaskState]:
    return [run.tasks[t] for t in task_ids] if task_ids else list(run.tasks.values())


# ---------------------------------------------------------------- events of a run


def _run_finished(run: RunState, event: ev.RunFinished, ts: float) -> None:
    run.state, run.finished_at = event.state, ts


def _workspaces_removed(run: RunState, event: ev.WorkspacesRemoved, ts: float) -> None:
    run.worktrees_removed = True
    run.branches_removed = run.branches_removed or event.branches


def _cancel_requested(run: RunState, event: ev.CancelRequested, ts: float) -> None:
    for task in _tasks(run, event.task_ids):
        if task.state not in TERMINAL:
            task.cancel_requested = True


def _retry_requested(run: RunState, event: ev.RetryRequested, ts: float) -> None:
    for task in _tasks(run, event.task_ids):
        run.unfinished += task.state in TERMINAL
        task.state, task.retries_spent, task.reason = "pending", 0, ""
        task.budget_from = len(task.attempts)
        task.cancel_requested, task.finished_at, task.due_at = False, None, None
    run.state, run.finished_at = "running", None


# ---------------------------------------------------------------- events of a task (dispatched by type: the hot path)


def _launching(task: TaskState, event: ev.AttemptLaunching, ts: float) -> None:
    task.state, task.due_at = "running", None
    task.attempts.append(AttemptState(n=event.attempt, log_path=event.log_path, launched_at=ts))


def _started(task: TaskState, event: ev.AttemptStarted, ts: float) -> None:
    attempt = task.attempts[-1]
    attempt.pid, attempt.pgid, attempt.start_ticks, attempt.started_at = (
        event.pid,
        event.pgid,
        event.start_ticks,
        ts,
    )


def _adopted(task: TaskState, event: ev.AttemptAdopted, ts: float) -> None:
    attempt = task.attempts[-1]
    attempt.pid, attempt.pgid, attempt.start_ticks = event.pid, event.pgid, event.start_ticks
    attempt.started_at = attempt.started_at or ts
    attempt.adoptions += 1


def _finished(task: TaskState, event: ev.AttemptFinished, ts: float) -> None:
    attempt = task.attempts[-1]
    attempt.finished_at = ts
    attempt.outcome, attempt.exit_code, attempt.signal = (
        event.outcome,
        event.exit_code,
        event.signal,
    )
    attempt.reason, attempt.report, attempt.verify = event.reason, event.report, event.verify
    task.reason = event.reason


def _signaled(task: TaskState, event: ev.AttemptSignaled, ts: float) -> None:
    attempt = task.attempts[-1]
    signal = event.signal
    if type(signal) is Spend:
        attempt.spent = signal
    elif isinstance(signal, ApiError):
        attempt.api_errors += 1
        code = f" {signal.status}" if signal.status else ""
        retry = (
            f" (the agent retries: {signal.attempt}/{signal.max_retries})"
            if signal.retrying and signal.attempt
            else ""
        )
        attempt.notice = f"API error{code} {signal.category or signal.message}".rstrip() + retry
    elif isinstance(signal, Limit):
        attempt.notice = signal.message or "usage limit reached"


def _retrying(task: TaskState, event: ev.TaskRetrying, ts: float) -> None:
    task.state, task.due_at, task.reason = "retrying", event.due_at, event.reason
    task.retries_spent += event.spends_retry


def _completed(task: TaskState, event: ev.TaskCompleted, ts: float) -> None:
    task.state, task.finished_at, task.reason = "completed", ts, ""


def _failed(task: TaskState, event: ev.TaskFailed, ts: float) -> None:
    task.state, task.finished_at, task.reason = "failed", ts, event.reason


def _cancelled(task: TaskState, event: ev.TaskCancelled, ts: float) -> None:
    task.state, task.finished_at, task.cancel_requested = "cancelled", ts, False


_TASK_EVENTS: dict[type, Callable[[TaskState, Any, float], None]] = {
    ev.AttemptLaunching: _launching,
    ev.AttemptSignaled: _signaled,
    ev.AttemptStarted: _started,
    ev.AttemptAdopted: _adopted,
    ev.AttemptFinished: _finished,
    ev.TaskRetrying: _retrying,
    ev.TaskCompleted: _completed,
    ev.TaskFailed: _failed,
    ev.TaskCancelled: _cancelled,
}
_RUN_EVENTS: dict[type, Callable[[RunState, Any, float], None]] = {
    ev.RunFinished: _run_finished,
    ev.WorkspacesRemoved: _workspaces_removed,
    ev.CancelRequested: _cancel_requested,
    ev.RetryRequested: _retry_requested,
}


# ---------------------------------------------------------------- events of the whole daemon


def _provider(state: State, name: str) -> ProviderState:
    provider = state.providers.get(name)
    if provider is None:
        provider = state.providers[name] = ProviderState(name)
    return provider


def _held(state: State, event: ev.ProviderHeld, ts: float) -> None:
    limit = _provider(state, event.provider).limit
    state.providers[event.provider] = ProviderState(
        event.provider,
        limit=limit,
        held=True,
        cause=event.cause,
        reason=event.reason,
        until=event.until,
        since=ts,
        run_id=event.run_id,
        task_id=event.task_id,
    )


def _released(state: State, event: ev.ProviderReleased, ts: float) -> None:
    provider = _provider(state, event.provider)
    provider.held, provider.cause, provider.until = False, "", None
    provider.since, provider.reason = ts, event.reason


def _limited(state: State, event: ev.ProviderLimited, ts: float) -> None:
    _provider(state, event.provider).limit = event.limit


def _daemon_started(state: State, event: ev.DaemonStarted, ts: float) -> None:
    state.daemon = DaemonState(event.version, event.pid, started_at=ts)


def _daemon_stopped(state: State, event: ev.DaemonStopped, ts: float) -> None:
    state.daemon.stopped_at = ts


# Events of the whole daemon have the run id "": they are folded before the run lookup (no run has
# that id). A daemon's start or stop bumps `providers_seq` too: rare enough not to matter.
_STATE_EVENTS: dict[type, Callable[[State, Any, float], None]] = {
    ev.ProviderHeld: _held,
    ev.ProviderReleased: _released,
    ev.ProviderLimited: _limited,
    ev.DaemonStarted: _daemon_started,
    ev.DaemonStopped: _daemon_stopped,
}
assert set(_TASK_EVENTS) | set(_RUN_EVENTS) | set(_STATE_EVENTS) | {ev.RunSubmitted} == set(
    ev.EVENT_TYPES
), "an event without a fold"


def fold_rows(rows: Iterable[tuple[int, float, bytes]], state: State | None = None) -> State:
    """`replay` straight from stored rows (seq, ts, payload), decoding on the way."""
    with gc_paused():
        return fold(State() if state is None else state, rows, stored=True)


def replay(records: Iterable[ev.Record], state: State | None = None) -> State:
    """Fold a sequence of records, from an empty state unless one is given."""
    with gc_paused():
        return fold(State() if state is None else state, ((r.seq, r.ts, r.event) for r in records))


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """The garbage collector paused during a bulk fold: a fold only builds a tree (no cycles to
    collect), and its collections would walk every object built so far (a third of a large replay)."""
    paused = gc.isenabled()
    if paused:
        gc.disable()
    try:
        yield
    finally:
        if paused:
            gc.enable()
