"""logs, retry, events, results and the --json contracts, against a real orchd."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest

from orchd import protocol as p
from tests.conftest import ROOT, Daemon, agent, wait_until, write_plan


def submit(orchd: Daemon, plan: Path, *args: str) -> subprocess.CompletedProcess:
    return orchd.orchctl("submit", str(plan), *args, timeout=120)


def test_logs_follow_delivers_every_line_once(orchd: Daemon, tmp_path: Path) -> None:
    plan = write_plan(
        tmp_path / "plan.json",
        {
            "name": "logs",
            "workdir": str(tmp_path),
            "defaults": {"agent": "command", "max_retries": 0},
            "tasks": [{"id": "count", "command": agent("count", "2000")}],
        },
    )
    run_id = json.loads(submit(orchd, plan, "--json").stdout)["run_id"]
    wait_until(
        lambda: orchd.orchctl("logs", run_id, "count").returncode == 0, what="the attempt to start"
    )
    follow = orchd.orchctl("logs", run_id, "count", "-f", timeout=60)
    assert follow.returncode == 0, follow.stderr
    assert follow.stdout.splitlines() == [f"line {i}" for i in range(1, 2001)]
    again = orchd.orchctl("logs", run_id, "count", "--attempt", "1")
    assert again.stdout == follow.stdout
    missing = orchd.orchctl("logs", run_id, "count", "--attempt", "7")
    assert missing.returncode == 2 and "no attempt 7" in missing.stderr


def test_retry_runs_failed_tasks_again(orchd: Daemon, tmp_path: Path) -> None:
    marker = tmp_path / "ok"
    script = "import os,sys; sys.exit(0 if os.path.exists(sys.argv[1]) else 4)"
    plan = write_plan(
        tmp_path / "plan.json",
        {
            "name": "again",
            "workdir": str(tmp_path),
            "defaults": {"agent": "command", "max_retries": 0},
            "tasks": [
                {"id": "needs-marker", "command": [sys.executable, "-c", script, str(marker)]},
                {"id": "fine", "command": ["true"]},
            ],
        },
    )
    first = submit(orchd, plan, "--wait", "--json")
    assert first.returncode == 1
    run_id = json.loads(first.stdout)["summary"]["run_id"]
    marker.write_text("")
    out = orchd.orchctl("retry", run_id, check=True)
    assert "retrying 1 task" in out.stdout
    watched = orchd.orchctl("watch", run_id, timeout=60)
    assert watched.returncode == 0, watched.stdout + watched.stderr
    view = json.loads(orchd.orchctl("results", run_id, "--json", check=True).stdout)
    tasks = {t["id"]: t for t in view["tasks"]}
    assert tasks["needs-marker"]["state"] == "completed" and tasks["needs-marker"]["attempts"] == 2
    assert tasks["fine"]["attempts"] == 1
    assert orchd.orchctl("retry", run_id, "nope").returncode == 2
    # why tells what became of the first attempt, and the fresh budget counts from the retry
    assert tasks["needs-marker"]["max_attempts"] == 2
    lines = orchd.orchctl("why", run_id, "needs-marker", check=True).stdout.splitlines()
    assert re.fullmatch(
        rf"needs-marker of {run_id}: completed on attempt 2 \(attempt 1 failed: exit code 4 "
        r"\(gave up after 1 attempt\); retried by `orchctl retry` at \d\d:\d\d\)",
        lines[0],
    ), lines[0]
    assert any(
        line.endswith("  -> `orchctl retry`: run again with a fresh retry budget") for line in lines
    )


def test_events_history_and_json(orchd: Daemon, tmp_path: Path) -> None:
    plan = write_plan(
        tmp_path / "plan.json",
        {
            "name": "ev",
            "workdir": str(tmp_path),
            "defaults": {"agent": "command", "max_retries": 0},
            "tasks": [{"id": "a", "command": ["true"]}],
        },
    )
    run_id = json.loads(submit(orchd, plan, "--wait", "--json").stdout)["summary"]["run_id"]
    lines = orchd.orchctl("events", "--run", run_id, "--json", check=True).stdout.splitlines()
    kinds = [json.loads(line)["kind"] for line in lines]
    assert kinds == [
        "RunSubmitted",
        "AttemptLaunching",
        "AttemptStarted",
        "AttemptFinished",
        "TaskCompleted",
        "RunFinished",
    ]
    seqs = [json.loads(line)["seq"] for line in lines]
    assert seqs == sorted(seqs)
    later = orchd.orchctl(
        "events", "--from", str(seqs[2]), "--json", check=True
    ).stdout.splitlines()
    assert [json.loads(line)["seq"] for line in later] == seqs[3:]
    at = json.loads(orchd.orchctl("replay", "--at", str(seqs[2]), "--json", check=True).stdout)
    assert at["runs"][0]["tasks"][0]["state"] == "running"


def test_json_outputs_match_their_schema_types(orchd: Daemon, tmp_path: Path) -> None:
    plan = write_plan(
        tmp_path / "plan.json",
        {
            "workdir": str(tmp_path),
            "defaults": {"agent": "command"},
            "tasks": [{"id": "a", "command": ["true"]}],
        },
    )
    submit(orchd, plan, "--wait", "--json")
    # strict decoding into the types the schemas are generated from
    msgspec.json.decode(
        orchd.orchctl("status", "--json", check=True).stdout, type=p.StatusReply, strict=True
    )
    msgspec.json.decode(
        orchd.orchctl("replay", "--json", check=True).stdout, type=p.StatusReply, strict=True
    )
    msgspec.json.decode(
        orchd.orchctl("runs", "--json", check=True).stdout, type=p.RunsReply, strict=True
    )
    msgspec.json.decode(orchd.orchctl("daemon", "status", "--json", check=True).stdout, type=p.Pong)


def test_unknown_run_and_task_are_bad_input(orchd: Daemon) -> None:
    assert orchd.orchctl("status", "nope").returncode == 2
    assert orchd.orchctl("cancel", "nope").returncode == 2
    assert orchd.orchctl("logs", "nope", "x").returncode == 2


def test_retrying_task_is_not_started_early_after_restart(make_daemon, tmp_path: Path) -> None:
    orchd = make_daemon()
    log = tmp_path / "attempts"
    plan = write_plan(
        tmp_path / "plan.json",
        {
            "name": "later",
            "workdir": str(tmp_path),
            "defaults": {
                "agent": "command",
                "max_retries": 1,
                "backoff": {"initial": "3s", "jitter": "none"},
            },
            "tasks": [{"id": "flaky", "command": agent("flaky", str(log), "1")}],
        },
    )
    run_id = json.loads(submit(orchd, plan, "--json").stdout)["run_id"]
    with orchd.client() as client:

        def retrying():
            task = client.call(p.Status(run=run_id)).runs[0].tasks[0]
            return task if task.state == "retrying" else None

        due = wait_until(retrying, what="the task to be retrying").due_at
    orchd.kill()
    orchd.start()
    assert orchd.orchctl("watch", run_id, timeout=60).returncode == 0
    starts = [float(line.split()[1]) for line in log.read_text().splitlines()]
    assert len(starts) == 2 and starts[1] >= due


@pytest.mark.skipif(
    shutil.which("systemd-analyze") is None and not os.environ.get("CI"),
    reason="systemd-analyze is not installed",
)
def test_systemd_unit_verifies() -> None:
    result = subprocess.run(
        ["systemd-analyze", "verify", str(ROOT / "systemd" / "orchd.service")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "orchd.service" not in result.stderr, result.stderr  # no warnings about the unit


def test_audit_verifies_the_chain_and_names_a_tampered_event(orchd: Daemon, tmp_path: Path) -> None:
    import sqlite3

    plan = write_plan(
        tmp_path / "plan.json",
        {
            "workdir": str(tmp_path),
            "defaults": {"agent": "command"},
            "tasks": [{"id": "a", "command": ["true"]}, {"id": "b", "command": ["true"]}],
        },
    )
    submit(orchd, plan, "--wait", "--json")
    ok = orchd.orchctl("audit")
    assert ok.returncode == 0 and ok.stdout.startswith("ok:"), ok.stdout + ok.stderr
    db = sqlite3.connect(orchd.home / "state" / "events.db")
    db.execute("UPDATE events SET payload = replace(payload, 'attempt', 'attempt ') WHERE seq = 4")
    db.commit()
    db.close()
    bad = orchd.orchctl("audit", "--json")
    assert bad.returncode == 1
    assert json.loads(bad.stdout)["first_bad"] == 4


def test_a_log_from_the_first_version_is_migrated(make_daemon, orch_home: Path) -> None:
    state = orch_home / "state"
    state.mkdir(parents=True)
    shutil.copy(ROOT / "tests" / "fixtures" / "events-v1.db", state / "events.db")
    orchd = make_daemon()
    view = json.loads(orchd.orchctl("status", "v1-000001", "--json", check=True).stdout)["runs"][0]
    assert view["summary"]["state"] == "failed"
    assert {t["id"]: t["state"] for t in view["tasks"]} == {"a": "completed", "b": "failed"}
    assert orchd.orchctl("audit").returncode == 0
    kinds = [
        json.loads(line)["kind"]
        for line in orchd.orchctl("events", "--json", check=True).stdout.splitlines()
    ]
    # kept, and skipped by the fold; then this orchd's start
    assert kinds[-2:] == ["FromTheFuture", "DaemonStarted"]


def test_why_tells_the_story_of_a_task(orchd: Daemon, tmp_path: Path) -> None:
    plan = write_plan(
        tmp_path / "plan.json",
        {
            "workdir": str(tmp_path),
            "defaults": {
                "agent": "command",
                "max_retries": 2,
                "backoff": {"initial": "0.1s", "jitter": "none"},
            },
            "tasks": [{"id": "flaky", "command": agent("flaky", str(tmp_path / "log"), "1")}],
        },
    )
    run_id = json.loads(submit(orchd, plan, "--wait", "--json").stdout)["summary"]["run_id"]
    story = orchd.orchctl("why", run_id, "flaky", check=True).stdout
    lines = story.splitlines()
    assert lines[0] == (
        f"flaky of {run_id}: completed on attempt 2 (attempt 1 failed: exit code 1; retried after 0.1s)"
    )
    assert any("attempt 1 launched" in line for line in lines)
    assert any("exit 1 -> retry: exit code 1" in line for line in lines)
    assert any("-> next attempt in 0.1s" in line for line in lines)
    assert any("exit 0 -> success" in line for line in lines)
    assert lines[-1] == "next: nothing: it is completed"
    assert orchd.orchctl("why", run_id, "nope").returncode == 2
