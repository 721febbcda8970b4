"""SupervisorActor: the concurrency caps, the providers' holds and limits, the run actors.

Each run keeps its ready tasks in order, one queue per provider, and tells the
supervisor how many there are; the supervisor grants slots round-robin over
(run, provider) pairs, so runs share the global cap fairly and none starves, each
run keeps to its own cap (`concurrency`), and no session of a provider starts
while it is held (a rejected credential, a usage limit), paused (its Retry-After)
or at its adaptive limit (providers.Aimd). A run whose attempt ends starts its
next ready task of the same provider in that slot, with no round trip, unless
another run waits or the provider may not start one (`Context.waiting`,
`Context.blocked`).
"""

from __future__ import annotations

import logging
import time
from collections import Counter, deque
from typing import Any

import pykka

from orchd import events as ev
from orchd.actors.context import Actor, Context
from orchd.actors.messages import (
    CancelTasks,
    Enqueue,
    FailHeld,
    Grant,
    Release,
    RetryTasks,
    RunCrashed,
    RunDone,
    Served,
    Submit,
    Trouble,
    Unhold,
    Withdraw,
)
from orchd.actors.pool import teller
from orchd.actors.run import RunActor
from orchd.actors.runs import Runs, Started
from orchd.errors import ErrorCode, OrchError
from orchd.providers import Aimd

log = logging.getLogger(__name__)


class SupervisorActor(Actor):
    """Grants session slots to run actors, at most `max_sessions` at once."""

    def __init__(self, ctx: Context, max_sessions: int, fail_held: bool = False) -> None:
        super().__init__()
        self.ctx, self.max_sessions, self.fail_held = ctx, max_sessions, fail_held
        self.demand: Counter[tuple[str, str]] = Counter()  # (run, provider) -> ready, no slot
        self.caps: dict[str, int] = {}
        self.slots: Counter[tuple[str, str]] = Counter()  # (run, provider) -> its slots
        self.running: Counter[str] = Counter()  # run -> its slots
        self.using: Counter[str] = Counter()  # provider -> its slots
        self.total = 0
        self.order: deque[tuple[str, str]] = deque()  # (run, provider), rotated for fairness
        self.limits: dict[str, Aimd] = {}  # provider -> its adaptive limit (from its first grant)
        # provider -> its sessions (run, task, started) it has answered ("answered") or throttled
        # since ("throttled"), as they told
        self.heard: dict[str, dict[tuple[str, str, float], str]] = {}
        self.unclocked: set[str] = set()  # providers whose agents' streams tell no answer
        self.paused: dict[str, float] = {}  # provider -> monotonic time its Retry-After ends
        self.held: dict[str, float | None] = {}  # provider -> wall time its hold ends (None: never)
        self.runs = Runs(ctx)

    def on_start(self) -> None:
        with self.ctx.journal.lock:
            providers = list(self.ctx.journal.state.providers.values())
        for p in providers:
            if p.held:
                self._hold(p.provider, p.until)
            if p.limit is not None:  # what its rate limits taught before the restart
                self.limits[p.provider] = Aimd(self.max_sessions, start=p.limit)

    def on_receive(self, message: Any) -> Any:
        kind = type(message)
        if kind is Enqueue:
            self._enqueue(message)
        elif kind is Release:
            self._take(message.run_id, message.provider, -1)
            self._dispatch()
        elif kind is Served:
            self._served(message)
        elif kind is Withdraw:
            key = (message.run_id, message.provider)
            if key in self.demand:
                self.demand[key] = max(0, self.demand[key] - message.count)
                self._publish()
        elif kind is Trouble:
            self._trouble(message)
        elif kind is Unhold:
            self._unhold(message)
        elif kind is _Due:
            self._due(message.provider)
        elif kind is RunDone:
            self._forget(message.run_id)
        elif kind is RunCrashed:
            self._restart(message)
        elif kind is Submit:
            self.runs.submit(message)
        elif kind is Started:
            self.runs.started(message)
        elif kind in (CancelTasks, RetryTasks):
            try:
                self.runs.actor_for(message.run_id).tell(message)
            except pykka.ActorDeadError:
                error = OrchError(
                    f"run {message.run_id} is restarting; try again", ErrorCode.CONFLICT
                )
                message.reply.set_exception(exc_info=(OrchError, error, None))
        return None

    def on_failure(self, exception_type: Any, exception_value: Any, traceback: Any) -> None:
        log.error("supervisor failed: %s", exception_value)

    def on_stop(self) -> None:
        self.runs.stop_all()

    def resume(self, run_ids: list[str]) -> None:
        """Start actors for runs the log shows unfinished (after a restart)."""
        for run_id in run_ids:
            self.runs.actor_for(run_id)

    # ------------------------------------------------------------ slots

    def _enqueue(self, message: Enqueue) -> None:
        run_id = message.run_id
        self.caps[run_id] = message.cap
        self.unclocked |= message.unclocked
        for provider, count in message.counts.items():
            key = (run_id, provider)
            if key not in self.demand:
                self.order.append(key)
            self.demand[key] += count
        for provider, count in message.occupied.items():
            self._take(run_id, provider, count)
        self._dispatch()

    def _take(self, run_id: str, provider: str, count: int = 1) -> None:
        self.slots[(run_id, provider)] += count
        self.running[run_id] += count
        self.using[provider] += count
        self.total += count

    def _startable(self, provider: str) -> bool:
        """Whether a session of `provider` may start now (besides the run's and the global caps)."""
        if not provider:
            return True
        if provider in self.held or self.paused.get(provider, 0.0) > time.monotonic():
            return False
        return self.using[provider] < self._limit(provider).allowed

    def _limit(self, provider: str) -> Aimd:
        limit = self.limits.get(provider)
        if limit is None:  # from the caps when no answer will clock it
            start = self.max_sessions if provider in self.unclocked else None
            limit = self.limits[provider] = Aimd(self.max_sessions, start)
        return limit

    def _dispatch(self) -> None:
        if self.ctx.stopping:  # orchd stops: no slot is granted any more (the next one grants)
            return
        idle = 0
        while self.total < self.max_sessions and idle < len(self.order):
            key = self.order[0]
            self.order.rotate(-1)
            run_id, provider = key
            if (
                self.demand[key]
                and self.running[run_id] < self.caps[run_id]
                and self._startable(provider)
                and self.runs.tell(run_id, Grant(provider))
            ):
                self.demand[key] -= 1
                self._take(run_id, provider)
                idle = 0
            else:
                idle += 1
        self._publish()

    def _publish(self) -> None:
        """Tell the runs which runs wait for a slot and which providers may not start a session
        (read lock-free by run actors, which reuse a slot without asking when neither stops them)."""
        waiting = frozenset(
            r
            for (r, p), n in self.demand.items()
            if n and self.running[r] < self.caps.get(r, 0) and self._startable(p)
        )
        if waiting != self.ctx.waiting:
            self.ctx.waiting = waiting
        blocked = frozenset(p for p in self.using if p and not self._startable(p))
        blocked |= frozenset(self.held)
        if blocked != self.ctx.blocked:
            self.ctx.blocked = blocked

    # ------------------------------------------------------------ providers

    def _served(self, message: Served) -> None:
        """A session of a provider had its first answer, or has ended."""
        provider, key = message.provider, (message.run_id, message.task_id, message.started)
        heard = self.heard.setdefault(provider, {})
        if message.ended:
            heard.pop(key, None)
            return
        heard[key] = "answered"
        limit, now = self._limit(provider), time.monotonic()
        if limit.answered(message.started, self.using[provider], self._excess(provider), now):
            if not limit.slow:  # the slow start's steps are not worth a record each
                self._limited(message.run_id, provider, limit, "the provider answers")
            self._dispatch()

    def _excess(self, provider: str) -> int:
        """How many sessions of `provider` are throttled now (refused, not answered since)."""
        return sum(1 for state in self.heard.get(provider, {}).values() if state == "throttled")

    def _trouble(self, message: Trouble) -> None:
        live, provider = message.live, message.provider
        now = time.monotonic()
        key = (message.run_id, message.task_id, message.started)
        heard = self.heard.setdefault(provider, {})
        if live.throttle and heard.get(key) != "throttled":  # its retries tell nothing new
            heard[key] = "throttled"
            limit = self._limit(provider)
            using, excess = self.using[provider], self._excess(provider)
            if limit.throttle(message.started, using, excess, now):
                self._limited(message.run_id, provider, limit, "rate limited or overloaded")
        if live.pause:
            until = now + live.pause
            if until > self.paused.get(provider, 0.0):
                self.paused[provider] = until
                self.ctx.reactor.call_later(live.pause, teller(self.actor_ref, _Due(provider)))
        hold = live.hold
        if hold is not None and not self._holds_longer(provider, hold.until):
            self._hold(provider, hold.until)
            event = ev.ProviderHeld(
                message.run_id,
                provider,
                hold.cause,
                hold.reason,
                until=hold.until,
                task_id=message.task_id,
            )
            self.ctx.journal.append([event])
            log.warning("provider %s held: %s", provider, hold.reason)
            if hold.until is None and self.fail_held:
                for run_id in list(self.runs.refs):
                    self.runs.tell(run_id, FailHeld(provider, hold.reason))
        self._publish()

    def _limited(self, run_id: str, provider: str, limit: Aimd, why: str) -> None:
        log.info("provider %s: at most %s sessions (%s)", provider, limit.recorded, why)
        self.ctx.journal.append([ev.ProviderLimited(run_id, provider, limit.recorded, why)])

    def _holds_longer(self, provider: str, until: float | None) -> bool:
        if provider not in self.held:
            return False
        current = self.held[provider]
        return current is None or (until is not None and current >= until)

    def _hold(self, provider: str, until: float | None) -> None:
        self.held[provider] = until
        if until is not None:
            due = teller(self.actor_ref, _Due(provider))
            self.ctx.reactor.call_at_wall(until, due)

    def _due(self, provider: str) -> None:
        """A pause or a hold may have ended."""
        until = self.held.get(provider, 0.0)
        if until is not None and until <= time.time() and provider in self.held:
            del self.held[provider]
            self.ctx.journal.append(
                [ev.ProviderReleased(self._some_run(provider), provider, "the limit's reset came")]
            )
        if self.paused.get(provider, 0.0) <= time.monotonic():
            self.paused.pop(provider, None)
        self._dispatch()

    def _unhold(self, message: Unhold) -> None:
        released = [p for p in message.providers if p in self.held]
        for provider in released:
            del self.held[provider]
            self.limits.pop(provider, None)  # start again, slowly
        if released:
            self.ctx.journal.append(
                [ev.ProviderReleased(message.run_id, p, "retried by the user") for p in released]
            )
        self._dispatch()

    def _some_run(self, provider: str) -> str:
        with self.ctx.journal.lock:
            state = self.ctx.journal.state.providers.get(provider)
        return state.run_id if state is not None else ""

    # ------------------------------------------------------------ run actors

    def _restart(self, message: RunCrashed) -> None:
        """A run actor failed: free its slots and start a new one, which resumes from the log."""
        if self.runs.refs.get(message.run_id) is not message.ref:
            return
        self._unqueue(message.run_id)
        self.runs.restart(message.run_id)
        self._dispatch()

    def _unqueue(self, run_id: str) -> None:
        """Forget what a run waited for and held: its actor is gone, and a new one tells again
        what it waits for and which slots its sessions hold."""
        self.caps.pop(run_id, None)
        for key in [k for k in self.demand if k[0] == run_id]:
            del self.demand[key]
            self.order.remove(key)
        for key in [k for k in self.slots if k[0] == run_id]:
            held = self.slots.pop(key)
            self.using[key[1]] -= held
            self.total -= held
        self.running.pop(run_id, None)

    def _forget(self, run_id: str) -> None:
        self._unqueue(run_id)
        self._publish()
        self.runs.forget(run_id)


class _Due:
    """A timer: a provider's pause or hold may have ended."""

    __slots__ = ("provider",)

    def __init__(self, provider: str) -> None:
        self.provider = provider


__all__ = ["RunActor", "SupervisorActor"]
