"""Restarting orchd costs no running session: `orchctl daemon stop` leaves them with the keeper,
the next start takes them over; `--end-sessions` ends them (interrupted: run again at the next
start, no retry spent); `orchctl daemon restart` during a run changes nothing of its outcome; the
durable timers (backoff, park, a provider's hold) carry over."""

from __future__ import annotations

import collections
import json
import os
import sys
from pathlib import Path
from typing import Any

from orchd import protocol as p
from tests.conftest import AGENTS, Daemon, agent, wait_until, write_plan
from tests.integration.test_crash import _ledger
from tests.integration.test_spine import gone


def submit(orchd: Daemon, tmp_path: Path, tasks: list[dict], **plan: Any) -> str:
    path = write_plan(
        tmp_path / "plan.json",
        {
            "name": "restart",
            "concurrency": 3,
            "workdir": str(tmp_path),
            "defaults": {"agent": "command", "max_retries": 0},
            "tasks": tasks,
            **plan,
        },
    )
    return json.loads(orchd.orchctl("submit", str(path), "--json", check=True).stdout)["run_id"]


def events(orchd: Daemon, run_id: str | None = None) -> list[dict]:
    which = ["--run", run_id] if run_id else []
    lines = orchd.orchctl("events", *which, "--json", check=True).stdout.splitlines()
    return [json.loads(line) for line in lines]


def tasks(orchd: Daemon, run_id: str) -> dict[str, dict]:
    view = json.loads(orchd.orchctl("status", run_id, "--json", check=True).stdout)["runs"][0]
    return {t["id"]: t for t in view["tasks"]}


def running_pids(orchd: Daemon, run_id: str, n: int) -> list[int] | None:
    """The pids of the run's running attempts, once `n` run (and their pids are recorded)."""
    pids = [t["pid"] for t in tasks(orchd, run_id).values() if t["state"] == "running"]
    return pids if len(pids) == n and all(pids) else None


def finished(orchd: Daemon, run_id: str) -> bool:
    with orchd.client() as client:
        return client.call(p.Status(run=run_id)).runs[0].summary.state != "running"


def stop(orchd: Daemon, *args: str) -> str:
    """`orchctl daemon stop ARGS`; what it said (and the daemon process reaped)."""
    said = orchd.orchctl("daemon", "stop", *args, check=True).stdout
    assert orchd.proc is not None
    orchd.proc.wait(timeout=30)
    return said


def consistent(orchd: Daemon) -> None:
    assert orchd.orchctl("audit").returncode == 0
    status = json.loads(orchd.orchctl("status", "--json", check=True).stdout)
    assert json.loads(orchd.orchctl("replay", "--json", check=True).stdout) == status


def gated(gate: Path, n: int) -> list[dict]:
    return [{"id": f"t{i}", "command": agent("gate", str(gate), f"t{i} works")} for i in range(n)]


def test_stop_leaves_sessions_running_and_the_next_start_takes_them_over(
    make_daemon, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    orchd = make_daemon()
    run_id = submit(orchd, tmp_path, gated(gate, 3))
    pids = wait_until(lambda: running_pids(orchd, run_id, 3), what="three sessions to run")

    said = stop(orchd)
    assert "3 sessions keep running under the keeper" in said, said
    assert "`orchctl daemon stop --end-sessions` ends them" in said
    assert not any(gone(pid) for pid in pids)  # nothing killed them

    orchd.start()
    gate.touch()
    wait_until(lambda: finished(orchd, run_id), what="the run to finish")
    assert {t["state"]: t["attempts"] for t in tasks(orchd, run_id).values()} == {"completed": 1}
    log = events(orchd)
    kinds = collections.Counter(e["kind"] for e in log)
    assert kinds["AttemptLaunching"] == 3 and kinds["AttemptAdopted"] == 3
    (stopped,) = [e["event"] for e in log if e["kind"] == "DaemonStopped"]
    assert stopped["left_running"] == 3 and "ended" not in stopped
    first, second = [e for e in log if e["kind"] == "DaemonStarted"]
    assert first["run_id"] == "" and "previous" not in first["event"]  # the first start of a log
    assert second["event"]["previous"] == "stopped" and second["event"]["running"] == 3
    story = orchd.orchctl("why", run_id, "t0", check=True).stdout
    assert story.startswith(f"t0 of {run_id}: completed on attempt 1, across 1 restart of orchd")
    assert "stopped: sessions 3 kept running" in story
    assert "taken over: still running as pid" in story
    listed = orchd.orchctl("events", check=True).stdout
    assert " - - DaemonStopped version=" in listed
    consistent(orchd)


def test_stop_end_sessions_ends_them_and_the_next_start_runs_them_again(
    make_daemon, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    orchd = make_daemon()
    run_id = submit(orchd, tmp_path, gated(gate, 4))  # three run, one waits for a slot
    pids = wait_until(lambda: running_pids(orchd, run_id, 3), what="three sessions to run")

    said = stop(orchd, "--end-sessions")
    assert "3 sessions ended: their tasks run again at the next start, no retry spent" in said
    for pid in pids:  # ended before orchd stopped (TERM, then KILL)
        assert gone(pid), pid

    orchd.start()
    log = events(orchd)
    interrupted = [e for e in log if e["kind"] == "AttemptFinished"]
    assert [e["event"]["outcome"] for e in interrupted] == ["interrupted"] * 3
    retrying = [e["event"] for e in log if e["kind"] == "TaskRetrying"]
    assert len(retrying) == 3 and not any(r.get("spends_retry", True) for r in retrying)
    (stopped,) = [e["event"] for e in log if e["kind"] == "DaemonStopped"]
    assert stopped["ended"] == 3 and "left_running" not in stopped
    gate.touch()
    wait_until(lambda: finished(orchd, run_id), what="the run to finish")
    view = tasks(orchd, run_id)
    assert [t["state"] for t in view.values()] == ["completed"] * 4  # max_retries 0: none spent
    assert sorted(t["attempts"] for t in view.values()) == [1, 2, 2, 2]
    story = orchd.orchctl("why", run_id, "t0", check=True).stdout
    assert "attempt 1 was interrupted: ended as orchd stopped" in story.splitlines()[0]
    consistent(orchd)


def test_end_sessions_after_a_stop_ends_what_it_left_running(make_daemon, tmp_path: Path) -> None:
    """The hint a stop gives holds once orchd is gone: `--end-sessions` takes the sessions over
    (an orchd that starts nothing), ends them and stops."""
    gate = tmp_path / "gate"
    orchd = make_daemon()
    run_id = submit(orchd, tmp_path, gated(gate, 2))
    pids = wait_until(lambda: running_pids(orchd, run_id, 2), what="two sessions to run")
    assert "2 sessions keep running" in stop(orchd)

    said = orchd.orchctl("daemon", "stop", "--end-sessions", check=True).stdout
    assert said.startswith("orchd is not running: 2 sessions ended: their tasks run again"), said
    assert all(gone(pid) for pid in pids)
    assert orchd.orchctl("daemon", "status").returncode == 3  # nothing left running

    gate.touch()
    orchd.start()
    wait_until(lambda: finished(orchd, run_id), what="the run to finish")
    assert [(t["state"], t["attempts"]) for t in tasks(orchd, run_id).values()] == [
        ("completed", 2)
    ] * 2
    daemon = [e for e in events(orchd) if e["kind"].startswith("Daemon")]
    ending = [e["event"] for e in daemon[2:4]]  # the orchd that only ended the sessions
    assert [e["kind"] for e in daemon] == ["DaemonStarted", "DaemonStopped"] * 2 + ["DaemonStarted"]
    assert ending[0]["running"] == 2 and ending[1]["ended"] == 2
    launched = [e for e in events(orchd, run_id) if e["kind"] == "AttemptLaunching"]
    assert all(e["seq"] > daemon[3]["seq"] for e in launched[2:])  # it started none


def test_five_restarts_during_twenty_running_tasks_cost_no_attempt(
    make_daemon, tmp_path: Path
) -> None:
    """The issue's acceptance: `orchctl daemon restart` 5 times while 20 tasks of a few seconds
    run; every task completes with exactly one attempt, each agent ran once, none overlapped."""
    ledger = tmp_path / "ledger"
    seconds = [2.0 + (i % 5) * 0.75 for i in range(20)]  # 2 to 5 s
    work = [
        {"id": f"t{i}", "command": agent("ledger", str(ledger), f"{s:.2f}")}
        for i, s in enumerate(seconds)
    ]
    orchd = make_daemon()
    run_id = submit(orchd, tmp_path, work, concurrency=8)
    for _ in range(5):
        with orchd.client() as client:  # let some sessions start or end between two restarts
            seq = client.call(p.Ping()).seq
            client.call(p.Events(after=seq + 2, wait=10.0, limit=1))
        said = orchd.orchctl("daemon", "restart", check=True).stdout
        assert said.startswith("orchd 0.1.0 running (pid "), said
    wait_until(lambda: finished(orchd, run_id), timeout=120, what="the run to finish")

    view = tasks(orchd, run_id)
    assert {(t["state"], t["attempts"]) for t in view.values()} == {("completed", 1)}, view
    log = events(orchd)
    kinds = collections.Counter(e["kind"] for e in log)
    assert kinds["AttemptLaunching"] == 20 and kinds["TaskCompleted"] == 20
    assert kinds["DaemonStarted"] == 6 and kinds["DaemonStopped"] == 5
    notes = _ledger(ledger)
    starts = collections.Counter(task for what, task, *_ in notes if what == "start")
    assert starts == {f"t{i}": 1 for i in range(20)}  # each agent ran once
    assert not [n for n in notes if n[0] == "overlap"]
    left = sum(e["event"].get("left_running", 0) for e in log if e["kind"] == "DaemonStopped")
    print(
        f"\n5 restarts during 20 tasks: {left} sessions kept running across them, "
        f"{kinds['AttemptAdopted']} taken over, 20 attempts in all"
    )
    assert left >= 5 and kinds["AttemptAdopted"] == left
    consistent(orchd)


def test_backoff_park_and_a_provider_hold_carry_over_a_restart(make_daemon, tmp_path: Path) -> None:
    """A task waiting out its backoff, one parked by a usage limit, and one waiting for the hold of
    that limit's provider: after `orchctl daemon restart` each waits for the same time, and none
    starts before it."""
    bin_dir = tmp_path / "bin"  # a stand-in `claude` that hits a usage limit on its first attempt
    bin_dir.mkdir()
    claude = bin_dir / "claude"
    claude.write_text(
        f"#!{sys.executable}\nimport runpy\n"
        f"runpy.run_path({str(AGENTS / 'limited.py')!r}, run_name='__main__')\n"
    )
    claude.chmod(0o755)
    orchd = make_daemon()
    orchd.env["PATH"] = f"{bin_dir}:{os.environ['PATH']}"
    orchd.stop()
    orchd.start()
    work = [  # one at a time: `held` starts only after `parked` hit the limit that holds it
        {"id": "parked", "agent": "claude", "prompt": "limit 8"},
        {"id": "backoff", "command": agent("flaky", str(tmp_path / "flaky"), "1")},
        {"id": "held", "agent": "claude", "prompt": "work"},
    ]
    run_id = submit(
        orchd,
        tmp_path,
        work,
        concurrency=1,
        isolation="none",
        defaults={
            "agent": "command",
            "max_retries": 1,
            "backoff": {"initial": "8s", "jitter": "none"},
        },
    )

    def waiting() -> dict[str, Any] | None:
        view = tasks(orchd, run_id)
        if view["backoff"]["state"] == view["parked"]["state"] == "retrying":
            return view if view["held"]["held"] else None
        return None

    before = wait_until(waiting, what="a backoff, a park and a hold")
    said = orchd.orchctl("daemon", "restart", check=True).stdout
    assert "orchd 0.1.0 running" in said
    after = tasks(orchd, run_id)
    for task in ("backoff", "parked"):  # the same due time (unless it passed meanwhile)
        assert after[task]["state"] != "retrying" or after[task]["due_at"] == before[task]["due_at"]
    wait_until(lambda: finished(orchd, run_id), timeout=60, what="the run to finish")
    view = tasks(orchd, run_id)
    assert {t: v["state"] for t, v in view.items()} == dict.fromkeys(view, "completed")
    log = events(orchd, run_id)
    (hold,) = [e["event"] for e in log if e["kind"] == "ProviderHeld"]
    launched = {
        (e["task_id"], e["event"]["attempt"]): e["ts"]
        for e in log
        if e["kind"] == "AttemptLaunching"
    }
    assert launched[("backoff", 2)] >= before["backoff"]["due_at"]
    assert launched[("parked", 2)] >= before["parked"]["due_at"]
    assert launched[("held", 1)] >= hold["until"]  # the hold outlived the restart
    assert view["parked"]["attempts"] == 2 and view["held"]["attempts"] == 1
    consistent(orchd)
