"""The spine against a real orchd: caps, retries with backoff, timeouts, cancel, fairness, replay."""

from __future__ import annotations

import json
import os
from pathlib import Path

from orchd import protocol as p
from tests.conftest import Daemon, agent, wait_until, write_plan


def submit_wait(orchd: Daemon, plan: Path) -> tuple[int, dict]:
    result = orchd.orchctl("submit", str(plan), "--wait", "--json", timeout=300)
    assert result.stdout, result.stderr
    return result.returncode, json.loads(result.stdout)


def tasks_by_id(view: dict) -> dict[str, dict]:
    return {t["id"]: t for t in view["tasks"]}


def peak_concurrency(log: Path) -> int:
    """The most agents alive at once, from their own start/end notes."""
    points = []
    for line in log.read_text().splitlines():
        what, _task, _attempt, mono, *_ = line.split()
        points.append((float(mono), 1 if what == "start" else -1))
    # at equal times an end comes first: it cannot overlap a start at the same instant
    points.sort(key=lambda x: (x[0], x[1]))
    live = peak = 0
    for _, delta in points:
        live += delta
        peak = max(peak, live)
    return peak


def test_concurrency_cap_is_exact(orchd: Daemon, tmp_path: Path) -> None:
    log = tmp_path / "notes"
    plan = write_plan(
        tmp_path / "plan.json",
        {
            "name": "cap",
            "concurrency": 5,
            "workdir": str(tmp_path),
            "defaults": {"agent": "command", "max_retries": 0},
            "tasks": [
                {"id": f"t{i}", "command": agent("record", str(log), "0.3")} for i in range(50)
            ],
        },
    )
    code, view = submit_wait(orchd, plan)
    assert code == 0, view
    assert view["summary"]["counts"]["completed"] == 50
    assert peak_concurrency(log) == 5


def test_retries_with_backoff_then_success(orchd: Daemon, tmp_path: Path) -> None:
    log = tmp_path / "attempts"
    plan = write_plan(
        tmp_path / "plan.json",
        {
            "name": "flaky",
            "workdir": str(tmp_path),
            "defaults": {
                "agent": "command",
                "max_retries": 3,
                "backoff": {"initial": "0.3s", "factor": 2.0, "max": "10s", "jitter": "none"},
            },
            "tasks": [{"id": "flaky", "command": agent("flaky", str(log), "2")}],
        },
    )
    code, view = submit_wait(orchd, plan)
    assert code == 0
    task = tasks_by_id(view)["flaky"]
    assert task["state"] == "completed" and task["attempts"] == 3
    starts = [float(line.split()[1]) for line in log.read_text().splitlines()]
    gaps = [b - a for a, b in zip(starts, starts[1:])]
    assert gaps[0] >= 0.3 and gaps[1] >= 0.6, gaps  # backoff delays 0.3 s, then 0.6 s


def test_retry_budget_exhausted_fails_task_not_siblings(orchd: Daemon, tmp_path: Path) -> None:
    log = tmp_path / "notes"
    plan = write_plan(
        tmp_path / "plan.json",
        {
            "name": "budget",
            "workdir": str(tmp_path),
            "defaults": {
                "agent": "command",
                "max_retries": 2,
                "backoff": {"initial": "0.05s", "jitter": "none"},
            },
            "tasks": [
                {"id": "bad", "command": agent("record", str(log), "0", "3")},
                {"id": "good1", "command": agent("record", str(log), "0.1")},
                {"id": "good2", "command": agent("record", str(log), "0.1")},
            ],
        },
    )
    code, view = submit_wait(orchd, plan)
    assert code == 1
    assert view["summary"]["state"] == "failed"
    tasks = tasks_by_id(view)
    assert tasks["bad"]["state"] == "failed" and tasks["bad"]["attempts"] == 3
    assert "exit code 3" in tasks["bad"]["reason"]
    assert tasks["good1"]["state"] == tasks["good2"]["state"] == "completed"
    starts = [line for line in log.read_text().splitlines() if line.startswith("start bad")]
    assert len(starts) == 3


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # a zombie counts as gone: it runs nothing
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z"
    except OSError:
        return True


def test_hanging_agent_is_killed_at_timeout_with_its_group(orchd: Daemon, tmp_path: Path) -> None:
    pidfile = tmp_path / "pids"
    plan = write_plan(
        tmp_path / "plan.json",
        {
            "name": "hang",
            "workdir": str(tmp_path),
            "defaults": {"agent": "command", "max_retries": 0, "timeout": "1s"},
            "tasks": [{"id": "hang", "command": agent("hang", str(pidfile))}],
        },
    )
    code, view = submit_wait(orchd, plan)
    assert code == 1
    task = tasks_by_id(view)["hang"]
    assert task["state"] == "failed" and "timed out" in task["reason"]
    pids = [int(x) for x in pidfile.read_text().split()]
    for pid in pids:
        wait_until(lambda: gone(pid), timeout=10, what=f"pid {pid} to be gone")


def test_cancel_running_run_leaves_no_process(orchd: Daemon, tmp_path: Path) -> None:
    plan = write_plan(
        tmp_path / "plan.json",
        {
            "name": "cancel",
            "concurrency": 3,
            "workdir": str(tmp_path),
            "defaults": {"agent": "command", "max_retries": 0},
            "tasks": [
                {"id": f"h{i}", "command": agent("hang", str(tmp_path / f"pids{i}"))}
                for i in range(6)
            ],
        },
    )
    result = orchd.orchctl("submit", str(plan), "--json", check=True)
    run_id = json.loads(result.stdout)["run_id"]
    wait_until(lambda: len(list(tmp_path.glob("pids?"))) == 3, what="three agents running")
    orchd.orchctl("cancel", run_id, check=True)
    with orchd.client() as client:

        def ended():
            view = client.call(p.Status(run=run_id)).runs[0]
            return view if view.summary.state != "running" else None

        view = wait_until(ended, timeout=30, what="the run to end")
    assert view.summary.state == "cancelled"
    assert {t.state for t in view.tasks} == {"cancelled"}
    for pidfile in tmp_path.glob("pids?"):
        for pid in map(int, pidfile.read_text().split()):
            wait_until(lambda: gone(pid), timeout=10, what=f"pid {pid} to be gone")


def test_two_runs_share_the_global_cap(make_daemon, tmp_path: Path) -> None:
    orchd = make_daemon(max_sessions=4)
    log = tmp_path / "notes"
    plans = []
    for name in ("a", "b"):
        plans.append(
            write_plan(
                tmp_path / f"{name}.json",
                {
                    "name": name,
                    "concurrency": 4,
                    "workdir": str(tmp_path),
                    "defaults": {"agent": "command", "max_retries": 0},
                    "tasks": [
                        {"id": f"{name}{i}", "command": agent("record", str(log), "0.2")}
                        for i in range(12)
                    ],
                },
            )
        )
    ids = [
        json.loads(orchd.orchctl("submit", str(pl), "--json", check=True).stdout)["run_id"]
        for pl in plans
    ]
    with orchd.client() as client:

        def done():
            runs = client.call(p.Status()).runs
            return all(r.summary.state == "completed" for r in runs) and len(runs) == 2

        wait_until(done, timeout=120, what="both runs to complete")
    assert peak_concurrency(log) <= 4
    # fairness: b's first task starts before a has finished all of its tasks
    lines = [line.split() for line in log.read_text().splitlines()]
    first_b = min(float(x[3]) for x in lines if x[0] == "start" and x[1].startswith("b"))
    last_a_end = max(float(x[3]) for x in lines if x[0] == "end" and x[1].startswith("a"))
    assert first_b < last_a_end
    # and shares it evenly: while both runs have tasks waiting, they run two and two (a does not
    # keep its slots for its own next tasks while b waits)
    running, even = {"a": 0, "b": 0}, False
    for kind, task, *_ in sorted(lines, key=lambda x: (float(x[3]), x[0] == "start")):
        running[task[0]] += 1 if kind == "start" else -1
        even = even or running == {"a": 2, "b": 2}
    assert even, lines
    assert len(ids) == 2


def test_replay_equals_status(orchd: Daemon, tmp_path: Path) -> None:
    log = tmp_path / "attempts"
    plan = write_plan(
        tmp_path / "plan.json",
        {
            "name": "replay",
            "workdir": str(tmp_path),
            "defaults": {
                "agent": "command",
                "max_retries": 1,
                "backoff": {"initial": "0.05s", "jitter": "none"},
            },
            "tasks": [
                {"id": "ok", "command": ["true"]},
                {"id": "flaky", "command": agent("flaky", str(log), "1")},
                {"id": "bad", "command": ["false"]},
            ],
        },
    )
    submit_wait(orchd, plan)
    status = json.loads(orchd.orchctl("status", "--json", check=True).stdout)
    replay = json.loads(orchd.orchctl("replay", "--json", check=True).stdout)
    assert replay == status
    assert len(replay["runs"]) == 1
    # the log filtered by kind (what `submit --wait --json` follows: only the run's end)
    with orchd.client() as client:
        run_id = status["runs"][0]["summary"]["run_id"]
        ends = client.call(p.Events(run=run_id, kinds=["RunFinished"])).events
        tries = client.call(p.Events(run=run_id, kinds=["AttemptLaunching", "TaskRetrying"])).events
    assert [e.kind for e in ends] == ["RunFinished"]
    assert sorted(e.kind for e in tries) == ["AttemptLaunching"] * 5 + ["TaskRetrying"] * 2


def test_runs_resume_after_restart(make_daemon, tmp_path: Path) -> None:
    orchd = make_daemon()
    log = tmp_path / "notes"
    plan = write_plan(
        tmp_path / "plan.json",
        {
            "name": "restart",
            "concurrency": 2,
            "workdir": str(tmp_path),
            "defaults": {"agent": "command", "max_retries": 0},
            "tasks": [
                {"id": f"t{i}", "command": agent("record", str(log), "0.5")} for i in range(6)
            ],
        },
    )
    run_id = json.loads(orchd.orchctl("submit", str(plan), "--json", check=True).stdout)["run_id"]
    wait_until(lambda: log.exists() and "start" in log.read_text(), what="a task to start")
    orchd.kill()
    orchd.start()
    code = orchd.orchctl("watch", run_id, timeout=120).returncode
    status = json.loads(orchd.orchctl("status", run_id, "--json", check=True).stdout)["runs"][0]
    assert code == 0 and status["summary"]["counts"]["completed"] == 6


def test_every_attempt_has_its_log_and_no_other_log_is_made(orchd: Daemon, tmp_path: Path) -> None:
    # a run creates the next ready task's log ahead of its launch: for that attempt, never another
    plan = write_plan(
        tmp_path / "plan.json",
        {
            "name": "logs",
            "concurrency": 1,
            "workdir": str(tmp_path),
            "defaults": {
                "agent": "command",
                "max_retries": 1,
                "backoff": {"initial": "0.05s", "factor": 1.0, "jitter": "none"},
            },
            "tasks": [
                {"id": "first", "command": ["true"]},
                {"id": "flaky", "command": agent("flaky", str(tmp_path / "attempts"), "1")},
                *({"id": f"t{i}", "command": ["true"]} for i in range(4)),
            ],
        },
    )
    code, view = submit_wait(orchd, plan)
    assert code == 0, view
    run_id = view["summary"]["run_id"]
    made = sorted(f.name for f in (orchd.home / "state" / "logs" / run_id).iterdir())
    attempts = sorted(
        f"{t['id']}.{n}.log" for t in view["tasks"] for n in range(1, t["attempts"] + 1)
    )
    assert tasks_by_id(view)["flaky"]["attempts"] == 2
    assert made == attempts
