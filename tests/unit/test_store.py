"""The log's fold: read in chunks on a second thread, the same state as row by row."""

from __future__ import annotations

import random
import sqlite3
import threading
from pathlib import Path

import msgspec
import pytest

from orchd import events as ev
from orchd import state as st
from orchd import store
from orchd.fold import fold_rows
from orchd.plan import RunSpec, TaskSpec


def _log(path: Path, tasks: int) -> sqlite3.Connection:
    """A real log: one run of `tasks` tasks, each launched, started, finished and completed."""
    conn = store.connect(path)
    store.migrate(conn)
    spec = RunSpec(
        name="r",
        concurrency=4,
        workdir="/w",
        tasks=[
            TaskSpec(id=f"t{i}", agent="command", cwd="/w", command=["true"]) for i in range(tasks)
        ],
    )
    events: list[ev.Event] = [ev.RunSubmitted("r1", spec)]
    for i in range(tasks):
        events += [
            ev.AttemptLaunching("r1", f"t{i}", 1, ["true"], "/w", f"/l/t{i}.1.log"),
            ev.AttemptStarted("r1", f"t{i}", 1, pid=100 + i, pgid=100 + i, start_ticks=i),
            ev.AttemptFinished("r1", f"t{i}", 1, "success", exit_code=0, duration=0.001 * i),
            ev.TaskCompleted("r1", f"t{i}"),
        ]
    store.append(conn, events, store.tail(conn))
    return conn


def _row_by_row(conn: sqlite3.Connection, upto: int | None = None) -> st.State:
    return fold_rows(
        conn.execute(
            "SELECT seq, ts, payload FROM events WHERE seq <= ? ORDER BY seq",
            (upto or store.last_seq(conn),),
        )
    )


@pytest.fixture
def chunk(monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setattr(store, "CHUNK", 7)  # a prime: chunks end in the middle of a task's events
    return 7


def test_the_chunked_fold_equals_the_fold_row_by_row(tmp_path: Path, chunk: int) -> None:
    conn = _log(tmp_path / "events.db", 30)
    rng = random.Random(6)  # times with every mantissa bit set at random: each must come back exact
    conn.executemany(
        "UPDATE events SET ts = ? WHERE seq = ?",
        [(rng.uniform(1.0e9, 4.0e9), seq) for seq in range(1, 122)],
    )
    last = store.last_seq(conn)
    assert last > 10 * chunk
    assert store.fold(conn) == _row_by_row(conn)
    assert store.fold(conn, upto=50) == _row_by_row(conn, 50)  # `status --at`
    assert store.fold(conn).seq == last


def test_odd_chunks_are_read_row_by_row(tmp_path: Path, chunk: int) -> None:
    """A gap in seq, an event of a newer kind, an exotic time: each such chunk still folds as stored."""
    conn = _log(tmp_path / "events.db", 30)
    conn.execute("DELETE FROM events WHERE seq = 20")  # a gap
    conn.execute(
        "UPDATE events SET payload = ? WHERE seq = 40", (b'{"kind":"FromTheFuture","run_id":"r1"}',)
    )  # a kind this version does not know
    conn.execute(
        "UPDATE events SET ts = 1e-310 WHERE seq = 60"
    )  # a time out of the range read as integers
    conn.execute(
        "UPDATE events SET payload = ? WHERE seq = 80",  # a newline inside a payload
        (b'{"kind":"TaskCompleted",\n"run_id":"r1","task_id":"t19"}',),
    )
    folded = store.fold(conn)
    assert folded == _row_by_row(conn)
    assert (
        folded.runs["r1"].tasks["t14"].attempts[-1].finished_at == 1e-310
    )  # seq 60: t14's AttemptFinished


def test_a_damaged_payload_in_a_chunk_still_raises(tmp_path: Path, chunk: int) -> None:
    conn = _log(tmp_path / "events.db", 30)
    conn.execute(
        "UPDATE events SET payload = ? WHERE seq = 33", (b'{"kind":"RunFinished","run_id":5}',)
    )
    with pytest.raises(msgspec.ValidationError):
        store.fold(conn)
    assert not [
        t for t in threading.enumerate() if t.name == "fold-reader"
    ]  # the reader was let go
