"""`orchctl export`: runs, tasks and attempts of a real orchd as plain SQLite tables, upserted."""

from __future__ import annotations

import json
from pathlib import Path

import sqlite_utils

from tests.conftest import Daemon, agent, write_plan


def counts(db_path: Path) -> dict[str, int]:
    db = sqlite_utils.Database(db_path)
    try:
        return {name: db[name].count for name in ("runs", "tasks", "attempts")}
    finally:
        db.close()


def test_export_writes_plain_tables_and_updates_them(orchd: Daemon, tmp_path: Path) -> None:
    plan = write_plan(
        tmp_path / "plan.json",
        {
            "name": "exported",
            "workdir": str(tmp_path),
            "defaults": {
                "agent": "command",
                "max_retries": 1,
                "backoff": {"initial": "0.1s", "jitter": "none"},
            },
            "tasks": [
                {
                    "id": "flaky",
                    "command": agent("flaky", str(tmp_path / "starts"), "1"),
                    "verify": [["true"]],
                },
                {"id": "broken", "command": ["false"], "max_retries": 0},
            ],
        },
    )
    done = orchd.orchctl("submit", str(plan), "--wait", "--json")
    run_id = json.loads(done.stdout)["summary"]["run_id"]
    db_path = tmp_path / "runs.db"
    out = orchd.orchctl("export", run_id, "--db", str(db_path), check=True)
    assert out.stdout.strip() == f"exported 1 run (2 tasks, 3 attempts) to {db_path}"
    assert counts(db_path) == {"runs": 1, "tasks": 2, "attempts": 3}

    db = sqlite_utils.Database(db_path)
    (run,) = db["runs"].rows
    assert (run["run_id"], run["name"], run["state"]) == (run_id, "exported", "failed")
    assert (run["tasks"], run["completed"], run["failed"], run["pending"]) == (2, 1, 1, 0)
    tasks = {t["task_id"]: t for t in db["tasks"].rows}
    assert tasks["flaky"]["state"] == "completed" and tasks["flaky"]["attempts"] == 2
    assert tasks["flaky"]["result"] == "attempt 2: ok"
    assert tasks["broken"]["reason"].startswith("exit code 1")
    attempts = list(db.query("SELECT * FROM attempts WHERE task_id = 'flaky' ORDER BY attempt"))
    assert [(a["attempt"], a["outcome"], a["exit_code"]) for a in attempts] == [
        (1, "retry", 1),
        (2, "success", 0),
    ]
    assert attempts[1]["result"] == "attempt 2: ok" and attempts[1]["duration"] >= 0
    # how its checks went: one column of JSON (its own `result` is not the agent's)
    assert attempts[0]["verify"] is None
    assert json.loads(attempts[1]["verify"])["result"] == "passed"
    assert json.loads(tasks["flaky"]["verify"])["checks"] == 1
    assert db["tasks"].pks == ["run_id", "task_id"]
    assert db["attempts"].pks == ["run_id", "task_id", "attempt"]
    assert db["attempts"].columns_dict["duration"] is float
    assert db["tasks"].columns_dict["cost_usd"] is float  # a type, though no task reported one
    assert [fk.other_table for fk in db["tasks"].foreign_keys] == ["runs"]
    db.close()

    # again: the same rows, not twice as many
    orchd.orchctl("export", run_id, "--db", str(db_path), check=True)
    assert counts(db_path) == {"runs": 1, "tasks": 2, "attempts": 3}
    # the run changes (a retry of the broken task), and a second run comes: updated, added
    orchd.orchctl("retry", run_id, "broken", check=True)
    assert orchd.orchctl("wait", run_id).returncode == 1
    quick = write_plan(
        tmp_path / "quick.json",
        {
            "workdir": str(tmp_path),
            "defaults": {"agent": "command"},
            "tasks": [{"id": "a", "command": ["true"]}],
        },
    )
    assert orchd.orchctl("submit", str(quick), "--wait").returncode == 0
    out = orchd.orchctl("export", "--db", str(db_path), check=True)  # every run
    assert out.stdout.startswith("exported 2 runs (3 tasks, 5 attempts)")
    assert counts(db_path) == {"runs": 2, "tasks": 3, "attempts": 5}
    db = sqlite_utils.Database(db_path)
    assert db["tasks"].get((run_id, "broken"))["attempts"] == 2
    db.close()
    assert orchd.orchctl("export", "nope", "--db", str(db_path)).returncode == 2
