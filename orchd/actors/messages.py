"""Messages between the supervisor and run actors (one vocabulary, one place)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pykka

from orchd import events as ev
from orchd.errors import OrchError
from orchd.plan import RunSpec


@dataclass(frozen=True)
class Grant:
    """Supervisor → run: one more session slot is yours (start your next ready task in it)."""


@dataclass(frozen=True)
class Enqueue:
    """Run → supervisor: `count` more of this run's tasks are ready for a slot (the run keeps them, in order)."""

    run_id: str
    cap: int
    count: int
    ref: Any
    occupied: int = 0  # slots already in use by attempts adopted after a restart


@dataclass(frozen=True)
class Withdraw:
    """Run → supervisor: `count` of this run's ready tasks need no grant any more (cancelled, or
    started in a slot the run already held)."""

    run_id: str
    count: int


@dataclass(frozen=True)
class Release:
    """Run → supervisor: one slot of this run is free again."""

    run_id: str


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
