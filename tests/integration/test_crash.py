"""Chaos: SIGKILL orchd at random moments of a busy run, restart it, repeat.

Every task still ends as its fake agent dictates, exactly once; attempts that
outlived a daemon are adopted again, never run twice; the log replays to the
state the daemon shows.
"""

from __future__ import annotations

import collections
import json
import os
import random
import signal
import sys
import time
from pathlib import Path

from orchd import protocol as p
from tests.conftest import AGENTS, agent, wait_until, write_plan
from tests.integration.test_spine import gone


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


def _keeper(home: Path) -> int | None:
    """The pid of the keeper serving ORCH_HOME `home` (its exits journal is under it)."""
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{name}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"orchd.keeper" in cmdline and any(str(home).encode() in arg for arg in cmdline):
            return int(name)
    return None


def _chaos_task(task_id: str, ledger: Path, seconds: float) -> dict:
    """Every other task a command, the others an agent whose stream states its outcome."""
    if int(task_id.rpartition("t")[2]) % 2:
        return {"id": f"{task_id}s", "agent": "claude", "prompt": f"work {seconds:.2f}"}
    return {
        "id": f"{task_id}c",
        "agent": "command",
        "command": agent("ledger", str(ledger), f"{seconds:.2f}"),
    }


def _ledger(path: Path) -> list[tuple[str, str, int, float, int]]:
    out = []
    for line in path.read_text().splitlines():
        what, task, attempt, at, pid = line.split()[:5]
        out.append((what, task, int(attempt), float(at), int(pid)))
    return out


def test_every_orch_process_killed_at_random_moments_doubles_nothing(
    make_daemon, tmp_path: Path, orch_home: Path
) -> None:
    """100 SIGKILLs of the daemon, of the keeper, or of both at once, during runs of tasks of
    0.3-1.5 s at concurrency 8: no task lost, none completed twice, no two attempts of a task
    alive at once; the log verifies and replays to what the daemon shows."""
    rng = random.Random(20261206)
    ledger = tmp_path / "ledger"
    bin_dir = tmp_path / "bin"  # a stand-in `claude`: its stream states how it went
    bin_dir.mkdir()
    claude = bin_dir / "claude"
    claude.write_text(
        f"#!{sys.executable}\nimport runpy\nrunpy.run_path({str(AGENTS / 'streamer.py')!r}, "
        "run_name='__main__')\n"
    )
    claude.chmod(0o755)
    orchd = make_daemon()
    orchd.env["PATH"] = f"{bin_dir}:{os.environ['PATH']}"
    orchd.env["ORCH_LEDGER"] = str(ledger)
    orchd.stop()
    orchd.start()
    modes = collections.Counter()
    kill_log: list[tuple[float, str]] = []
    runs: list[tuple[str, list[str]]] = []

    def submit() -> None:
        n = len(runs)
        ids = [f"r{n}t{i}" for i in range(60)]
        plan = write_plan(
            tmp_path / f"plan{n}.json",
            {
                "name": f"chaos{n}",
                "concurrency": 8,
                "workdir": str(tmp_path),
                "isolation": "none",
                "defaults": {"max_retries": 0},
                "tasks": [_chaos_task(tid, ledger, rng.uniform(0.3, 1.5)) for tid in ids],
            },
        )
        done = orchd.orchctl("submit", str(plan), "--json", check=True)
        runs.append((json.loads(done.stdout)["run_id"], ids))

    def running() -> bool:
        with orchd.client() as client:
            return any(r.summary.state == "running" for r in client.call(p.Status()).runs)

    submit()
    while sum(modes.values()) < 100:
        if not running():
            submit()
        with orchd.client() as client:  # let a few things happen, then kill at a random moment
            seq = client.call(p.Ping()).seq
            client.call(p.Events(after=seq + rng.randint(1, 12), wait=3.0, limit=1))
        mode = rng.choice(("daemon", "keeper", "both"))
        kill_log.append((time.monotonic(), mode))
        keeper = _keeper(orch_home)
        if mode in ("keeper", "both") and keeper is not None:
            os.kill(keeper, signal.SIGKILL)
        if mode in ("daemon", "both"):
            orchd.kill()
            orchd.start()
        modes[mode] += 1
    with orchd.client() as client:
        wait_until(lambda: not running(), timeout=180, what="the runs to finish")

    notes = _ledger(ledger)
    ends = collections.Counter(task for what, task, *_ in notes if what == "end")
    twice = sorted(t for t, n in ends.items() if n > 1 and t.endswith("s"))
    # commands state nothing of how they went: one that ended in the instant its keeper was
    # killed (before the keeper reaped it) has no status left, and runs again (README: the window)
    commands_twice = sorted(t for t, n in ends.items() if n > 1 and t.endswith("c"))
    started = {(t, a) for what, t, a, *_ in notes if what == "start"}
    overlapping = sorted({task for what, task, *_ in notes if what == "overlap"})
    states: collections.Counter[str] = collections.Counter()
    reasons = []
    for run_id, _ in runs:
        view = json.loads(orchd.orchctl("status", run_id, "--json", check=True).stdout)["runs"][0]
        states.update(t["state"] for t in view["tasks"])
        reasons += [(t["id"], t["reason"]) for t in view["tasks"] if t["state"] != "completed"]
    tasks = sum(len(ids) for _, ids in runs)
    print(
        f"\nevery process dies: {sum(modes.values())} kills ({dict(modes)}), {len(runs)} runs, "
        f"{tasks} tasks, {len(started)} agent starts, {dict(states)}; "
        f"completed twice: {len(twice)} of the streaming agents, {len(commands_twice)} of the "
        f"commands; overlapping attempts: {len(overlapping)}"
    )
    for task in twice:  # what happened, for the failure message
        print([n for n in notes if n[1] == task], [k for k in kill_log])
        events = orchd.orchctl("events", "--task", task, "--json").stdout
        print(events)
    if states != {"completed": tasks}:
        for run_id, _ in runs:
            for task_id, _ in reasons:
                print(task_id, orchd.orchctl("why", run_id, task_id).stdout[-3000:])
                print(orchd.orchctl("logs", run_id, task_id, "--raw").stdout[-2000:])
    assert states == {"completed": tasks}, reasons[:5]  # none lost, none failed (max_retries 0)
    assert not twice, twice
    assert not overlapping, overlapping
    for pid in {pid for *_, pid in notes}:  # no agent process is left behind
        wait_until(lambda: gone(pid), timeout=10, what=f"agent {pid} to be gone")
    assert orchd.orchctl("audit").returncode == 0
    status = json.loads(orchd.orchctl("status", "--json", check=True).stdout)
    replay = json.loads(orchd.orchctl("replay", "--json", check=True).stdout)
    assert replay == status
