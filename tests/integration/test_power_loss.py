"""Power loss: the log survives a stop at any byte of its write-ahead log; a torn transaction is never half-applied."""

from __future__ import annotations

import shutil
from pathlib import Path

from orchd import events as ev
from orchd import store
from orchd.fold import replay
from tests.conftest import agent, write_plan


def test_a_torn_wal_keeps_whole_transactions_only(make_daemon, tmp_path: Path) -> None:
    plan = write_plan(
        tmp_path / "plan.json",
        {
            "name": "torn",
            "concurrency": 4,
            "workdir": str(tmp_path),
            "defaults": {
                "agent": "command",
                "max_retries": 1,
                "backoff": {"initial": "10ms", "jitter": "none"},
            },
            "tasks": [
                {"id": f"t{i}", "command": agent("flaky", str(tmp_path / "flaky"), str(i % 2))}
                for i in range(20)
            ],
        },
    )
    orchd = make_daemon()
    orchd.orchctl("submit", str(plan), "--wait", check=True)
    orchd.kill()  # no checkpoint at exit: the whole run is in the WAL
    db = orchd.home / "state" / "events.db"
    wal = Path(f"{db}-wal")
    size = wal.stat().st_size
    assert size > 4096, "the run should still be in the write-ahead log"
    full = _events(db, tmp_path / "full")
    # cut the WAL at many points, as a power loss mid-write would leave it (frames are 4 KiB + 24 bytes)
    cuts = sorted({size - 1, size - 100, size - 4120, size // 2, size // 3 + 7, 32 + 24 + 100, 32})
    for cut in cuts:
        events = _events(db, tmp_path / f"cut{cut}", wal_bytes=cut)
        assert [r.seq for r in events] == [r.seq for r in full[: len(events)]], (
            "not a prefix of the log"
        )
        _check_whole_transactions(events)
    assert len(full) > len(_events(db, tmp_path / "half", wal_bytes=size // 2))


def _events(db: Path, where: Path, wal_bytes: int | None = None) -> list[ev.Record]:
    """The records of a copy of the log whose WAL is cut to `wal_bytes`; audit and replay must pass."""
    where.mkdir()
    shutil.copy(db, where / "events.db")
    wal = Path(f"{db}-wal").read_bytes()
    (where / "events.db-wal").write_bytes(wal if wal_bytes is None else wal[:wal_bytes])
    conn = store.connect(where / "events.db")
    try:
        store.migrate(
            conn
        )  # as orchd does on start: a cut before the first commit leaves an empty log
        result = store.audit(conn)
        assert result.first_bad is None, result.problem
        records = list(store.records(conn))
        replay(records)
        return records
    finally:
        conn.close()


def _check_whole_transactions(records: list[ev.Record]) -> None:
    """Events appended together stay together: an attempt's end and its task's end, a retry and its reason."""
    kinds = [(type(r.event).__name__, getattr(r.event, "task_id", None)) for r in records]
    for i, (kind, task) in enumerate(kinds):
        if kind == "AttemptFinished":
            assert (
                i + 1 < len(kinds)
                and kinds[i + 1][1] == task
                and kinds[i + 1][0]
                in ("TaskCompleted", "TaskFailed", "TaskRetrying", "TaskCancelled")
            ), f"half a transaction at {i}"
