"""The SQLite event log: migrations, durable batched appends, reads by sequence.

WAL with synchronous=FULL: a committed transaction survives power loss, a torn
one is rolled back by SQLite on the next open. Only the journal writes; every
reader opens its own connection (WAL lets readers run beside the writer).
"""

from __future__ import annotations

import contextlib
import hashlib
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Generator, Iterable, Sequence
from pathlib import Path

import msgspec
import sqlite_utils

from orchd import events as ev
from orchd import fold as folding
from orchd import state as st
from orchd.audit import ExactlyOnce
from orchd.events import Row

GENESIS = b"\x00" * 32  # the "previous hash" of the first event


def chain(
    prev: bytes,
    seq: int,
    ts: float,
    run_id: str,
    task_id: str | None,
    kind: str,
    payload: bytes | str,
) -> bytes:
    """The hash of one event, chained to the previous one: editing, dropping or reordering any
    stored event changes every hash after it."""
    head = f"{seq}\x00{ts!r}\x00{run_id}\x00{task_id or ''}\x00{kind}\x00".encode()
    # a tampered row may hold TEXT
    body = payload.encode() if isinstance(payload, str) else bytes(payload)
    return hashlib.sha256(prev + head + body).digest()


# Applied in order, each once, each in its own transaction, and recorded in the `migrations`
# table (the way llm and sqlite-migrate keep theirs): add one with `@migration` at the end, never
# edit or reorder one that has shipped.
MIGRATIONS: list[Callable[[sqlite_utils.Database], None]] = []
migration = MIGRATIONS.append


@migration
def m001_events(db: sqlite_utils.Database) -> None:
    db.table("events").create(
        {"seq": int, "ts": float, "run_id": str, "task_id": str, "kind": str, "payload": bytes},
        pk="seq",
        not_null={"ts", "run_id", "kind", "payload"},
    )
    db.table("events").create_index(["run_id", "seq"], index_name="events_run")


@migration
def m002_hash_chain(db: sqlite_utils.Database) -> None:
    db.table("events").add_column("hash", bytes)
    prev = GENESIS
    rows = db.execute(
        "SELECT seq, ts, run_id, task_id, kind, payload FROM events ORDER BY seq"
    ).fetchall()
    for seq, ts, run_id, task_id, kind, payload in rows:
        prev = chain(prev, seq, ts, run_id, task_id, kind, payload)
        db.execute("UPDATE events SET hash = ? WHERE seq = ?", (prev, seq))


def connect(path: Path, *, readonly: bool = False) -> sqlite3.Connection:
    """Open the log with the pragmas every connection needs."""
    if readonly:
        conn = sqlite3.connect(
            f"file:{path}?mode=ro", uri=True, isolation_level=None, check_same_thread=False
        )
    else:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA busy_timeout=10000")
    return conn


def open_log(path: Path) -> tuple[sqlite3.Connection, list[str], bool]:
    """Open the log for writing and migrate it: (connection, migrations applied, read_only).

    A clean stop leaves the whole log in its main file (no WAL, no shared memory), and on a
    full disk SQLite cannot make its shared-memory file again, not even to read. Then the
    connection reads that file alone (`immutable`), and `read_only` is True: the journal opens
    the log for writing (`connect`) once there is room, and holds every append until then.
    """
    try:
        conn = connect(path)
        return conn, migrate(conn), False
    except sqlite3.OperationalError:
        wal = path.with_name(path.name + "-wal")
        if not path.exists() or (wal.exists() and wal.stat().st_size):
            raise  # no log yet, or a WAL whose events the main file lacks: nothing to read alone
    conn = sqlite3.connect(
        f"{path.resolve().as_uri()}?immutable=1",
        uri=True,
        isolation_level=None,
        check_same_thread=False,
    )
    done = {row[0] for row in conn.execute("SELECT name FROM migrations")}
    if any(step.__name__ not in done for step in MIGRATIONS):
        conn.close()
        raise sqlite3.OperationalError(f"{path} needs migrating, and cannot be written now")
    return conn, [], True


def migrate(conn: sqlite3.Connection) -> list[str]:
    """Apply the migrations this database lacks; return their names."""
    db = sqlite_utils.Database(conn)
    record = db.table("migrations")
    if not record.exists():
        record.create({"name": str, "applied_at": float}, pk="name", not_null={"applied_at"})
    done = {row["name"] for row in record.rows}
    applied = []
    for step in MIGRATIONS:
        if step.__name__ in done:
            continue
        conn.execute("BEGIN IMMEDIATE")
        try:
            step(db)
            record.insert({"name": step.__name__, "applied_at": time.time()})
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        applied.append(step.__name__)
    return applied


ROWS_PER_INSERT = 5000  # 6 parameters a row, under SQLite's 32,766-variable limit


class Tail(msgspec.Struct, frozen=True):
    """The last event of the log: where the next append continues the sequence and the chain."""

    seq: int = 0
    hash: bytes = GENESIS


def tail(conn: sqlite3.Connection) -> Tail:
    row = conn.execute("SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1").fetchone()
    return Tail(row[0], row[1]) if row else Tail()


def append(
    conn: sqlite3.Connection, batch: Sequence[ev.Event], after: Tail
) -> tuple[list[ev.Record], Tail]:
    """Append events after `after` in one durable transaction; return them as records, and the new tail.

    One multi-row INSERT per 5,000 events: every statement step releases and
    re-takes the GIL, which costs a switch interval when many threads are busy.
    """
    ts = time.time()
    rows, prev = [], after.hash
    for i, e in enumerate(batch):
        seq, task_id, kind, payload = (
            after.seq + i + 1,
            getattr(e, "task_id", None),
            ev.kind_of(e),
            ev.encode(e),
        )
        prev = chain(prev, seq, ts, e.run_id, task_id, kind, payload)
        rows.append((seq, ts, e.run_id, task_id, kind, payload, prev))
    conn.execute("BEGIN IMMEDIATE")
    try:
        for start in range(0, len(rows), ROWS_PER_INSERT):
            chunk = rows[start : start + ROWS_PER_INSERT]
            values = ",".join(["(?,?,?,?,?,?,?)"] * len(chunk))
            conn.execute(
                f"INSERT INTO events (seq, ts, run_id, task_id, kind, payload, hash) VALUES {values}",
                [field for row in chunk for field in row],
            )
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:  # SQLite rolls back by itself on a full disk, among others
            conn.execute("ROLLBACK")
        raise
    records = [ev.Record(row[0], ts, row[4], e) for row, e in zip(rows, batch)]
    return records, Tail(rows[-1][0], prev) if rows else after


class Audit(msgspec.Struct, frozen=True):
    """The result of verifying the log."""

    events: int
    head: str  # hex hash of the last verified event
    first_bad: int | None = None
    problem: str = ""


def audit(conn: sqlite3.Connection) -> Audit:
    """Recompute the hash chain over the whole log and check that nothing ran twice (`audit.ExactlyOnce`);
    name the first event that does not verify."""
    prev, expected, count = GENESIS, 1, 0
    rules = ExactlyOnce()
    cursor = conn.execute(
        "SELECT seq, ts, run_id, task_id, kind, payload, hash FROM events ORDER BY seq"
    )
    for seq, ts, run_id, task_id, kind, payload, stored in cursor:
        if seq != expected:
            return Audit(
                count, prev.hex(), expected, f"event {expected} is missing (next stored is {seq})"
            )
        prev = chain(prev, seq, ts, run_id, task_id, kind, payload)
        if stored != prev:
            return Audit(
                count,
                prev.hex(),
                seq,
                f"event {seq} ({kind}) does not match its hash: "
                "it, or an event before it, was changed",
            )
        broken = rules.check(ev.decode(kind, payload))
        if broken is not None:
            return Audit(
                count, prev.hex(), seq, f"event {seq} ({kind}) breaks exactly-once: {broken}"
            )
        count, expected = count + 1, seq + 1
    return Audit(count, prev.hex())


def _where(
    after: int, upto: int | None, run_id: str | None, task_id: str | None, kinds: Sequence[str] = ()
) -> tuple[str, list[object]]:
    clauses: list[str] = ["seq > ?"]
    params: list[object] = [after]
    if kinds:
        clauses.append(f"kind IN ({', '.join('?' * len(kinds))})")
        params.extend(kinds)
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


def rows(
    conn: sqlite3.Connection,
    *,
    after: int = 0,
    upto: int | None = None,
    run_id: str | None = None,
    task_id: str | None = None,
    kinds: Sequence[str] = (),
    limit: int | None = None,
) -> list[Row]:
    """Stored events after `after` (and up to `upto`), oldest first."""
    where, params = _where(after, upto, run_id, task_id, kinds)
    sql = f"SELECT seq, ts, run_id, task_id, kind, payload FROM events WHERE {where} ORDER BY seq"
    if limit is not None:
        sql += " LIMIT ?"
        params.append(limit)
    return [
        Row(s, t, r, k_task, kind, msgspec.Raw(p))
        for s, t, r, k_task, kind, p in conn.execute(sql, params)
    ]


def _event_rows(
    conn: sqlite3.Connection,
    after: int,
    upto: int | None,
    run_id: str | None,
    columns: str = "seq, ts, kind, payload",
) -> sqlite3.Cursor:
    where, params = _where(after, upto, run_id, None)
    return conn.execute(f"SELECT {columns} FROM events WHERE {where} ORDER BY seq", params)


def records(
    conn: sqlite3.Connection, *, after: int = 0, upto: int | None = None, run_id: str | None = None
) -> Iterable[ev.Record]:
    """Stored events decoded for the fold, oldest first (streamed)."""
    decode = ev.decode
    for seq, ts, kind, payload in _event_rows(conn, after, upto, run_id):
        yield ev.Record(seq, ts, kind, decode(kind, payload))


def fold(conn: sqlite3.Connection, *, upto: int | None = None) -> st.State:
    """The state the log holds (up to event `upto`): what `replay(records(conn))` gives, faster.

    A second thread reads the log a chunk at a time, each chunk one query that SQLite answers
    without holding the GIL (the payloads joined by newlines, the times as exact integers), while
    this thread decodes each chunk in one call and folds it: reading overlaps folding on a second
    core. A chunk that does not have that shape (a gap in seq, an event of a kind this version
    does not know, a damaged payload, a time out of range) is read and folded row by row.
    """
    last = last_seq(conn)
    upto = last if upto is None else min(upto, last)
    state = st.State()
    with folding.gc_paused(), contextlib.closing(_chunks(conn, upto)) as chunks:
        for lo, hi, chunk in chunks:
            items = _chunk_items(lo, hi, chunk)
            if items is None:
                folding.fold_rows(_event_rows(conn, lo, hi, None, "seq, ts, payload"), state)
            else:
                folding.fold(state, items)
    return state


CHUNK = 20_000  # events per query of `fold`: about 3 MB of payloads
# A time goes as its exact multiple of 2**-24: any double in [2**28, 2**39) (the years 1978 to
# 19,400) is one, and scaling by a power of two is exact. Text would not do: SQLite writes 15
# digits when its own parser reads them back, and that parser is not always correctly rounded
# (1 time in 100,000 read back by Python one ulp away).
_SCALE = 2.0**24
_CHUNK_SQL = f"""
    SELECT count(*), total(ts < {2.0**28} OR ts >= {2.0**39}), CAST(group_concat(payload, char(10)) AS BLOB),
           '[' || group_concat(CAST(ts * {_SCALE} AS INTEGER)) || ']'
    FROM (SELECT ts, payload FROM events WHERE seq > ? AND seq <= ? ORDER BY seq)
"""
_decode_times = msgspec.json.Decoder(list[int]).decode
_unscale = (_SCALE).__rtruediv__  # n -> n / 2**24, exactly
_decode_lines = msgspec.json.Decoder(ev.Event).decode_lines


def _chunk_items(
    lo: int, hi: int, chunk: tuple | None
) -> Iterable[tuple[int, float, ev.Event]] | None:
    """The (seq, ts, event) items of the events in (lo, hi], from one row of _CHUNK_SQL; None
    when the chunk is not in the shape that query assumes (it is then read row by row)."""
    if chunk is None:
        return None
    count, odd_times, payloads, times = chunk
    if count != hi - lo or odd_times or not count:
        return None
    try:
        events = _decode_lines(payloads)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return None
    if len(events) != count:  # a payload with a newline of its own
        return None
    return zip(range(lo + 1, hi + 1), map(_unscale, _decode_times(times)), events)


def _chunks(
    conn: sqlite3.Connection, upto: int
) -> Generator[tuple[int, int, tuple | None], None, None]:
    """(lo, hi, row of _CHUNK_SQL) for each chunk of the events up to `upto`, read ahead by a
    thread of its own on a connection of its own; the row is None when that read failed, and for
    a database with no file (in memory)."""
    bounds = [(lo, min(lo + CHUNK, upto)) for lo in range(0, upto, CHUNK)]
    path = conn.execute("PRAGMA database_list").fetchone()[2]
    if not path or len(bounds) < 2:
        yield from ((lo, hi, None) for lo, hi in bounds)
        return
    ahead: queue.Queue[tuple[int, int, tuple | None] | None] = queue.Queue(maxsize=4)
    stop = threading.Event()

    def read() -> None:
        reader = None
        try:
            for lo, hi in bounds:
                if stop.is_set():
                    return
                try:
                    reader = reader or connect(Path(path), readonly=True)
                    chunk = reader.execute(_CHUNK_SQL, (lo, hi)).fetchone()
                except sqlite3.Error:  # this chunk is read row by row
                    chunk = None
                ahead.put((lo, hi, chunk))
        finally:
            if reader is not None:
                reader.close()
            ahead.put(None)

    thread = threading.Thread(target=read, name="fold-reader", daemon=True)
    thread.start()
    ended = False
    try:
        while (item := ahead.get()) is not None:
            yield item
        ended = True
    finally:
        stop.set()
        while not ended:  # the consumer left early: let the reader's last puts through
            ended = ahead.get() is None
        thread.join()


def last_seq(conn: sqlite3.Connection) -> int:
    (seq,) = conn.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()
    return seq
