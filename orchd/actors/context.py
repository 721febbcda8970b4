"""What every actor of one daemon shares: journal, reactor, executor, paths."""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass, field
from typing import Any

from orchd import store
from orchd.actors.journal import Journal
from orchd.executors.local import Executor
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
    base_env: dict[str, str] = field(default_factory=lambda: dict(os.environ))

    def reader(self) -> sqlite3.Connection:
        """A new read-only connection to the log."""
        return store.connect(self.paths.db, readonly=True)
