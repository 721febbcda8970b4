"""What each request does: the protocol's requests mapped onto the fold, the actors and git.

The transport (server.py) decodes a request and hands it here on one of its workers; every
failure is an OrchError, which the transport turns into an Error reply.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, cast

import msgspec
import pykka

from orchd import __version__, providers, review, store, views, workspace
from orchd import events as ev
from orchd import protocol as p
from orchd import state as st
from orchd.actors import messages as msg
from orchd.actors.context import Context
from orchd.agents import ADAPTERS
from orchd.errors import ErrorCode, OrchError, PlanError
from orchd.plan import load_plan

REPLY_TIMEOUT = 60.0
RESERVED_WORKERS = 4  # workers a long-poll never takes
SEQ_MAX = (1 << 63) - 1  # SQLite's largest integer: a larger `after` or `at` means the same as this


def _seq(n: int) -> int:
    """A sequence number from a client, in SQLite's range (msgspec reads ints from -2**63-1 to 2**64-1)."""
    return max(0, min(n, SEQ_MAX))


def _encoded(encoded: list[msgspec.Raw]) -> list[views.RunView]:
    """Run views encoded ahead (`RunViews`), in the place of the RunViews they encode: msgspec
    writes a Raw as it is, so the reply is the same as if it held the views."""
    return cast("list[views.RunView]", encoded)


def stopped(left: int, ended: int) -> str:
    """What a stop did with the running sessions, in words."""
    said = []
    if ended:
        said.append(
            f"{_sessions(ended)} ended: their tasks run again at the next start, no retry spent"
        )
    if left:
        said.append(
            f"{_sessions(left)} {'keeps' if left == 1 else 'keep'} running under the keeper, and "
            "the next start takes them over; `orchctl daemon stop --end-sessions` ends them"
        )
    return "; ".join(said) or "no session was running"


def _sessions(n: int) -> str:
    return f"{n} session{'s' * (n != 1)}"


class Dispatcher:
    """Carries out requests for one daemon, from any of the transport's workers."""

    def __init__(
        self,
        ctx: Context,
        *,
        settle: Callable[[bool], tuple[int, int]] | None = None,
        workers: int,
        max_message: int,
        max_runs: int,
        dashboard_port: int = 0,
    ) -> None:
        self.ctx, self.max_message, self.max_runs = ctx, max_message, max_runs
        self.settle = settle  # the daemon's: brings it to rest before it stops (Daemon.settle)
        self.dashboard_port = dashboard_port
        self._dashboard: Any = None  # the DashboardServer, once asked for (dashboard/server.py)
        self._dashboard_lock = threading.Lock()
        # long-polls may hold all workers but a few, so that status and submit always get through
        self._waiters = threading.BoundedSemaphore(max(1, workers - RESERVED_WORKERS))
        self._submitting = (
            threading.Lock()
        )  # counts runs and submits as one step: no race past max_runs
        self.started_at = time.time()
        self._views = RunViews()
        self.shutdown_requested = threading.Event()

    def held(self) -> str | None:
        """Why no session starts now (the log cannot be written), or None."""
        return self.ctx.held()

    def dispatch(self, request: p.Request, conn: sqlite3.Connection) -> p.Response:
        """The reply to one decoded request (an OrchError for what it cannot do)."""
        journal = self.ctx.journal
        match request:
            case p.Ping():
                return p.Pong(
                    pid=os.getpid(),
                    version=__version__,
                    started_at=self.started_at,
                    seq=journal.state.seq,
                    held=self.held(),
                )
            case p.Submit():
                return self._submit(request)
            case p.Status(run=None):
                with journal.lock:
                    return p.StatusReply(
                        seq=journal.state.seq,
                        runs=_encoded(
                            [self._views.of(r, journal.state) for r in journal.state.runs.values()]
                        ),
                        held=self.held(),
                    )
            case p.Status(run=str(name)):
                with journal.lock:
                    run = self._run(name)
                    return p.StatusReply(
                        seq=journal.state.seq,
                        runs=_encoded([self._views.of(run, journal.state)]),
                        held=self.held(),
                    )
            case p.Runs():
                with journal.lock:
                    return p.RunsReply(
                        seq=journal.state.seq,
                        runs=[
                            views.run_summary(r, providers=journal.state.providers)
                            for r in journal.state.runs.values()
                        ],
                    )
            case p.TaskInfo(run=name, task=task_id):
                with journal.lock:
                    run = self._run(name)
                    task = self._task(run, task_id)
                    return p.TaskReply(
                        run_id=run.run_id,
                        task=views.task_view(task, run, journal.state.providers),
                        attempts=list(task.attempts),
                    )
            case p.Cancel() | p.Retry():
                return self._change(request)
            case p.Events():
                return self._events(request, conn)
            case p.Replay(at=at):
                state = store.fold(conn, upto=None if at is None else _seq(at))
                return p.StatusReply(
                    seq=state.seq,
                    runs=[views.run_view(r, state.providers) for r in state.runs.values()],
                )
            case p.Audit():
                result = store.audit(conn)
                return p.AuditReply(
                    events=result.events,
                    head=result.head,
                    first_bad=result.first_bad,
                    problem=result.problem,
                )
            case p.Diff(run=name, task=task_id):
                return self.diff(name, task_id)
            case p.Merge(run=name, into=into, verify=verify):
                with journal.lock:
                    run = self._run(name)
                return review.merge(self.ctx, run, into, verify)
            case p.Conflicts(run=name, into=into):
                with journal.lock:
                    run = self._run(name)
                return review.conflicts(self.ctx, run, into)
            case p.Clean():
                return self._clean(request)
            case p.Dashboard():
                return p.DashboardReply(url=self.dashboard().url)
            case p.Export(run=name):
                with journal.lock:
                    run = self._run(name)
                    # encoded under the lock: a record holds the fold's own attempts
                    record = msgspec.Raw(p.encode(views.run_record(run, journal.state.providers)))
                    return p.ExportReply(seq=journal.state.seq, run=record)  # type: ignore[arg-type]
            case p.Shutdown(end_sessions=end):
                left, ended = self.settle(end) if self.settle is not None else (0, 0)
                self.shutdown_requested.set()
                return p.Done(count=ended if end else left, message=stopped(left, ended))
        raise OrchError(f"unknown request {type(request).__name__}", ErrorCode.BAD_REQUEST)

    def diff(self, run_name: str, task_id: str) -> p.DiffReply:
        """A task's change, as `orchctl diff` shows it (git runs on the caller's thread)."""
        with self.ctx.journal.lock:
            run = self._run(run_name)
            task = self._task(run, task_id)
        return review.diff(self.ctx, run, task, self.max_message // 2)

    def dashboard(self) -> Any:
        """The dashboard's server, started on the first call (the web stack is imported then)."""
        with self._dashboard_lock:
            if self._dashboard is None:
                from orchd.dashboard.server import DashboardServer

                self._dashboard = DashboardServer(
                    self.ctx.journal, self.ctx.paths, self.diff, self.dashboard_port
                ).start()
            return self._dashboard

    def close(self) -> None:
        """Stop what the requests started (the dashboard)."""
        with self._dashboard_lock:
            if self._dashboard is not None:
                self._dashboard.stop()

    def _run(self, name: str) -> st.RunState:
        """A run by id, unique id prefix, or `last`. Call with the journal lock held."""
        runs = self.ctx.journal.state.runs
        if not name:
            raise OrchError(
                "name a run (an id, a unique prefix of one, or `last`)", ErrorCode.NOT_FOUND
            )
        if name in runs:
            return runs[name]
        if name in ("last", "@") and runs:
            return max(runs.values(), key=lambda r: r.submitted_at)
        matches = [r for r in runs if r.startswith(name)]
        if len(matches) == 1:
            return runs[matches[0]]
        if matches:
            raise OrchError(
                f"run {name!r} is ambiguous: {', '.join(sorted(matches)[:5])}", ErrorCode.NOT_FOUND
            )
        raise OrchError(f"no run {name!r} (see `orchctl runs`)", ErrorCode.NOT_FOUND)

    @staticmethod
    def _task(run: st.RunState, task_id: str) -> st.TaskState:
        task = run.tasks.get(task_id)
        if task is None:
            raise OrchError(f"run {run.run_id} has no task {task_id!r}", ErrorCode.NOT_FOUND)
        return task

    def _clean(self, request: p.Clean) -> p.Done:
        with self.ctx.journal.lock:
            run = self._run(request.run)
        spaces = review.workspaces_to_clean(self.ctx, run)
        # recorded first: a crash between the two leaves a log that says "removed" and a few
        # directories that a second `clean` removes, never a log that still shows gone branches
        self._record([ev.WorkspacesRemoved(run.run_id, branches=request.branches)])
        removed = review.remove(spaces, request.branches)
        what = "worktrees and branches" if request.branches else "worktrees"
        return p.Done(
            count=removed,
            message=f"removed the {what} of {removed} task{'s' * (removed != 1)} of {run.run_id}",
        )

    def _record(self, events: list[ev.Event]) -> None:
        """Append events and wait until they are durable."""
        future: pykka.ThreadingFuture[tuple[object, OrchError | None]] = pykka.ThreadingFuture()
        self.ctx.journal.append(events, lambda records, error: future.set((records, error)))
        try:
            _, error = future.get(timeout=REPLY_TIMEOUT)
        except pykka.Timeout:
            raise OrchError(
                "orchd could not record the change in time", ErrorCode.INTERNAL
            ) from None
        if error is not None:
            raise error

    def _ask(self, message_for: Callable[[pykka.Future[Any]], object]) -> Any:
        """Tell the supervisor the message `message_for` makes and wait for its reply."""
        future: pykka.ThreadingFuture[Any] = pykka.ThreadingFuture()
        self.ctx.supervisor.tell(message_for(future))
        try:
            return future.get(timeout=REPLY_TIMEOUT)
        except pykka.Timeout:
            raise OrchError(
                "orchd did not complete the request in time", ErrorCode.INTERNAL
            ) from None

    def _submit(self, request: p.Submit) -> p.Submitted:
        spec = load_plan(
            request.plan, source=request.source, base_dir=request.base_dir, fmt=request.fmt
        )
        for i, task in enumerate(spec.tasks):
            if task.agent not in ADAPTERS:
                raise PlanError(
                    f"{request.source}: tasks[{i}] ({task.id}): agent {task.agent!r} is not "
                    f"supported by this orchd yet (available: {', '.join(sorted(ADAPTERS))})"
                )
        spec, warnings = workspace.check_repo(spec, request.source)
        spec = providers.with_providers(spec, self.ctx.base_env)
        with self._submitting:
            self._check_runs_kept()
            run_id = self._ask(lambda f: msg.Submit(spec, request.source, f))
        return p.Submitted(run_id=str(run_id), tasks=len(spec.tasks), warnings=warnings)

    def _check_runs_kept(self) -> None:
        """Refuse a new run when the log already holds `max_runs` (there is no pruning of old runs)."""
        with self.ctx.journal.lock:
            kept = len(self.ctx.journal.state.runs)
        if self.max_runs and kept >= self.max_runs:
            paths = self.ctx.paths
            raise OrchError(
                f"orchd keeps at most {self.max_runs} runs and has {kept}: raise max_runs in "
                f"{paths.config_file}, or start a new log (stop orchd, move {paths.db} aside)",
                ErrorCode.LIMIT,
            )

    def _change(self, request: p.Cancel | p.Retry) -> p.Done:
        with self.ctx.journal.lock:
            run = self._run(request.run)
            if request.task is not None:
                self._task(run, request.task)
        ids = [request.task] if request.task is not None else []
        if isinstance(request, p.Cancel):
            n = self._ask(lambda f: msg.CancelTasks(run.run_id, ids, f))
            return p.Done(
                count=int(n), message=f"cancelling {n} task{'s' * (n != 1)} of {run.run_id}"
            )
        n = self._ask(lambda f: msg.RetryTasks(run.run_id, ids, f))
        return p.Done(count=int(n), message=f"retrying {n} task{'s' * (n != 1)} of {run.run_id}")

    def _events(self, request: p.Events, conn: sqlite3.Connection) -> p.EventsReply:
        run_id = None
        if request.run is not None:
            with self.ctx.journal.lock:
                run_id = self._run(request.run).run_id
        limit = max(1, min(request.limit, 10_000))
        deadline = time.monotonic() + max(0.0, min(request.wait, p.MAX_WAIT))
        after = _seq(request.after)
        waiting = request.wait > 0 and self._waiters.acquire(blocking=False)  # else: answer at once
        try:
            while True:
                seq = self.ctx.journal.state.seq
                rows = store.rows(
                    conn,
                    after=after,
                    run_id=run_id,
                    task_id=request.task,
                    kinds=request.kinds,
                    limit=limit,
                )
                remaining = deadline - time.monotonic()
                held = self.held()
                if rows or remaining <= 0 or not waiting or (held and after >= seq):
                    return p.EventsReply(
                        seq=seq, events=rows, busy=request.wait > 0 and not waiting, held=held
                    )
                # nothing matched up to `seq`: skip past it, wait for the next commit
                after = max(after, seq)
                self.ctx.journal.wait_for(seq, remaining, request.kinds)
        finally:
            if waiting:
                self._waiters.release()


class RunViews:
    """Each run's view, encoded, for as long as the run stays the same (its last event's seq).

    A finished run of 10,000 tasks takes 36 ms to view and 4 ms to encode; `status` is what
    scripts poll. The least recently asked-for views go first past `budget` bytes.
    """

    def __init__(self, budget: int = 64 << 20) -> None:
        self.budget = budget
        self._cache: OrderedDict[str, tuple[tuple[int, int], msgspec.Raw]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def of(self, run: st.RunState, state: st.State) -> msgspec.Raw:
        """The encoded RunView of `run` (call with the journal's lock held, so that it holds still)."""
        key = (run.seq, state.providers_seq)
        with self._lock:
            hit = self._cache.get(run.run_id)
            if hit is not None and hit[0] == key:
                self._cache.move_to_end(run.run_id)
                return hit[1]
        raw = msgspec.Raw(p.encode(views.run_view(run, state.providers)))
        with self._lock:
            old = self._cache.pop(run.run_id, None)
            self._bytes -= len(old[1]) if old else 0
            self._cache[run.run_id] = (key, raw)
            self._bytes += len(raw)
            while self._bytes > self.budget and len(self._cache) > 1:
                _, (_, dropped) = self._cache.popitem(last=False)
                self._bytes -= len(dropped)
        return raw
