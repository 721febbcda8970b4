"""RunActor: one per unfinished run. Launches its tasks, records how attempts end, finishes.

Decide, record, act: what happens to a task after an attempt is decided by
`orchd.decide` (pure); the actor records those events through the journal and
acts once they are durable: a `TaskRetrying` arms a timer at its due time, an
`AttemptFinished` lets its session go, a launch starts its session's process. The
actor's state is the fold of its own run's events, taken over from the journal
when it starts, so a run resumes the same way after a restart, and a run actor
that fails is replaced by one that takes over its sessions (they outlive it).
"""

from __future__ import annotations

import logging
import random
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import pykka

from orchd import decide, views
from orchd import events as ev
from orchd import state as st
from orchd.actors.context import Actor, Context
from orchd.actors.launch import Launcher
from orchd.actors.messages import (
    CancelTasks,
    Committed,
    FailHeld,
    Grant,
    Resume,
    RetryTasks,
    RunCrashed,
    RunDone,
    Settle,
)
from orchd.actors.pool import tell, teller
from orchd.actors.ready import Ready, provider_of
from orchd.actors.requests import Requests
from orchd.actors.session import Reattach, Recorded, SessionEnded, Start
from orchd.fold import replay
from orchd.streams import tells_answers

log = logging.getLogger(__name__)

HELD_AGAIN = 1.0  # seconds before a run holding a slot on a full disk looks again
TERMINAL_EVENTS = (ev.TaskCompleted, ev.TaskFailed, ev.TaskCancelled)
SPENDING = (ev.AttemptFinished, ev.AttemptSignaled)  # events that change what the run spent

Launching = tuple[list[ev.Event], pykka.ActorRef[Any]]  # a launch's events, and its session


class _Resumed:
    """Every append made before this actor started is durable: take the run over now."""


class _RetryDue:
    __slots__ = ("task_id",)

    def __init__(self, task_id: str) -> None:
        self.task_id = task_id


class RunActor(Actor):
    """Owns one run's tasks: launches granted tasks, records their ends, cancels, finishes."""

    def __init__(self, ctx: Context, run_id: str) -> None:
        super().__init__()
        self.ctx, self.run_id = ctx, run_id
        self.state = st.State()
        self.resumed = False
        self.deferred: list[Any] = []  # requests that came before the actor took the run over
        self.launcher = Launcher(ctx, run_id)
        self.ready = Ready(ctx, run_id)
        self.sessions: dict[
            str, pykka.ActorRef[Any]
        ] = {}  # task id -> its running attempt's session
        self.ending: dict[tuple[str, int], float] = {}  # attempts whose AttemptFinished is on its
        # way, with what they spent that the fold does not show yet
        self.closing: set[str] = set()  # tasks whose terminal event is on its way to the log
        self.finishing = False
        self.requests = Requests(self)  # cancels, retries, and Settle as orchd stops
        self.rand = random.Random()

    @property
    def run(self) -> st.RunState:
        return self.state.runs[self.run_id]

    # ------------------------------------------------------------ messages

    def on_receive(self, message: Any) -> Any:
        kind = type(message)
        if kind is Committed:
            self._committed(message)
        elif not self.resumed:
            if kind is Resume:  # once every append made before this actor is durable
                self.ctx.journal.append([], teller(self.actor_ref, _Resumed()))
            elif kind is _Resumed:
                self._resume()
                for deferred in self.deferred:
                    self.on_receive(deferred)
                self.deferred.clear()
            elif kind in (CancelTasks, RetryTasks, Settle):  # for a run this actor takes over
                self.deferred.append(message)
        elif kind is Grant:
            self._granted(message.provider)
        elif kind is SessionEnded:
            self._ended(message)
        elif kind is _RetryDue:
            task = self.run.tasks[message.task_id]
            if task.state == "retrying" and message.task_id not in self.closing:
                self._enqueue([message.task_id])
        elif kind is CancelTasks:
            self.requests.cancel(message)
        elif kind is RetryTasks:
            self.requests.retry(message)
        elif kind is FailHeld:
            self._fail_waiting(lambda t: provider_of(t) == message.provider, message.reason)
        elif kind is Settle:
            self.requests.settle(message)
        if self.requests.settling is not None and self.resumed:
            self.requests.reply_if_settled()
        return None

    def on_failure(self, exception_type: Any, exception_value: Any, traceback: Any) -> None:
        log.error(
            "run %s: actor failed (%s); restarting it from the log", self.run_id, exception_value
        )
        self.ctx.supervisor.tell(RunCrashed(self.run_id, self.actor_ref))

    def on_stop(self) -> None:
        if self.requests.settling is not None:  # the run finished meanwhile: nothing of it runs
            self.requests.reply_settled()

    # ------------------------------------------------------------ taking the run over

    def _resume(self) -> None:
        """Pick up every task where the log left it (a new run: all pending).

        An attempt that was running is taken over: its session, if it still lives (this actor
        replaces one that failed); else its process, if it still runs (same pid and start time), or
        the exit status it left behind; only when nothing of it is left is it recorded lost.
        """
        with self.ctx.journal.lock:  # the journal's fold of the run: its own copy, no second replay
            self.state.runs[self.run_id] = st.copy_run(self.ctx.journal.state.runs[self.run_id])
            self.state.seq = self.ctx.journal.state.seq
        self.resumed = True
        self.ctx.paths.attempt_log(self.run_id, "-", 0).parent.mkdir(parents=True, exist_ok=True)
        self._let_recorded_go()
        now = time.time()
        ready: list[str] = []
        occupied: Counter[str] = Counter()
        for task in self.run.tasks.values():
            if task.state in st.TERMINAL:
                continue
            tid, attempt = task.spec.id, task.current
            if attempt is not None:
                session = self.ctx.sessions.get((self.run_id, tid, attempt.n))
                if session is not None and tell(session, Reattach()):
                    self.sessions[tid] = session
                    occupied[provider_of(task)] += 1
                elif adopted := self.launcher.adopt(task, attempt):
                    self.sessions[tid] = adopted[0]
                    occupied[provider_of(task)] += 1
                    self._record([adopted[1]])
                else:
                    self._record(decide.lost_in_restart(self.run_id, task, attempt.n, now))
            elif task.cancel_requested:
                self._close(tid, [ev.TaskCancelled(self.run_id, tid)])
            elif task.state == "retrying" and task.due_at is not None:
                self._schedule_retry(tid, task.due_at)
            else:
                ready.append(tid)
        self._enqueue(ready, occupied)
        self._check_budget()
        self._maybe_finish()

    def _let_recorded_go(self) -> None:
        """Sessions whose end was recorded before the run's previous actor failed may stop."""
        for (run_id, tid, n), session in list(self.ctx.sessions.items()):
            if run_id != self.run_id:
                continue
            attempt = self.run.tasks[tid].current
            if attempt is None or attempt.n != n:
                tell(session, Recorded())

    # ------------------------------------------------------------ recording

    def _record(
        self,
        events: Sequence[ev.Event],
        then: Callable[[], None] | None = None,
        start: pykka.ActorRef[Any] | None = None,
    ) -> None:
        """Hand `events` to the journal; fold them and run `then` once durable. `start`: a session
        to tell Start the moment they are durable, before this run hears of it. With nothing else
        to do (an empty mailbox), a run commits its launches itself when the journal is idle: one
        hand-off less between an attempt's exit and the next spawn."""
        durable = None if start is None else teller(start, Start())
        now = start is not None and self.actor_inbox.empty()
        if now:
            self.launcher.create_logs()
        self.ctx.record(self.run_id, events, then=then, origin=self, durable=durable, now=now)
        self.launcher.create_logs()  # while the journal commits: a file can cost more than a spawn

    def _committed(self, message: Committed) -> None:
        if not self.resumed:  # made before this actor took over: in the fold it takes over
            return
        if message.error is not None:  # the journal keeps what it cannot write yet: not ours
            log.error("run %s: %s", self.run_id, message.error)
            return
        records = [r for r in message.records or () if r.seq > self.state.seq]
        replay(records, self.state)
        for record in records:
            self._act(record.event)
        if message.then is not None and message.origin is self:
            message.then()
        if any(isinstance(r.event, SPENDING) for r in records):
            self._check_budget()
        self._maybe_finish()

    def _act(self, event: ev.Event | None) -> None:
        """What follows from an event of the run once it is durable."""
        if type(event) is ev.TaskRetrying:
            self._schedule_retry(event.task_id, event.due_at)
        elif type(event) is ev.AttemptFinished:
            self.ending.pop((event.task_id, event.attempt), None)
            self.requests.interrupted += event.outcome == decide.INTERRUPTED
            session = self.ctx.sessions.get((self.run_id, event.task_id, event.attempt))
            if session is not None:
                tell(session, Recorded())
        elif isinstance(event, TERMINAL_EVENTS):
            self.closing.discard(event.task_id)

    def _close(self, task_id: str, events: list[ev.Event]) -> None:
        self.closing.add(task_id)
        self._record(events)

    def _maybe_finish(self) -> None:
        if self.finishing or self.closing or self.ending or self.run.state != "running":
            return
        outcome = st.run_outcome(self.run)
        if outcome is not None:
            self.finishing = True
            self._record([ev.RunFinished(self.run_id, outcome)], then=self._finished)

    def _finished(self) -> None:
        self.finishing = False
        self.ctx.supervisor.tell(RunDone(self.run_id))

    # ------------------------------------------------------------ budgets

    def _check_budget(self) -> None:
        """Once the run has spent its budget, no session starts: the tasks left fail."""
        budget = self.run.spec.budget_usd
        if budget is None:  # the sum is over every task: not at each event of a run without one
            return
        reason = decide.over_budget(budget, views.run_cost(self.run))
        if reason is not None:
            self._fail_waiting(lambda task: True, reason)

    def _fail_waiting(self, which: Callable[[st.TaskState], bool], reason: str) -> None:
        """Fail the tasks that `which` picks and that no attempt runs for (pending, retrying)."""
        failing = {
            t.spec.id
            for t in self.run.tasks.values()
            if t.state not in st.TERMINAL
            and t.current is None
            and t.spec.id not in self.sessions
            and t.spec.id not in self.closing
            and which(t)
        }
        self.ready.remove(failing)
        for tid in sorted(failing):
            self._close(tid, [ev.TaskFailed(self.run_id, tid, reason=reason)])

    def _unstartable(self, task: st.TaskState) -> str | None:
        """Why a session of `task` may not start (its own budget, or the run's), else None."""
        if task.spec.budget_usd is not None:
            ending = sum(cost for (tid, _), cost in self.ending.items() if tid == task.spec.id)
            spent = (views.task_cost(task) or 0.0) + ending
            if (reason := decide.over_budget(task.spec.budget_usd, spent)) is not None:
                return reason
        if self.run.spec.budget_usd is None:  # the run's sum is over every task: only when needed
            return None
        run_spent = (views.run_cost(self.run) or 0.0) + sum(self.ending.values())
        return decide.over_budget(self.run.spec.budget_usd, run_spent)

    # ------------------------------------------------------------ scheduling

    def _enqueue(self, task_ids: Iterable[str], occupied: Counter[str] | None = None) -> None:
        tasks = [(t, provider_of(self.run.tasks[t])) for t in task_ids]
        unclocked = {p for t, p in tasks if p and not tells_answers(self.run.tasks[t].spec.agent)}
        self.ready.add(tasks, self.run.spec.concurrency, self.actor_ref, occupied, unclocked)

    def _schedule_retry(self, task_id: str, due_at: float) -> None:
        ctx, run_id = self.ctx, self.run_id

        def due() -> None:
            ctx.tell_run(run_id, _RetryDue(task_id))

        ctx.reactor.call_at_wall(due_at, due)

    # ------------------------------------------------------------ attempts

    def _granted(self, provider: str) -> None:
        """A slot from the supervisor: start the next ready task of `provider` in it (unless the
        disk is full: then the run keeps the slot, and looks again a moment later)."""
        if self.ready.has(provider) and self.ctx.held():
            again = teller(self.actor_ref, Grant(provider))
            self.ctx.reactor.call_later(HELD_AGAIN, again)
            return
        step, extra = self._next_launch(provider, granted=True)
        if step is None:
            self.ready.withdraw(provider, extra)
            self.ready.release(provider)
        else:
            self._record(step[0], start=step[1])
            self.ready.withdraw(provider, extra)
            self._log_ahead(provider)

    def _next_launch(self, provider: str, granted: bool) -> tuple[Launching | None, int]:
        """The next ready task's AttemptLaunching and its new session (to start once that is
        durable), None when no task of `provider` is ready; and how many tasks were taken from the
        queue beyond the one a grant paid for (to withdraw from the supervisor's count, after the
        launch)."""
        step, taken = None, 0
        while step is None and (task_id := self.ready.pop(provider)) is not None:
            taken += 1
            step = self._launching(task_id)
        return step, max(0, taken - granted)

    def _launching(self, task_id: str) -> Launching | None:
        task = self.run.tasks[task_id]
        if (
            self.ctx.stopping  # orchd stops: the next one starts it
            or task.state in st.TERMINAL
            or task.cancel_requested
            or task_id in self.closing
            or task.current
            or task_id in self.sessions
        ):
            return None
        if (why := self._unstartable(task)) is not None:
            self._close(task_id, [ev.TaskFailed(self.run_id, task_id, reason=why)])
            return None
        ref, launching = self.launcher.launch(task, len(task.attempts) + 1, views.task_cost(task))
        self.sessions[task_id] = ref
        return [launching], ref

    def _log_ahead(self, provider: str) -> None:
        """The next launch's log, while nothing waits for it."""
        if (task_id := self.ready.first(provider)) is not None:
            self.launcher.create_ahead(self.run.tasks[task_id])

    def _ended(self, message: SessionEnded) -> None:
        """An attempt ended: record how (decide.py says), and start the next ready task of its
        provider in its slot, unless another run waits for one or the provider may not start one
        now (then the slot goes back to the supervisor). Both go in one commit."""
        tid, n = message.task_id, message.attempt
        task = self.run.tasks[tid]
        current = task.current
        if current is None or current.n != n or (tid, n) in self.ending:
            return  # told twice (a restarted run asked again): recorded once
        self.sessions.pop(tid, None)
        events = decide.decide(self.run_id, task, message.ended, time.time(), self.rand)
        reported = message.ended.reading.report.cost_usd or 0.0  # not folded until durable
        self.ending[(tid, n)] = max(0.0, reported - (current.spent.cost_usd or 0.0))
        if isinstance(events[-1], TERMINAL_EVENTS):
            self.closing.add(tid)
        provider = provider_of(task)
        step, extra = None, 0
        if (
            self.ready.has(provider)
            and self.ctx.waiting <= {self.run_id}
            and provider not in self.ctx.blocked
            and not self.ctx.held()  # the disk is full: nothing starts
            and not message.held  # the supervisor may not have published the hold yet
        ):
            step, extra = self._next_launch(provider, granted=False)
        if step is None:
            self.ready.withdraw(provider, extra)
            self.ready.release(provider)
            self._record(events)
            return
        self._record([*events, *step[0]], start=step[1])
        self.ready.withdraw(provider, extra)
        self._log_ahead(provider)
