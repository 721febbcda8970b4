"""The state of every run as the fold of the event log builds it (the fold: `fold.py`).

Runs, their tasks and attempts, the providers' holds and the daemon: pure data, with the
questions asked of it (a run's outcome, how the daemon before a start ended) and a run actor's
own copy of its run. What `status`, `replay` and `--json` show is computed from it alone
(`views.py`).
"""

from __future__ import annotations

import copy

import msgspec

from orchd import events as ev
from orchd.spec import RunSpec, TaskSpec
from orchd.streams.base import Spend

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
    verify: ev.VerifyResult | None = None  # how the task's checks went, when they ran
    adoptions: int = 0  # times a restarted orchd took the attempt over again
    spent: Spend = Spend()  # what its stream said it had spent so far, while it ran
    notice: str = ""  # the latest API error or limit its stream showed, in words
    api_errors: int = 0  # API errors its stream showed (the agent's own retries included)


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
    budget_from: int = 0  # attempts made before the user's latest `orchctl retry` (a fresh budget)

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


class ProviderState(msgspec.Struct, gc=False):
    """An account agents spend (providers.py), as the log last said of it."""

    provider: str
    held: bool = False
    cause: str = ""  # auth | billing | usage_limit
    reason: str = ""
    until: float | None = None  # a hold that ends by itself then (a usage limit's reset)
    since: float | None = None
    run_id: str = ""  # the attempt that showed it
    task_id: str | None = None
    limit: int | None = None  # sessions at once, lowered by its rate limits (None: the caps)


class DaemonState(msgspec.Struct, gc=False):
    """orchd as the log last said of it (DaemonStarted, DaemonStopped)."""

    version: str = ""
    pid: int = 0
    started_at: float | None = None  # None: no DaemonStarted in the log (a log of orch 0.1)
    stopped_at: float | None = None  # None while it runs, or once it ended without a DaemonStopped


class State(msgspec.Struct, gc=False):
    """Every run in the log, the providers' holds, the daemon, and the last sequence number folded in."""

    runs: dict[str, RunState] = msgspec.field(default_factory=dict)
    seq: int = 0
    providers: dict[str, ProviderState] = msgspec.field(default_factory=dict)
    providers_seq: int = 0  # the last event of the whole daemon folded in: the providers' views are the same while this is
    daemon: DaemonState = msgspec.field(default_factory=DaemonState)


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


def previous_daemon(daemon: DaemonState) -> str:
    """How the daemon before a new start ended, as DaemonStarted.previous says it."""
    if daemon.started_at is None:
        return ""
    return "crashed" if daemon.stopped_at is None else "stopped"


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
