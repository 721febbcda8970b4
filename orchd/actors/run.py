"""RunActor: one per unfinished run. Decides each task's next step and records it.

Decide, record, act: every decision becomes events handed to the journal; the
side effect (spawn, enqueue, timer) happens in the callback once they are
durable. The actor's state is the fold of its own run's events, rebuilt from
the log when it starts, so a run resumes the same way after a restart.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from orchd import backoff, workspace
from orchd import events as ev
from orchd import state as st
from orchd.actors.context import Actor, Context
from orchd.actors.messages import (
    CancelTasks,
    Enqueue,
    Grant,
    Release,
    RetryTasks,
    RunCrashed,
    RunDone,
    Withdraw,
)
from orchd.actors.session import Session, SessionEnded, SessionEvent
from orchd.agents import adapter_for
from orchd.agents.base import CANCELLED, LOST, PARK, PERMANENT, RETRYABLE, SUCCESS, Outcome
from orchd.errors import OrchError
from orchd.executors.base import Process
from orchd.plan import TaskSpec

log = logging.getLogger(__name__)

WRITE_RETRY = 1.0  # seconds before retrying an append the log refused (disk full)
MAX_LOST = 5  # lost attempts do not spend retries, but a task that keeps losing them fails


@dataclass(frozen=True)
class _Committed:
    records: list[ev.Record] | None
    error: OrchError | None
    events: Sequence[ev.Event]
    then: Callable[[], None] | None
    durable: Callable[[], None] | None


_Step = tuple[
    list[ev.Event], Callable[[], None]
]  # events to record, and what to do once they are durable


@dataclass(frozen=True)
class _RetryDue:
    task_id: str


class RunActor(Actor):
    """Owns one run's tasks: launches granted tasks, retries, cancels, finishes."""

    def __init__(self, ctx: Context, run_id: str) -> None:
        super().__init__()
        self.ctx, self.run_id = ctx, run_id
        self.state = st.State()
        self.sessions: dict[str, Session] = {}  # task id -> the session of its running attempt
        self.closing: set[str] = set()  # tasks whose terminal event is on its way to the log
        self.ending: dict[
            tuple[str, int], Process
        ] = {}  # attempts whose AttemptFinished is on its way
        self.logs: list[
            Path
        ] = []  # logs of attempts about to launch, to create while their launch commits
        self.made: set[Path] = set()  # logs created ahead, for the next ready task's attempt
        self.ready: deque[str] = (
            deque()
        )  # tasks waiting for a slot, in order (the supervisor knows how many)
        self.finishing = False

    @property
    def run(self) -> st.RunState:
        return self.state.runs[self.run_id]

    # ------------------------------------------------------------ lifecycle

    def on_start(self) -> None:
        # its own copy of the run as the journal has folded it (the fold of the log): no second replay
        with self.ctx.journal.lock:
            self.state.runs[self.run_id] = st.copy_run(self.ctx.journal.state.runs[self.run_id])
            self.state.seq = self.ctx.journal.state.seq
        self.ctx.paths.attempt_log(self.run_id, "-", 0).parent.mkdir(parents=True, exist_ok=True)
        self._resume()

    def _resume(self) -> None:
        """Pick up every task where the log left it (a new run: all pending).

        An attempt that was running when orchd died is taken over again: its process if it
        still runs (same pid and start time), else the exit status its keeper left behind;
        only when neither is there is it recorded lost and retried without spending a retry.
        """
        now = time.time()
        ready, adopted = [], 0
        for task in self.run.tasks.values():
            if task.state in st.TERMINAL:
                continue
            attempt = task.current
            if attempt is not None:
                if self._adopt(task, attempt):
                    adopted += 1
                    continue
                self._record(
                    [
                        ev.AttemptFinished(
                            self.run_id,
                            task.spec.id,
                            attempt.n,
                            LOST,
                            reason="orchd restarted while the attempt ran; its outcome is lost",
                        ),
                        ev.TaskRetrying(
                            self.run_id,
                            task.spec.id,
                            due_at=now,
                            delay=0.0,
                            reason="attempt lost in a restart",
                            spends_retry=False,
                        ),
                    ],
                    then=self._enqueue_later(task.spec.id),
                )
            elif task.cancel_requested:
                self._close(task.spec.id, [ev.TaskCancelled(self.run_id, task.spec.id)])
            elif task.state == "retrying" and task.due_at is not None:
                self._schedule_retry(task.spec.id, task.due_at)
            else:
                ready.append(task.spec.id)
        if ready or adopted:
            self._enqueue(ready, occupied=adopted)
        self._maybe_finish()

    def _adopt(self, task: st.TaskState, attempt: st.AttemptState) -> bool:
        """Watch an attempt that outlived the previous orchd again; False when nothing of it is left."""
        tid = task.spec.id
        log_path = Path(attempt.log_path)
        known = (
            None
            if attempt.pid is None
            else Process(
                attempt.pid, attempt.pgid or attempt.pid, attempt.start_ticks, log_path=log_path
            )
        )
        process = self.ctx.executor.find(self.run_id, tid, attempt.n, known, log_path)
        if process is None:
            return False
        adapter = adapter_for(task.spec.agent)
        assert adapter is not None
        spec, prep = self._workspace(task, attempt.n)
        launch = adapter.launch(spec, attempt.n, _resume_id(task))
        started = attempt.started_at or attempt.launched_at

        def watch() -> None:
            session = self.sessions[tid] = Session(
                self.ctx,
                self.actor_ref,
                spec,
                attempt.n,
                launch,
                adapter,
                {},
                log_path,
                self._ended,
                prep,
                adopt=process,
                elapsed=max(0.0, time.time() - started),
            )
            session.start()

        self._record(
            [
                ev.AttemptAdopted(
                    self.run_id,
                    tid,
                    attempt.n,
                    process.pid,
                    process.pgid,
                    process.start_ticks,
                    ended=process.ended,
                )
            ],
            then=watch,
        )
        return True

    def _workspace(self, task: st.TaskState, n: int) -> tuple[TaskSpec, workspace.Prep | None]:
        """The task's spec as its attempt `n` sees it, and how to prepare its worktree (None: no worktree)."""
        spec = task.spec
        ws = workspace.workspace_of(self.ctx.paths.worktrees, self.run_id, spec)
        if ws is None:
            return spec, None
        spec = msgspec.structs.replace(spec, cwd=ws.cwd)
        fresh = n > 1 and _resume_id(task) is None
        return spec, workspace.Prep(ws, self.run.spec.workdir, spec.copy, spec.setup, fresh=fresh)

    # ------------------------------------------------------------ messages

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, _Committed):
            self._committed(message)
        elif isinstance(message, Grant):
            self._granted()
        elif isinstance(message, SessionEvent):
            if (
                self.sessions.get(message.session.task.id) is message.session
            ):  # else it ended already
                message.session.handle(message)
        elif isinstance(message, _RetryDue):
            task = self.run.tasks[message.task_id]
            if task.state == "retrying" and message.task_id not in self.closing:
                self._enqueue([message.task_id])
        elif isinstance(message, CancelTasks):
            self._cancel(message)
        elif isinstance(message, RetryTasks):
            self._retry(message)
        return None

    def on_failure(self, exception_type: Any, exception_value: Any, traceback: Any) -> None:
        log.error(
            "run %s: actor failed (%s); restarting it from the log", self.run_id, exception_value
        )
        self.ctx.supervisor.tell(RunCrashed(self.run_id, self.actor_ref))

    # ------------------------------------------------------------ recording

    def _record(
        self,
        events: Sequence[ev.Event],
        then: Callable[[], None] | None = None,
        durable: Callable[[], None] | None = None,
    ) -> None:
        """Hand `events` to the journal; fold them and run `then` once durable. `durable` runs on
        the journal's thread the moment they are durable, before this run hears of it: it starts
        processes, one hand-off sooner. With nothing else to do (an empty mailbox), a run commits
        its launches itself, when the journal is idle, and starts them on its own thread: one
        hand-off less again."""
        now = durable is not None and self.actor_inbox.empty()
        if now:
            self._create_logs()
        self._append(events, then, durable, now=now)
        self._create_logs()  # while the journal commits: creating a file can cost more than the spawn
        if durable is not None and self.ready:  # and the next launch's, while nothing waits for it
            task = self.run.tasks[self.ready[0]]
            path = self.ctx.paths.attempt_log(self.run_id, task.spec.id, len(task.attempts) + 1)
            if (
                task.state not in st.TERMINAL
                and not task.cancel_requested
                and path not in self.made
            ):
                _create(path)
                self.made.add(path)

    def _create_logs(self) -> None:
        while self.logs:
            _create(self.logs.pop())

    def _note(self, events: list[ev.Event]) -> None:
        """Record what nothing waits for (sessions record `AttemptStarted` through it): it goes to
        the log with the next commit, at most the journal's LAZY seconds later."""
        self._append(events, None, None, lazy=True)

    def _append(
        self,
        events: Sequence[ev.Event],
        then: Callable[[], None] | None,
        durable: Callable[[], None] | None,
        lazy: bool = False,
        now: bool = False,
    ) -> None:
        ref = self.actor_ref

        def done(records: list[ev.Record] | None, error: OrchError | None) -> None:
            try:
                if error is None and durable is not None:
                    durable()
            finally:
                ref.tell(_Committed(records, error, events, then, durable))

        self.ctx.journal.append(events, done, lazy, now)

    def _committed(self, message: _Committed) -> None:
        if (
            message.error is not None
        ):  # the log refused the write: try again, act only once it is durable
            log.warning("run %s: %s; retrying in %gs", self.run_id, message.error, WRITE_RETRY)
            self.ctx.reactor.call_later(
                WRITE_RETRY, lambda: self._append(message.events, message.then, message.durable)
            )
            return
        st.replay(message.records or [], self.state)
        if self.ending:  # the executor may now forget what it kept of these attempts' ends
            for record in message.records or ():
                e = record.event
                if type(e) is ev.AttemptFinished and (
                    p := self.ending.pop((e.task_id, e.attempt), None)
                ):
                    self.ctx.executor.forget(p)
        if message.then is not None:
            message.then()
        self._maybe_finish()

    def _close(self, task_id: str, events: list[ev.Event]) -> None:
        self._record(*self._closing(task_id, events))

    def _closing(self, task_id: str, events: list[ev.Event]) -> _Step:
        """`events` end the task: no other step for it until they are durable."""
        self.closing.add(task_id)
        return events, lambda: self.closing.discard(task_id)

    def _maybe_finish(self) -> None:
        if self.finishing or self.closing or self.run.state != "running":
            return
        outcome = st.run_outcome(self.run)
        if outcome is not None:
            self.finishing = True
            self._record([ev.RunFinished(self.run_id, outcome)], then=self._finished)

    def _finished(self) -> None:
        self.finishing = False
        self.ctx.supervisor.tell(RunDone(self.run_id))

    # ------------------------------------------------------------ scheduling

    def _enqueue(self, task_ids: list[str], occupied: int = 0) -> None:
        self.ready.extend(task_ids)
        self.ctx.supervisor.tell(
            Enqueue(self.run_id, self.run.spec.concurrency, len(task_ids), self.actor_ref, occupied)
        )

    def _enqueue_later(self, task_id: str) -> Callable[[], None]:
        return lambda: self._enqueue([task_id])

    def _schedule_retry(self, task_id: str, due_at: float) -> None:
        ref = self.actor_ref
        self.ctx.reactor.call_at_wall(due_at, lambda: ref.tell(_RetryDue(task_id)))

    def _release(self) -> None:
        self.ctx.supervisor.tell(Release(self.run_id))

    # ------------------------------------------------------------ attempts

    def _granted(self) -> None:
        """A slot from the supervisor: start the next ready task in it."""
        step, extra = self._next_launch(granted=True)
        if step is None:
            self._withdraw(extra)
            self._release()
        else:
            launching, start = step
            self._record(launching, durable=start)
            self._withdraw(extra)

    def _next_launch(self, granted: bool) -> tuple[_Step | None, int]:
        """The next ready task's AttemptLaunching and the start of its session (to run on the
        journal's thread once that is durable), None when no task is ready; and how many tasks
        were taken from `ready` beyond the one a grant paid for (to withdraw from the supervisor's
        count, after the launch: the supervisor's thread wakes for it)."""
        step, taken = None, 0
        while step is None and self.ready:
            taken += 1
            step = self._launching(self.ready.popleft())
        return step, max(0, taken - granted)

    def _withdraw(self, count: int) -> None:
        if count:
            self.ctx.supervisor.tell(Withdraw(self.run_id, count))

    def _launching(self, task_id: str) -> _Step | None:
        task = self.run.tasks[task_id]
        if (
            task.state in st.TERMINAL
            or task.cancel_requested
            or task_id in self.closing
            or task.current
            or task_id in self.sessions
        ):
            return None
        adapter = adapter_for(task.spec.agent)
        assert adapter is not None, "plans are checked for known agents at submit"
        n = len(task.attempts) + 1
        spec, prep = self._workspace(task, n)
        launch = adapter.launch(spec, n, _resume_id(task))
        log_path = self.ctx.paths.attempt_log(self.run_id, task_id, n)
        env = {
            **self.ctx.base_env,
            **task.spec.env,
            **launch.env,
            "ORCH_RUN_ID": self.run_id,
            "ORCH_TASK_ID": task_id,
            "ORCH_ATTEMPT": str(n),
        }
        session = self.sessions[task_id] = Session(
            self.ctx,
            self.actor_ref,
            spec,
            n,
            launch,
            adapter,
            env,
            log_path,
            self._ended,
            prep,
            record=self._note,
            run_id=self.run_id,
        )
        if log_path in self.made:
            self.made.discard(log_path)
        else:
            self.logs.append(log_path)
        return [
            ev.AttemptLaunching(self.run_id, task_id, n, launch.argv, launch.cwd, str(log_path))
        ], session.start

    def _ended(self, message: SessionEnded) -> None:
        """An attempt ended: record how, and start the next ready task in its slot unless another
        run waits for one (then the slot goes back to the supervisor). Both go in one commit."""
        self.sessions.pop(message.task_id, None)
        if message.process is not None:
            self.ending[(message.task_id, message.attempt)] = message.process
        events, then = self._outcome(message)
        step, extra = (
            self._next_launch(granted=False)
            if self.ready and self.ctx.waiting <= {self.run_id}
            else (None, 0)
        )
        if step is None:
            self._withdraw(extra)
            self._release()
            self._record(events, then)
            return
        launching, start = step
        self._record([*events, *launching], then, durable=start)
        self._withdraw(extra)

    def _outcome(self, message: SessionEnded) -> _Step:
        """The events that record how an attempt ended, and what to do once they are durable."""
        task = self.run.tasks[message.task_id]
        o = message.outcome
        if task.cancel_requested and o.outcome != SUCCESS:
            o = _cancelled()
        x = message.exit
        finished = ev.AttemptFinished(
            self.run_id,
            message.task_id,
            message.attempt,
            o.outcome,
            exit_code=x.exit_code if x else None,
            signal=x.signal if x else None,
            reason=o.reason,
            duration=round(message.duration, 6),
            report=o.report,
        )
        tid = message.task_id
        if o.outcome == SUCCESS:
            return self._closing(tid, [finished, ev.TaskCompleted(self.run_id, tid)])
        if o.outcome == CANCELLED:
            return self._closing(tid, [finished, ev.TaskCancelled(self.run_id, tid)])
        if o.outcome == PERMANENT:
            return self._closing(tid, [finished, ev.TaskFailed(self.run_id, tid, reason=o.reason)])
        if (
            o.outcome == PARK
            or (o.outcome == LOST and _lost(task) < MAX_LOST)
            or (o.outcome in RETRYABLE and task.retries_spent < task.spec.max_retries)
        ):
            return self._retrying(task, finished, o.park_until)
        attempts = len(task.attempts)
        return self._closing(
            tid,
            [
                finished,
                ev.TaskFailed(
                    self.run_id,
                    tid,
                    reason=f"{o.reason} (gave up after {attempts} attempt{'s' * (attempts != 1)})",
                ),
            ],
        )

    def _retrying(
        self, task: st.TaskState, finished: ev.AttemptFinished, park_until: float | None
    ) -> _Step:
        now = time.time()
        spends = finished.outcome in RETRYABLE
        if finished.outcome == PARK and park_until is not None:
            delay = max(0.0, park_until - now)
        elif finished.outcome == LOST:
            delay = 0.0
        else:
            delay = backoff.delay(task.spec.backoff, task.retries_spent + 1)
        due = now + delay
        tid = task.spec.id
        return (
            [
                finished,
                ev.TaskRetrying(
                    self.run_id,
                    tid,
                    due_at=due,
                    delay=round(delay, 6),
                    reason=finished.reason,
                    spends_retry=spends,
                ),
            ],
            lambda: self._schedule_retry(tid, due),
        )

    # ------------------------------------------------------------ user requests

    def _cancel(self, message: CancelTasks) -> None:
        ids = message.task_ids or list(self.run.tasks)
        live = [
            t for t in ids if self.run.tasks[t].state not in st.TERMINAL and t not in self.closing
        ]

        def act() -> None:
            gone, queued = set(live), len(self.ready)
            self.ready = deque(t for t in self.ready if t not in gone)
            if len(self.ready) < queued:
                self.ctx.supervisor.tell(Withdraw(self.run_id, queued - len(self.ready)))
            for tid in live:
                task = self.run.tasks[tid]
                if tid in self.sessions:
                    self.sessions[tid].cancel()
                elif (
                    task.current is None
                    and tid not in self.closing
                    and task.state not in st.TERMINAL
                ):
                    self._close(tid, [ev.TaskCancelled(self.run_id, tid)])
            message.reply.set(len(live))

        if not live:
            message.reply.set(0)
            return
        self._record([ev.CancelRequested(self.run_id, live)], then=act)

    def _retry(self, message: RetryTasks) -> None:
        ids = message.task_ids or list(self.run.tasks)
        again = [
            t
            for t in ids
            if self.run.tasks[t].state in ("failed", "cancelled") and t not in self.closing
        ]
        if not again:
            message.reply.set(0)
            return

        def act() -> None:
            self._enqueue(again)
            message.reply.set(len(again))

        self._record([ev.RetryRequested(self.run_id, again)], then=act)

    def kill_all(self) -> None:
        """On daemon shutdown: kill every running attempt's process group (recorded as lost on restart)."""
        groups = {
            (a.pid or 0, a.pgid)
            for t in self.run.tasks.values()
            if (a := t.current) and a.pgid is not None
        }
        groups |= {
            (p.pid, p.pgid) for s in self.sessions.values() if (p := s.process)
        }  # pids not yet folded
        for pid, pgid in groups:
            self.ctx.executor.signal(Process(pid, pgid, 0), signal.SIGKILL)


def _create(log_path: Path) -> None:
    """The attempt's (empty) log, made ahead of its spawn; if this fails, the spawn says why."""
    try:
        os.close(os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600))
    except OSError:
        pass


def _resume_id(task: st.TaskState) -> str | None:
    """The agent session to continue, when the plan asks for it: the latest one an attempt reported."""
    if not task.spec.resume:
        return None
    return next((a.report.session_id for a in reversed(task.attempts) if a.report.session_id), None)


def _lost(task: st.TaskState) -> int:
    return sum(1 for a in task.attempts if a.outcome == LOST)


def _cancelled() -> Outcome:
    return Outcome(CANCELLED, reason="cancelled by the user")
