"""Snapshots (orchd/snapshot.py): a start folds only the log's tail, and never trusts a snapshot the log
disagrees with."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import msgspec

from orchd import snapshot
from tests.conftest import write_plan


def _plan(tmp_path: Path, name: str) -> Path:
    return write_plan(tmp_path / f"{name}.json", {
        "name": name, "workdir": str(tmp_path), "defaults": {"agent": "command", "max_retries": 0},
        "tasks": [{"id": f"t{i}", "command": ["sh", "-c", f"exit {i % 2}"]} for i in range(6)]})


def _replayed(orchd) -> str:
    return [line for line in orchd.log().splitlines() if "replayed" in line][-1]


def test_a_clean_stop_leaves_a_snapshot_and_the_next_start_folds_only_the_tail(make_daemon, tmp_path: Path,
                                                                                 orch_home: Path) -> None:
    orchd = make_daemon()
    orchd.orchctl("submit", str(_plan(tmp_path, "one")), "--wait")
    before = json.loads(orchd.orchctl("status", "--json", check=True).stdout)
    orchd.stop()
    snap = orch_home / "state" / "state.snapshot"
    assert snap.exists() and oct(snap.stat().st_mode & 0o777) == "0o600"

    orchd.start()
    assert "replayed 0 events after a snapshot at event" in _replayed(orchd)
    assert json.loads(orchd.orchctl("status", "--json", check=True).stdout)["runs"] == before["runs"]
    orchd.orchctl("submit", str(_plan(tmp_path, "two")), "--wait")
    orchd.kill()  # a crash: the snapshot stays where the clean stop left it
    orchd.start()
    assert "after a snapshot at event" in _replayed(orchd) and "replayed 0 events" not in _replayed(orchd)
    status = json.loads(orchd.orchctl("status", "--json", check=True).stdout)
    assert status == json.loads(orchd.orchctl("replay", "--json", check=True).stdout)  # the log alone agrees
    assert [r["summary"]["counts"]["failed"] for r in status["runs"]] == [3, 3]


def test_a_snapshot_the_log_does_not_back_is_ignored(make_daemon, tmp_path: Path, orch_home: Path) -> None:
    orchd = make_daemon()
    orchd.orchctl("submit", str(_plan(tmp_path, "one")), "--wait")
    orchd.stop()
    snap = orch_home / "state" / "state.snapshot"
    good = snap.read_bytes()
    cases = {
        "garbage": b"\x00not a snapshot",
        "another version": _edited(good, orch="0.0.1"),
        "another log": _edited(good, hash=b"\x01" * 32),
        "past the log's end": _edited(good, seq=10**9),
    }
    for case, data in cases.items():
        snap.write_bytes(data)
        orchd.start()
        assert "after a snapshot" not in _replayed(orchd), case  # the whole log, folded again
        assert json.loads(orchd.orchctl("status", "--json", check=True).stdout) == \
            json.loads(orchd.orchctl("replay", "--json", check=True).stdout), case
        orchd.kill()  # no clean stop: the bad snapshot stays for the next case to replace


def test_a_snapshot_holds_the_fold_of_the_log_up_to_its_event(make_daemon, tmp_path: Path,
                                                              orch_home: Path) -> None:
    orchd = make_daemon()
    orchd.orchctl("submit", str(_plan(tmp_path, "one")), "--wait")
    orchd.stop()
    conn = sqlite3.connect(orch_home / "state" / "events.db")
    try:
        state = snapshot.load(orch_home / "state" / "state.snapshot", conn)
        from orchd import state as st
        from orchd import store

        assert state is not None and state == st.replay(store.records(conn))
    finally:
        conn.close()


def _edited(data: bytes, **fields: object) -> bytes:
    snap = msgspec.msgpack.decode(data, type=snapshot.Snapshot)
    return msgspec.msgpack.encode(msgspec.structs.replace(snap, **fields))
