"""Chaos: SIGKILL orchd at random moments of a busy run, restart it, repeat.

Every task still ends as its fake agent dictates, exactly once; attempts that
outlived a daemon are adopted again, never run twice; the log replays to the
state the daemon shows.
"""

from __future__ import annotations

import collections
import json
import random
from pathlib import Path

from orchd import protocol as p
from tests.conftest import agent, wait_until, write_plan


def test_sigkill_at_random_moments_loses_nothing(make_daemon, tmp_path: Path) -> None:
    rng = random.Random(20261124)
    log = tmp_path / "notes"
    flaky_log = tmp_path / "flaky"
    tasks = []
    for i in range(200):
        if i % 10 == 3:
            tasks.append({"id": f"flaky{i}", "command": agent("flaky", str(flaky_log), "1")})
        elif i % 10 == 7:
            tasks.append({"id": f"bad{i}", "command": agent("record", str(log), "0.05", "2")})
        else:
            tasks.append(
                {
                    "id": f"t{i}",
                    "command": agent("record", str(log), f"{rng.uniform(0.05, 0.4):.2f}"),
                }
            )
    plan = write_plan(
        tmp_path / "plan.json",
        {
            "name": "chaos",
            "concurrency": 8,
            "workdir": str(tmp_path),
            "defaults": {
                "agent": "command",
                "max_retries": 1,
                "backoff": {"initial": "0.2s", "jitter": "none"},
            },
            "tasks": tasks,
        },
    )
    orchd = make_daemon()
    run_id = json.loads(orchd.orchctl("submit", str(plan), "--json", check=True).stdout)["run_id"]

    def finished() -> bool:
        with orchd.client() as client:
            return client.call(p.Status(run=run_id)).runs[0].summary.state != "running"

    kills = 0
    for _ in range(12):
        # let some events happen, then crash at a random moment
        with orchd.client() as client:
            seq = client.call(p.Ping()).seq
            client.call(p.Events(after=seq + rng.randint(5, 50), wait=5.0, limit=1))
        if finished():
            break
        orchd.kill()
        kills += 1
        orchd.start()
    wait_until(finished, timeout=120, what="the run to finish")

    view = json.loads(orchd.orchctl("status", run_id, "--json", check=True).stdout)["runs"][0]
    states = {t["id"]: t["state"] for t in view["tasks"]}
    for task in tasks:
        expected = "failed" if task["id"].startswith("bad") else "completed"
        assert states[task["id"]] == expected, (task["id"], states[task["id"]])
    events = [
        json.loads(line)
        for line in orchd.orchctl(
            "events", "--run", run_id, "--json", check=True
        ).stdout.splitlines()
    ]
    ends = collections.Counter(
        (e["task_id"], e["kind"]) for e in events if e["kind"] in ("TaskCompleted", "TaskFailed")
    )
    assert all(n == 1 for n in ends.values()), [k for k, n in ends.items() if n > 1]
    finishes = collections.Counter(
        (e["task_id"], e["event"]["attempt"]) for e in events if e["kind"] == "AttemptFinished"
    )
    assert all(n == 1 for n in finishes.values())  # an attempt finishes at most once
    for task in view["tasks"]:  # attempts within budget, plus lost ones
        lost = sum(
            1
            for e in events
            if e["kind"] == "AttemptFinished"
            and e["task_id"] == task["id"]
            and e["event"]["outcome"] == "lost"
        )
        assert task["attempts"] <= 2 + lost
    from tests.integration.test_spine import gone

    notes = [line.split() for line in log.read_text().splitlines()]
    runs_of = collections.Counter((n[1], n[2]) for n in notes if n[0] == "end")
    assert all(n == 1 for n in runs_of.values()), "an attempt's agent ran twice"
    for task in view[
        "tasks"
    ]:  # a completed task's agent succeeded once: nothing ran again after it
        if task["id"].startswith("t"):
            assert sum(1 for n in notes if n[0] == "end" and n[1] == task["id"]) == 1, task["id"]
    pids = {int(n[5]) for n in notes}
    for pid in pids:  # no agent process of the run is left behind
        wait_until(lambda: gone(pid), timeout=10, what=f"agent {pid} to be gone")
    assert orchd.orchctl("audit").returncode == 0
    status = json.loads(orchd.orchctl("status", "--json", check=True).stdout)
    replay = json.loads(orchd.orchctl("replay", "--json", check=True).stdout)
    assert replay == status
    lost = sum(
        1 for e in events if e["kind"] == "AttemptFinished" and e["event"]["outcome"] == "lost"
    )
    adopted = [e for e in events if e["kind"] == "AttemptAdopted"]
    ended = sum(1 for e in adopted if e["event"].get("ended"))
    print(
        f"\nchaos: {len(tasks)} tasks, {kills} kills, {len(adopted)} re-adoptions ({len(adopted) - ended} running, "
        f"{ended} ended while orchd was down), {lost} lost attempts, 0 tasks lost"
    )
    assert kills >= 10
    assert adopted, "no attempt was adopted again"


def test_backoff_timers_survive_a_crash(make_daemon, tmp_path: Path) -> None:
    """A task waiting for its next attempt is neither started early nor forgotten after a SIGKILL."""
    flaky_log = tmp_path / "flaky"
    plan = write_plan(
        tmp_path / "plan.json",
        {
            "name": "timers",
            "workdir": str(tmp_path),
            "defaults": {
                "agent": "command",
                "max_retries": 1,
                "backoff": {"initial": "3s", "jitter": "none"},
            },
            "tasks": [{"id": "later", "command": agent("flaky", str(flaky_log), "1")}],
        },
    )
    orchd = make_daemon()
    run_id = json.loads(orchd.orchctl("submit", str(plan), "--json", check=True).stdout)["run_id"]

    def retrying() -> dict | None:
        view = json.loads(orchd.orchctl("status", run_id, "--json", check=True).stdout)["runs"][0]
        return view["tasks"][0] if view["tasks"][0]["state"] == "retrying" else None

    due_at = wait_until(retrying, what="the task to wait for its retry")["due_at"]
    orchd.kill()
    orchd.start()
    after = (
        retrying()
    )  # None when a slow restart took past the due time: the launch time below still counts
    assert after is None or after["due_at"] == due_at
    with orchd.client() as client:
        wait_until(
            lambda: client.call(p.Status(run=run_id)).runs[0].summary.state == "completed",
            what="the retry to run",
        )
    events = [
        json.loads(line)
        for line in orchd.orchctl(
            "events", "--run", run_id, "--json", check=True
        ).stdout.splitlines()
    ]
    second = [e for e in events if e["kind"] == "AttemptLaunching" and e["event"]["attempt"] == 2]
    assert len(second) == 1 and second[0]["ts"] >= due_at
