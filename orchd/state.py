"""The state of every run as a pure fold of the event log.

`apply(state, record)` folds one record into the state (in place, for speed
on runs of 100,000 tasks, and returns it); `replay(records)` folds a whole
log. No I/O, no clocks: times come from the records. The views at the bottom
are what `status`, `replay` and `--json` show; they are computed from the
fold alone, so `replay` of the log equals `status` of the live daemon.
"""

from __future__ import annotations

import contextlib
import copy
import gc
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import msgspec

from orchd import events as ev
from orchd.plan import RunSpec, TaskSpec

TASK_STATES = ("pending", "running", "retrying", "completed", "failed", "cancelled")
TERMINAL = frozenset({"completed", "failed", "cancelled"})


# The folded state is a tree (no reference cycles), so its structs are not tracked by the garbage
# collector: folding a million events allocates millions of them, and each GC pass would walk them all.
class AttemptState(msgspec.Struct, gc=False):
    """One attempt of a task."""

    n: int
    log_path: str
    launched_at: float
    started_at: float | None = None
    finished_at: float | None = None
    pid: int | None = None
    pgid: int | None = None
    start_ticks: int = 0
    outcome: str | None = None  # None while running
    exit_code: int | None = None
    signal: int | None = None
    reason: str = ""
    report: ev.AgentReport = ev.AgentReport()
    adoptions: int = 0  # times a restarted orchd took the attempt over again


class TaskState(msgspec.Struct, gc=False):
    """One task of a run."""

    spec: TaskSpec
    state: str = "pending"
    attempts: list[AttemptState] = msgspec.field(default_factory=list)
    retries_spent: int = 0
    due_at: float | None = None
    reason: str = ""
    cancel_requested: bool = False
    finished_at: float | None = None

    @property
    def current(self) -> AttemptState | None:
        """The attempt that is running, if any."""
        if self.attempts and self.attempts[-1].outcome is None:
            return self.attempts[-1]
        return None


class RunState(msgspec.Struct, gc=False):
    """One run: its spec, its tasks and where it stands."""

    run_id: str
    spec: RunSpec
    submitted_at: float
    source: str = ""
    state: str = "running"
    finished_at: float | None = None
    tasks: dict[str, TaskState] = msgspec.field(default_factory=dict)
    unfinished: int = 0  # tasks not completed, failed or cancelled: "is the run over?" in O(1)
    worktrees_removed: bool = False
    branches_removed: bool = False
    seq: int = 0  # the last event of this run folded in: its views are the same while this is


class State(msgspec.Struct, gc=False):
    """Every run in the log, and the last sequence number folded in."""

    runs: dict[str, RunState] = msgspec.field(default_factory=dict)
    seq: int = 0


def copy_run(run: RunState) -> RunState:
    """A copy of `run` to fold on its own: its mutable parts (the run, its tasks, their attempts)
    copied, its specs and reports (frozen) shared. A run actor's own copy of its run."""
    replace = msgspec.structs.replace
    return replace(
        run,
        tasks={
            tid: replace(t, attempts=[copy.copy(a) for a in t.attempts])
            for tid, t in run.tasks.items()
        },
    )


def apply(state: State, record: ev.Record) -> State:
    """Fold one record into `state` and return it."""
    return fold(state, ((record.seq, record.ts, record.event),))


def fold(state: State, items: Iterable[tuple[int, float, Any]], stored: bool = False) -> State:
    """Fold (seq, ts, event) items into `state`: the one fold of orch.

    `stored`: each item's event is still its stored payload, decoded here (an event of a kind
    this version does not know is kept in the log and skipped). One loop, no call per event:
    this is most of the time of a start.
    """
    runs, task_events, run_events, terminal, submitted = (
        state.runs,
        _TASK_EVENTS,
        _RUN_EVENTS,
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
    attempt.reason, attempt.report = event.reason, event.report
    task.reason = event.reason


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
assert set(_TASK_EVENTS) | set(_RUN_EVENTS) | {ev.RunSubmitted} == set(ev.EVENT_TYPES), (
    "an event without a fold"
)


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


def run_outcome(run: RunState) -> str | None:
    """The final state of a run whose tasks have all ended, else None."""
    if run.unfinished:
        return None
    states = {t.state for t in run.tasks.values()}
    if not states <= TERMINAL:
        return None
    if "failed" in states:
        return "failed"
    if "cancelled" in states:
        return "cancelled"
    return "completed"


# ---------------------------------------------------------------- views


class TaskView(msgspec.Struct, omit_defaults=False):
    """One task as `status --json` shows it."""

    id: str
    state: str
    agent: str
    attempts: int
    max_attempts: int
    reason: str
    due_at: float | None
    started_at: float | None
    finished_at: float | None
    duration: float | None
    exit_code: int | None
    pid: int | None
    log_path: str | None
    result: str
    cost_usd: float | None
    tokens_in: int | None
    tokens_out: int | None
    files: list[str]  # worktree isolation: files the task's branch changed
    branch: str | None  # worktree isolation: the task's branch, while it exists


class RunSummary(msgspec.Struct, omit_defaults=False):
    """One run without its tasks, as `runs --json` shows it."""

    run_id: str
    name: str
    state: str
    submitted_at: float
    finished_at: float | None
    concurrency: int
    workdir: str
    tasks: int
    counts: dict[str, int]
    cost_usd: float | None
    tokens_in: int | None
    tokens_out: int | None
    worktrees: int  # worktree isolation: tasks whose worktree is still on disk (`orchctl clean` removes them)


class RunView(msgspec.Struct, omit_defaults=False):
    """One run with its tasks, as `status RUN --json` shows it."""

    summary: RunSummary
    tasks: list[TaskView]


def _sum(values: Iterable[float | int | None]) -> float | int | None:
    present = [v for v in values if v is not None]
    return sum(present) if present else None


def _spent(attempts: list[AttemptState], field: str) -> float | int | None:
    """Cost or tokens over a task's attempts; a figure that is the agent session's running total
    (a resumed session reports what it spent from its start) counts once per session, its latest."""
    per_attempt: list[float | int | None] = []
    per_session: dict[str, float | int] = {}
    for attempt in attempts:
        value = getattr(attempt.report, field)
        if (
            value is not None
            and field in attempt.report.session_totals
            and attempt.report.session_id
        ):
            per_session[attempt.report.session_id] = value
        else:
            per_attempt.append(value)
    return _sum([*per_attempt, *per_session.values()])


def task_view(task: TaskState, run: RunState | None = None) -> TaskView:
    """The view of one task (of `run`, which tells where its branch is)."""
    attempts = task.attempts
    first = attempts[0] if attempts else None
    last = attempts[-1] if attempts else None
    lost = sum(1 for a in attempts if a.outcome == "lost")
    started = first.started_at or first.launched_at if first else None
    end = task.finished_at
    return TaskView(
        id=task.spec.id,
        state=task.state,
        agent=task.spec.agent,
        attempts=len(attempts),
        max_attempts=task.spec.max_retries + 1 + lost,
        reason=task.reason,
        due_at=task.due_at if task.state == "retrying" else None,
        started_at=started,
        finished_at=end,
        duration=(end - started) if (end is not None and started is not None) else None,
        exit_code=last.exit_code if last else None,
        pid=last.pid if last and last.outcome is None else None,
        log_path=last.log_path if last else None,
        result=last.report.result if last else "",
        cost_usd=_spent(attempts, "cost_usd"),
        tokens_in=_spent(attempts, "tokens_in"),  # type: ignore[arg-type]
        tokens_out=_spent(attempts, "tokens_out"),  # type: ignore[arg-type]
        files=last.report.files if last else [],
        branch=(
            f"orch/{run.run_id}/{task.spec.id}"
            if run is not None
            and attempts
            and not run.branches_removed
            and task.spec.repo is not None
            else None
        ),
    )


def run_summary(run: RunState, views: list[TaskView] | None = None) -> RunSummary:
    """The view of a run without its tasks."""
    views = [task_view(t, run) for t in run.tasks.values()] if views is None else views
    counts = Counter(v.state for v in views)
    return RunSummary(
        run_id=run.run_id,
        name=run.spec.name,
        state=run.state,
        submitted_at=run.submitted_at,
        finished_at=run.finished_at,
        concurrency=run.spec.concurrency,
        workdir=run.spec.workdir,
        tasks=len(views),
        counts={s: counts.get(s, 0) for s in TASK_STATES},
        cost_usd=_sum(v.cost_usd for v in views),
        tokens_in=_sum(v.tokens_in for v in views),  # type: ignore[arg-type]
        tokens_out=_sum(v.tokens_out for v in views),  # type: ignore[arg-type]
        worktrees=0
        if run.worktrees_removed
        else sum(1 for t in run.tasks.values() if t.attempts and t.spec.repo),
    )


def run_view(run: RunState) -> RunView:
    """The view of a run with all its tasks."""
    views = [task_view(t, run) for t in run.tasks.values()]
    return RunView(summary=run_summary(run, views), tasks=views)


class ExactlyOnce:
    """The rules a log must keep, checked event by event (`orchctl audit`): attempts of a task are
    launched 1, 2, 3…; each finishes at most once, and only after it was launched; a task completes
    at most once, and nothing is launched for it after that."""

    def __init__(self) -> None:
        self.launched: dict[tuple[str, str], int] = {}  # (run, task) -> the latest attempt launched
        self.finished: set[tuple[str, str, int]] = set()
        self.completed: set[tuple[str, str]] = set()

    def check(self, event: ev.Event | None) -> str | None:
        """What `event` breaks, or None."""
        if not isinstance(event, (ev.AttemptLaunching, ev.AttemptFinished, ev.TaskCompleted)):
            return None
        task = (event.run_id, event.task_id)
        if isinstance(event, ev.AttemptLaunching):
            if task in self.completed:
                return (
                    f"attempt {event.attempt} of {event.task_id} launched after the task completed"
                )
            if event.attempt != self.launched.get(task, 0) + 1:
                return f"attempt {event.attempt} of {event.task_id} launched after attempt {self.launched.get(task, 0)}"
            self.launched[task] = event.attempt
        elif isinstance(event, ev.AttemptFinished):
            attempt = (*task, event.attempt)
            if attempt in self.finished:
                return f"attempt {event.attempt} of {event.task_id} finished twice"
            if event.attempt > self.launched.get(task, 0):
                return f"attempt {event.attempt} of {event.task_id} finished but was never launched"
            self.finished.add(attempt)
        else:
            if task in self.completed:
                return f"task {event.task_id} completed twice"
            self.completed.add(task)
        return None
