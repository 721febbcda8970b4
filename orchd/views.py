"""What `status`, `replay`, `results` and `--json` show of a run, computed from the fold alone.

Pure, like the fold: `replay` of the log therefore equals `status` of the live daemon.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

import msgspec

from orchd.decide import FREE
from orchd.events import VerifyResult
from orchd.state import TASK_STATES, TERMINAL, AttemptState, ProviderState, RunState, TaskState

Providers = dict[str, ProviderState]  # the fold's providers (State.providers)


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
    provider: str | None = None  # the account its sessions spend (providers.py)
    notice: str = ""  # the latest API error or limit its latest attempt's stream showed
    held: str | None = None  # why it waits: its provider is held (and until when)
    verify: VerifyResult | None = None  # how its latest attempt's checks went (None: none ran)


class ProviderView(msgspec.Struct, omit_defaults=False):
    """A provider that a run's tasks spend, as `status --json` shows it."""

    provider: str
    held: bool
    cause: str  # auth | billing | usage_limit, while held
    reason: str
    until: float | None  # a hold that ends by itself then
    limit: int | None  # sessions at once, lowered by its rate limits (None: only the caps)
    tasks: int  # the run's tasks that spend it
    running: int
    cost_usd: float | None  # what the run's tasks spent of it


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
    budget_usd: float | None = None
    providers: list[ProviderView] = []


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


def task_cost(task: TaskState) -> float | None:
    """What a task has spent: its ended attempts' reported cost, and what its running attempt's
    stream has said so far."""
    ended = _spent(task.attempts, "cost_usd")
    current = task.current
    live = current.spent.cost_usd if current is not None else None
    if live is None:
        return ended
    return (ended or 0.0) + live


def run_cost(run: RunState) -> float | None:
    """What a run has spent so far (its running attempts included)."""
    return _sum(task_cost(t) for t in run.tasks.values())


def held_reason(hold: ProviderState | None) -> str | None:
    """Why a task of a held provider waits, and what ends it."""
    if hold is None or not hold.held:
        return None
    if hold.until is not None:
        return f"held: {hold.reason} (until its reset, unix time {hold.until:.0f})"
    return f"held: {hold.reason} (fix it, then `orchctl retry RUN` releases it)"


def task_view(
    task: TaskState, run: RunState | None = None, providers: Providers | None = None
) -> TaskView:
    """The view of one task (of `run`, which tells where its branch is; `providers`, their holds)."""
    attempts = task.attempts
    first = attempts[0] if attempts else None
    last = attempts[-1] if attempts else None
    # at most: the attempts before the user's latest retry, then a fresh budget (lost, deferred and
    # interrupted attempts spend no retry)
    lost = sum(1 for a in attempts[task.budget_from :] if a.outcome in FREE)
    started = first.started_at or first.launched_at if first else None
    end = task.finished_at
    return TaskView(
        id=task.spec.id,
        state=task.state,
        agent=task.spec.agent,
        attempts=len(attempts),
        max_attempts=task.budget_from + task.spec.max_retries + 1 + lost,
        reason=task.reason,
        due_at=task.due_at if task.state == "retrying" else None,
        started_at=started,
        finished_at=end,
        duration=(end - started) if (end is not None and started is not None) else None,
        exit_code=last.exit_code if last else None,
        pid=last.pid if last and last.outcome is None else None,
        log_path=last.log_path if last else None,
        result=last.report.result if last else "",
        cost_usd=task_cost(task),
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
        provider=task.spec.provider,
        notice=last.notice if last else "",
        held=held_reason((providers or {}).get(task.spec.provider or ""))
        if task.state not in TERMINAL and task.current is None
        else None,
        verify=last.verify if last else None,
    )


def provider_views(
    run: RunState, views: list[TaskView], providers: Providers | None
) -> list[ProviderView]:
    """The providers a run's tasks spend, with their holds, limits, and what the run spent of each."""
    by: dict[str, list[TaskView]] = {}
    for view in views:
        if view.provider:
            by.setdefault(view.provider, []).append(view)
    out = []
    for name, tasks in sorted(by.items()):
        state = (providers or {}).get(name) or ProviderState(name)
        out.append(
            ProviderView(
                provider=name,
                held=state.held,
                cause=state.cause if state.held else "",
                reason=state.reason if state.held else "",
                until=state.until if state.held else None,
                limit=state.limit,
                tasks=len(tasks),
                running=sum(1 for v in tasks if v.state == "running"),
                cost_usd=_sum(v.cost_usd for v in tasks),
            )
        )
    return out


def run_summary(
    run: RunState, views: list[TaskView] | None = None, providers: Providers | None = None
) -> RunSummary:
    """The view of a run without its tasks."""
    if views is None:
        views = [task_view(t, run, providers) for t in run.tasks.values()]
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
        budget_usd=run.spec.budget_usd,
        providers=provider_views(run, views, providers),
    )


def run_view(run: RunState, providers: Providers | None = None) -> RunView:
    """The view of a run with all its tasks."""
    views = [task_view(t, run, providers) for t in run.tasks.values()]
    return RunView(summary=run_summary(run, views, providers), tasks=views)


class TaskRecord(msgspec.Struct, omit_defaults=False):
    """One task with every attempt: a row of `export`'s tasks table and its attempts' rows."""

    task: TaskView
    attempts: list[AttemptState]


class RunRecord(msgspec.Struct, omit_defaults=False):
    """One run with its tasks and their attempts, as `orchctl export` writes them."""

    summary: RunSummary
    tasks: list[TaskRecord]


def run_record(run: RunState, providers: Providers | None = None) -> RunRecord:
    """The record of a run (call with the fold holding still: attempts are its own)."""
    views = [task_view(t, run, providers) for t in run.tasks.values()]
    return RunRecord(
        summary=run_summary(run, views, providers),
        tasks=[
            TaskRecord(task=v, attempts=list(t.attempts))
            for v, t in zip(views, run.tasks.values(), strict=True)
        ],
    )
