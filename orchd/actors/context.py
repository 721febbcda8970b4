"""What every actor of one daemon shares: journal, reactor, executor, pool, paths, and who is alive."""

from __future__ import annotations

import os
import queue
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pykka

from orchd import disk, store
from orchd import events as ev
from orchd.actors.messages import Committed
from orchd.actors.pool import Dispatcher, tell
from orchd.executors.base import Executor
from orchd.inotify import Growth
from orchd.journal import Journal
from orchd.paths import Paths
from orchd.reactor import Reactor


@dataclass
class Context:
    """Shared, thread-safe services; actors keep their own state."""

    paths: Paths
    journal: Journal
    reactor: Reactor
    executor: Executor
    dispatcher: Dispatcher  # the shared threads of the session actors
    growth: Growth | None = None  # tells sessions that their logs grew (inotify)
    kill_grace: float = 5.0  # seconds between TERM and KILL
    supervisor: Any = None  # the supervisor's ActorRef, set once it runs
    # what the supervisor publishes for the run actors, read without a lock: the runs that wait for
    # a slot, and the providers that may not start a session now
    waiting: frozenset[str] = frozenset()
    blocked: frozenset[str] = frozenset()
    stopping: bool = False  # orchd is stopping: no process starts any more (the daemon sets it)
    base_env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    # The live actor of each unfinished run (the supervisor writes it, before the actor resumes), and
    # of each attempt (each session writes its own): messages for a run go to whichever actor has it
    # now, so a run actor that fails and restarts loses none of them.
    runs: dict[str, pykka.ActorRef[Any]] = field(default_factory=dict)
    sessions: dict[tuple[str, str, int], pykka.ActorRef[Any]] = field(default_factory=dict)

    def reader(self) -> sqlite3.Connection:
        """A new read-only connection to the log."""
        return store.connect(self.paths.db, readonly=True)

    def held(self) -> str | None:
        """Why no attempt may start now (the log or the state directory cannot be written)."""
        return disk.held_by(self.journal.failed, str(self.paths.state_dir))

    def tell_run(self, run_id: str, message: Any) -> bool:
        """Tell the run's actor, from any thread; False when it has none alive (it is restarting)."""
        ref = self.runs.get(run_id)
        return ref is not None and tell(ref, message)

    def record(
        self,
        run_id: str,
        events: Sequence[ev.Event],
        *,
        then: Callable[[], None] | None = None,
        origin: Any = None,
        durable: Callable[[], None] | None = None,
        lazy: bool = False,
        now: bool = False,
    ) -> None:
        """Persist `events` of run `run_id`; once durable, its run actor folds them (and runs `then`,
        if it is still `origin`, the actor that asked). `durable` runs at once on the committing
        thread: it may only `tell` an actor."""

        def done(records: list[ev.Record] | None, error: Any) -> None:
            try:
                if error is None and durable is not None:
                    durable()
            finally:
                self.tell_run(run_id, Committed(records, error, events, then, origin, durable))

        self.journal.append(events, done, lazy, now)


class Actor(pykka.ThreadingActor):
    """orch's threaded actors (a run, the supervisor): pykka threading actors with a lock-free inbox.

    pykka's default inbox is a `queue.Queue` (Python-level locks and conditions); a
    `SimpleQueue` is the C one, and pykka only puts, gets and asks whether it is empty.
    """

    @staticmethod
    def _create_actor_inbox() -> queue.SimpleQueue:
        return queue.SimpleQueue()
