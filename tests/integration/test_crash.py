"""Kill orchd with SIGKILL while a run is busy, restart it, repeat: no task lost, none completed twice."""

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
    for i in range(60):
        if i % 10 == 3:
            tasks.append({"id": f"flaky{i}", "command": agent("flaky", str(flaky_log), "1")})
        elif i % 10 == 7:
            tasks.append({"id": f"bad{i}", "command": agent("record", str(log), "0.05", "2")})
        else:
            tasks.append({"id": f"t{i}", "command": agent("record", str(log), f"{rng.uniform(0.05, 0.4):.2f}")})
    plan = write_plan(tmp_path / "plan.json", {
        "name": "chaos", "concurrency": 6, "workdir": str(tmp_path),
        "defaults": {"agent": "command", "max_retries": 1,
                     "backoff": {"initial": "0.2s", "jitter": "none"}},
        "tasks": tasks})
    orchd = make_daemon()
    run_id = json.loads(orchd.orchctl("submit", str(plan), "--json", check=True).stdout)["run_id"]

    def finished() -> bool:
        with orchd.client() as client:
            return client.call(p.Status(run=run_id)).runs[0].summary.state != "running"

    kills = 0
    for _ in range(5):
        # let some events happen, then crash at a random moment
        with orchd.client() as client:
            seq = client.call(p.Ping()).seq
            client.call(p.Events(after=seq + rng.randint(5, 40), wait=5.0, limit=1))
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
    events = [json.loads(line) for line in
              orchd.orchctl("events", "--run", run_id, "--json", check=True).stdout.splitlines()]
    ends = collections.Counter((e["task_id"], e["kind"]) for e in events
                               if e["kind"] in ("TaskCompleted", "TaskFailed"))
    assert all(n == 1 for n in ends.values()), [k for k, n in ends.items() if n > 1]
    finishes = collections.Counter((e["task_id"], e["event"]["attempt"]) for e in events
                                   if e["kind"] == "AttemptFinished")
    assert all(n == 1 for n in finishes.values())  # an attempt finishes at most once
    for task in view["tasks"]:  # attempts within budget, plus lost ones
        lost = sum(1 for e in events if e["kind"] == "AttemptFinished" and e["task_id"] == task["id"]
                   and e["event"]["outcome"] == "lost")
        assert task["attempts"] <= 2 + lost
    from tests.integration.test_spine import gone

    pids = {int(line.split()[5]) for line in log.read_text().splitlines()}
    for pid in pids:  # no agent process of the run is left behind
        wait_until(lambda: gone(pid), timeout=10, what=f"agent {pid} to be gone")
    assert orchd.orchctl("audit").returncode == 0
    status = json.loads(orchd.orchctl("status", "--json", check=True).stdout)
    replay = json.loads(orchd.orchctl("replay", "--json", check=True).stdout)
    assert replay == status
    print(f"kills: {kills}, lost attempts: {sum(1 for e in events if e['kind'] == 'AttemptFinished' and e['event']['outcome'] == 'lost')}")
    assert kills >= 2
