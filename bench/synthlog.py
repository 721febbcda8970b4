"""Event logs of any size, written directly with orchd.store (seconds, where a real run would take hours).

The events are the ones a real run of `command` tasks records, in the same
order, through the same `store.append` (hash chain included): per completed
task AttemptLaunching, AttemptStarted, AttemptFinished(success), TaskCompleted;
a completed run ends with RunFinished. A run can keep some tasks pending (never
launched), so a daemon that opens the log has unfinished work to resume.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from orchd import events as ev
from orchd import store
from orchd.plan import RunSpec, TaskSpec

EVENTS_PER_TASK = 4  # launching, started, finished, completed
CHUNK = 20_000  # events per transaction while building


@dataclass(frozen=True)
class RunShape:
    """One run to write: `tasks` tasks of which the last `pending` were never launched."""

    run_id: str
    tasks: int
    pending: int = 0

    @property
    def events(self) -> int:
        done = self.tasks - self.pending
        return 1 + EVENTS_PER_TASK * done + (0 if self.pending else 1)


def shapes_for(total: int, *, unfinished: int = 0, tasks_per_run: int = 10_000) -> list[RunShape]:
    """Runs that add up to about `total` events (never fewer): completed runs of `tasks_per_run`
    tasks, and, when `unfinished`, one running run whose last `unfinished` tasks are pending."""
    shapes = []
    if unfinished:
        shapes.append(RunShape("bench-running", max(unfinished, tasks_per_run), unfinished))
    left = total - sum(s.events for s in shapes)
    per_run = RunShape("x", tasks_per_run).events
    for i in range(max(0, math.ceil(left / per_run))):
        shapes.append(RunShape(f"bench-done-{i}", tasks_per_run))
    return shapes


def _spec(shape: RunShape, workdir: str, command: list[str]) -> RunSpec:
    tasks = [
        TaskSpec(id=f"t{i}", agent="command", cwd=workdir, command=command, max_retries=0)
        for i in range(shape.tasks)
    ]
    return RunSpec(name="bench", concurrency=64, workdir=workdir, tasks=tasks)


def run_events(shape: RunShape, workdir: str, command: list[str], logs: str) -> Iterator[ev.Event]:
    """The events of one run, in the order a daemon records them."""
    r = shape.run_id
    yield ev.RunSubmitted(r, _spec(shape, workdir, command), source="bench.json")
    for i in range(shape.tasks - shape.pending):
        t = f"t{i}"
        yield ev.AttemptLaunching(r, t, 1, command, workdir, f"{logs}/{r}/{t}.1.log")
        yield ev.AttemptStarted(r, t, 1, pid=100_000 + i, pgid=100_000 + i, start_ticks=123_456 + i)
        yield ev.AttemptFinished(r, t, 1, "success", exit_code=0, duration=0.0021)
        yield ev.TaskCompleted(r, t)
    if not shape.pending:
        yield ev.RunFinished(r, "completed")


def all_events(
    shapes: list[RunShape], workdir: str, command: list[str], logs: str
) -> Iterator[ev.Event]:
    for shape in shapes:
        yield from run_events(shape, workdir, command, logs)


def build(
    db: Path, shapes: list[RunShape], *, workdir: str, command: list[str] | None = None
) -> int:
    """Write the runs into a fresh log at `db` (migrated as orchd would); the number of events."""
    db.parent.mkdir(parents=True, exist_ok=True)
    conn = store.connect(db)
    try:
        store.migrate(conn)
        conn.execute(
            "PRAGMA synchronous=OFF"
        )  # building a fixture: durability is not what is measured
        after, count, batch = store.tail(conn), 0, []
        for event in all_events(shapes, workdir, command or ["true"], str(db.parent / "logs")):
            batch.append(event)
            if len(batch) == CHUNK:
                after, count = store.append(conn, batch, after)[1], count + len(batch)
                batch = []
        if batch:
            after, count = store.append(conn, batch, after)[1], count + len(batch)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return count
    finally:
        conn.close()


def copy(src: Path, dst: Path) -> None:
    """Copy a log that `build` wrote (checkpointed and closed: the one file holds it all)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
