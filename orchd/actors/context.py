"""What every actor of one daemon shares: journal, reactor, executor, paths."""

from __future__ import annotations

import os
import queue
import sqlite3
from dataclasses import dataclass, field
from typing import Any

import pykka

from orchd import store
from orchd.executors.base import Executor
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
    kill_grace: float = 5.0  # seconds between TERM and KILL
    supervisor: Any = None  # the supervisor's ActorRef, set once it runs
    waiting: frozenset[str] = (
        frozenset()
    )  # runs with ready tasks that wait for a slot (the supervisor writes it)
    stopping: bool = False  # orchd is stopping: no process starts any more (the daemon sets it)
    base_env: dict[str, str] = field(default_factory=lambda: dict(os.environ))

    def reader(self) -> sqlite3.Connection:
        """A new read-only connection to the log."""
        return store.connect(self.paths.db, readonly=True)


class Actor(pykka.ThreadingActor):
    """orch's actors: pykka threading actors with a lock-free inbox.

    pykka's default inbox is a `queue.Queue` (Python-level locks and conditions); a
    `SimpleQueue` is the C one, and pykka only puts, gets and asks whether it is empty.
    """

    @staticmethod
    def _create_actor_inbox() -> queue.SimpleQueue:
        return queue.SimpleQueue()
