"""Messages between the supervisor and run actors (one vocabulary, one place)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pykka

from orchd import events as ev
from orchd.errors import OrchError
from orchd.plan import RunSpec

# Scheduling is by (run, provider): a run keeps its ready tasks in order, one queue per provider
# ("" for tasks that spend none, such as commands), and the supervisor counts them.


@dataclass(frozen=True)
class Grant:
    """Supervisor → run: one more session slot is yours, for a task of `provider`."""

    provider: str = ""


@dataclass(frozen=True)
class Enqueue:
    """Run → supervisor: more of this run's tasks are ready for a slot, by provider."""

    run_id: str
    cap: int
    counts: dict[str, int]
    ref: Any
    occupied: dict[str, int] = field(default_factory=dict)  # slots of attempts taken over
    unclocked: set[str] = field(default_factory=set)  # providers whose streams tell no answer


@dataclass(frozen=True)
class Withdraw:
    """Run → supervisor: `count` of this run's ready tasks of `provider` need no grant any more
    (cancelled, failed, or started in a slot the run already held)."""

    run_id: str
    provider: str
    count: int


@dataclass(frozen=True)
class Release:
    """Run → supervisor: a slot of this run, held by a session of `provider`, is free again."""

    run_id: str
    provider: str = ""


@dataclass(frozen=True)
class Trouble:
    """Session → supervisor: its provider refused or throttled it (decide.Live says what to do).
    `started`: when the session started (monotonic), which tells an excess session that was
    already counted from a new one."""

    provider: str
    run_id: str
    task_id: str
    live: Any  # decide.Live
    started: float = 0.0


@dataclass(frozen=True)
class Served:
    """Session → supervisor: its provider answered it for the first time (`ended` False), or the
    session, which told the supervisor of an answer or a throttle, has ended."""

    provider: str
    run_id: str
    task_id: str
    started: float  # when the session started (monotonic): it names the session, with the task
    ended: bool = False


@dataclass(frozen=True)
class Unhold:
    """Run → supervisor: the user retried tasks of these providers: release their holds."""

    run_id: str
    providers: list[str]


@dataclass(frozen=True)
class FailHeld:
    """Supervisor → run: `provider` is held until the user acts, and the config says to fail its
    tasks that wait meanwhile."""

    provider: str
    reason: str


@dataclass(frozen=True)
class RunDone:
    """Run → supervisor: the run has finished; stop its actor."""

    run_id: str


@dataclass(frozen=True)
class Resume:
    """Supervisor → run, first: take the run over from the log (and from the sessions still alive)."""


@dataclass(frozen=True)
class Committed:
    """Journal → run: events of the run are durable (or, `error`, could not be written). `then` is
    what the actor that recorded them (`origin`) does next; a successor of it skips that."""

    records: list[ev.Record] | None
    error: OrchError | None
    events: Sequence[ev.Event]
    then: Callable[[], None] | None
    origin: Any
    durable: Callable[[], None] | None = None


@dataclass(frozen=True)
class RunCrashed:
    """Run → supervisor (from on_failure): restart this run's actor from the log."""

    run_id: str
    ref: Any


@dataclass(frozen=True)
class Submit:
    """Server → supervisor: record a new run and start it; reply with its id."""

    spec: RunSpec
    source: str
    reply: pykka.Future


@dataclass(frozen=True)
class CancelTasks:
    """Server → supervisor → run: cancel these tasks (all when empty); reply with how many."""

    run_id: str
    task_ids: list[str]
    reply: pykka.Future


@dataclass(frozen=True)
class RetryTasks:
    """Server → supervisor → run: run these failed or cancelled tasks again; reply with how many."""

    run_id: str
    task_ids: list[str]
    reply: pykka.Future


@dataclass(frozen=True)
class Settle:
    """Daemon → run, as orchd stops (nothing starts any more): `reply` gets a `Settled` once every
    launch the run recorded has its process (none is durable without one), and, with `end`, once
    every session of the run has been ended (TERM, then KILL: recorded interrupted) and its end is
    durable. Without `end`, the sessions keep running under the keeper for the next start."""

    end: bool
    reply: pykka.Future


@dataclass(frozen=True)
class Settled:
    """Run → daemon: the run is at rest; `ended`: the sessions it ended as interrupted."""

    ended: int = 0
