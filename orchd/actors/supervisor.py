"""SupervisorActor: the concurrency caps, the run actors.

Each run keeps its ready tasks in order and tells the supervisor how many there
are; the supervisor grants slots to runs round-robin, so runs share the global
cap fairly and none starves; each run also has its own cap (`concurrency`).
A run whose attempt ends starts its next ready task in the same slot, with no
round trip, unless another run waits for a slot: then it releases the slot and
the round-robin decides (`Context.waiting` says which runs wait).
"""

from __future__ import annotations

import logging
import re
import secrets
from collections import Counter, deque
from typing import Any

import pykka

from orchd import events as ev
from orchd.actors.context import Actor, Context
from orchd.actors.messages import (
    CancelTasks,
    Enqueue,
    Grant,
    Release,
    Resume,
    RetryTasks,
    RunCrashed,
    RunDone,
    Submit,
    Withdraw,
)
from orchd.actors.run import RunActor
from orchd.errors import ErrorCode, OrchError

log = logging.getLogger(__name__)


class SupervisorActor(Actor):
    """Grants session slots to run actors, at most `max_sessions` at once."""

    def __init__(self, ctx: Context, max_sessions: int) -> None:
        super().__init__()
        self.ctx, self.max_sessions = ctx, max_sessions
        self.demand: Counter[str] = Counter()  # run id -> its ready tasks without a slot
        self.caps: dict[str, int] = {}
        self.running: Counter[str] = Counter()
        self.total = 0
        self.order: deque[str] = deque()  # run ids, rotated for fairness
        self.runs = ctx.runs  # run id -> its RunActor's ref (shared: messages for a run find it)

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, Enqueue):
            if message.run_id not in self.caps:
                self.order.append(message.run_id)
            self.caps[message.run_id] = message.cap
            self.demand[message.run_id] += message.count
            self.running[message.run_id] += message.occupied
            self.total += message.occupied
            self._dispatch()
        elif isinstance(message, Release):
            self.running[message.run_id] -= 1
            self.total -= 1
            self._dispatch()
        elif isinstance(message, Withdraw):
            if message.run_id in self.caps:
                self.demand[message.run_id] = max(0, self.demand[message.run_id] - message.count)
                self._publish()
        elif isinstance(message, RunDone):
            self._forget(message.run_id)
        elif isinstance(message, RunCrashed):
            self._restart(message)
        elif isinstance(message, Submit):
            self._submit(message)
        elif isinstance(message, _Started):
            self.on_started(message.run_id, message.reply)
        elif isinstance(message, (CancelTasks, RetryTasks)):
            try:
                self._actor_for(message.run_id).tell(message)
            except pykka.ActorDeadError:
                message.reply.set_exception(
                    exc_info=(
                        OrchError,
                        OrchError(
                            f"run {message.run_id} is restarting; try again", ErrorCode.CONFLICT
                        ),
                        None,
                    )
                )
        return None

    def on_failure(self, exception_type: Any, exception_value: Any, traceback: Any) -> None:
        log.error("supervisor failed: %s", exception_value)

    def on_stop(self) -> None:
        for ref in self.runs.values():
            try:
                ref.proxy().kill_all().get(timeout=5)
            except pykka.ActorDeadError:
                pass
            ref.stop(block=False)

    def resume(self, run_ids: list[str]) -> None:
        """Start actors for runs the log shows unfinished (after a restart)."""
        for run_id in run_ids:
            self._actor_for(run_id)

    def _actor_for(self, run_id: str) -> Any:
        ref = self.runs.get(run_id)
        if ref is None or not ref.is_alive():
            ref = self.runs[run_id] = RunActor.start(self.ctx, run_id)
            ref.tell(Resume())  # after it is in `runs`: what the journal tells the run reaches it
        return ref

    def _dispatch(self) -> None:
        idle = 0
        while self.total < self.max_sessions and idle < len(self.order):
            run_id = self.order[0]
            self.order.rotate(-1)
            if self.demand[run_id] and self.running[run_id] < self.caps[run_id]:
                try:
                    self.runs[run_id].tell(Grant())
                except pykka.ActorDeadError:
                    idle += 1  # it failed; its RunCrashed is on the way and restarts it
                    continue
                self.demand[run_id] -= 1
                self.running[run_id] += 1
                self.total += 1
                idle = 0
            else:
                idle += 1
        self._publish()

    def _publish(self) -> None:
        """Tell the runs which of them wait for a slot (read lock-free by run actors)."""
        waiting = frozenset(
            r for r in self.order if self.demand[r] and self.running[r] < self.caps[r]
        )
        if waiting != self.ctx.waiting:
            self.ctx.waiting = waiting

    def _restart(self, message: RunCrashed) -> None:
        """A run actor failed: free its slots and start a new one, which resumes from the log."""
        if self.runs.get(message.run_id) is not message.ref:
            return
        self.total -= self.running.pop(message.run_id, 0)
        self._unqueue(message.run_id)
        del self.runs[message.run_id]
        self._actor_for(message.run_id)
        self._dispatch()

    def _unqueue(self, run_id: str) -> None:
        if self.caps.pop(run_id, None) is not None:
            self.order.remove(run_id)
        self.demand.pop(run_id, None)

    def _forget(self, run_id: str) -> None:
        self._unqueue(run_id)
        self.running.pop(run_id, None)
        self._publish()
        ref = self.runs.pop(run_id, None)
        if ref is not None:
            ref.stop(block=False)

    def _submit(self, message: Submit) -> None:
        run_id = self._new_run_id(message.spec.name)
        me = self.actor_ref

        def recorded(records: Any, error: Any) -> None:
            if error is not None:
                message.reply.set_exception(exc_info=(type(error), error, None))
            else:
                me.tell(_Started(run_id, message.reply))

        self.ctx.journal.append([ev.RunSubmitted(run_id, message.spec, message.source)], recorded)

    def _new_run_id(self, name: str) -> str:
        slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:40] or "run"
        with self.ctx.journal.lock:
            known = self.ctx.journal.state.runs
            while True:
                run_id = f"{slug}-{secrets.token_hex(3)}"
                if run_id not in known and run_id not in self.runs:
                    return run_id

    def on_started(self, run_id: str, reply: pykka.Future) -> None:
        self._actor_for(run_id)
        reply.set(run_id)


class _Started:
    def __init__(self, run_id: str, reply: pykka.Future) -> None:
        self.run_id, self.reply = run_id, reply
