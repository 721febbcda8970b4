"""The SQLite event log: migrations, durable batched appends, reads by sequence.

WAL with synchronous=FULL: a committed transaction survives power loss, a torn
one is rolled back by SQLite on the next open. Only the journal writes; every
reader opens its own connection (WAL lets readers run beside the writer).
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Iterable, Sequence

import msgspec
import sqlite_utils

from orchd import events as ev
from orchd.events import Row

# Applied in order, each once; recorded in the `migrations` table.
MIGRATIONS: list[tuple[str, str]] = [
    (
        "m001_events",
        """
        CREATE TABLE events (
            seq INTEGER PRIMARY KEY,
            ts REAL NOT NULL,
            run_id TEXT NOT NULL,
            task_id TEXT,
            kind TEXT NOT NULL,
            payload BLOB NOT NULL
        );
        CREATE INDEX events_run ON events (run_id, seq);
        """,
    ),
]


def connect(path: Path, *, readonly: bool = False) -> sqlite3.Connection:
    """Open the log with the pragmas every connection needs."""
    if readonly:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None,
                               check_same_thread=False)
    else:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA busy_timeout=10000")
    return conn


def migrate(conn: sqlite3.Connection) -> list[str]:
    """Apply the migrations this database lacks; return their names."""
    db = sqlite_utils.Database(conn)
    if "migrations" not in db.table_names():
        conn.execute("CREATE TABLE migrations (name TEXT PRIMARY KEY, applied_at REAL NOT NULL)")
    done = {row[0] for row in conn.execute("SELECT name FROM migrations")}
    applied = []
    for name, sql in MIGRATIONS:
        if name in done:
            continue
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in filter(str.strip, sql.split(";")):
                conn.execute(statement)
            conn.execute("INSERT INTO migrations VALUES (?, ?)", (name, time.time()))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        applied.append(name)
    return applied


ROWS_PER_INSERT = 5000  # 6 parameters a row, under SQLite's 32,766-variable limit


def append(conn: sqlite3.Connection, batch: Sequence[ev.Event], last: int) -> list[ev.Record]:
    """Append events after sequence number `last` in one durable transaction; return them as records.

    One multi-row INSERT per 5,000 events: every statement step releases and
    re-takes the GIL, which costs a switch interval when many threads are busy.
    """
    ts = time.time()
    rows = [(last + i + 1, ts, e.run_id, getattr(e, "task_id", None), ev.kind_of(e), ev.encode(e))
            for i, e in enumerate(batch)]
    conn.execute("BEGIN IMMEDIATE")
    try:
        for start in range(0, len(rows), ROWS_PER_INSERT):
            chunk = rows[start:start + ROWS_PER_INSERT]
            values = ",".join(["(?,?,?,?,?,?)"] * len(chunk))
            conn.execute(f"INSERT INTO events (seq, ts, run_id, task_id, kind, payload) VALUES {values}",
                         [field for row in chunk for field in row])
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return [ev.Record(seq, ts, kind, e) for (seq, _, _, _, kind, _), e in zip(rows, batch)]


def _where(after: int, upto: int | None, run_id: str | None, task_id: str | None) -> tuple[str, list]:
    clauses, params = ["seq > ?"], [after]
    if upto is not None:
        clauses.append("seq <= ?")
        params.append(upto)
    if run_id is not None:
        clauses.append("run_id = ?")
        params.append(run_id)
    if task_id is not None:
        clauses.append("task_id = ?")
        params.append(task_id)
    return " AND ".join(clauses), params


def rows(conn: sqlite3.Connection, *, after: int = 0, upto: int | None = None,
         run_id: str | None = None, task_id: str | None = None,
         limit: int | None = None) -> list[Row]:
    """Stored events after `after` (and up to `upto`), oldest first."""
    where, params = _where(after, upto, run_id, task_id)
    sql = f"SELECT seq, ts, run_id, task_id, kind, payload FROM events WHERE {where} ORDER BY seq"
    if limit is not None:
        sql += " LIMIT ?"
        params.append(limit)
    return [Row(s, t, r, k_task, kind, msgspec.Raw(p)) for s, t, r, k_task, kind, p in conn.execute(sql, params)]


def records(conn: sqlite3.Connection, *, after: int = 0, upto: int | None = None,
            run_id: str | None = None) -> Iterable[ev.Record]:
    """Stored events decoded for the fold, oldest first (streamed)."""
    where, params = _where(after, upto, run_id, None)
    cursor = conn.execute(f"SELECT seq, ts, kind, payload FROM events WHERE {where} ORDER BY seq", params)
    decode = ev.decode
    for seq, ts, kind, payload in cursor:
        yield ev.Record(seq, ts, kind, decode(kind, payload))


def last_seq(conn: sqlite3.Connection) -> int:
    (seq,) = conn.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()
    return seq
