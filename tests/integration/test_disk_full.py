"""A full disk: orchd refuses new work with a clear error, starts no agent it cannot record, keeps serving,
and finishes the run once space returns, with a log that still verifies."""

from __future__ import annotations

import collections
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import AGENTS, wait_until, write_plan


@pytest.fixture
def small_state(orch_home: Path):
    """ORCH_HOME/state on an 8 MiB tmpfs (needs root, as in CI): room for a run's logs and more than
    orch's 1 MiB floor (disk.FULL) once the ballast is gone."""
    state = orch_home / "state"
    state.mkdir(parents=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(state)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        if os.environ.get("CI"):
            raise AssertionError(f"cannot mount a small tmpfs: {mounted.stderr}")
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.strip()}")
    yield state
    subprocess.run(["umount", "-l", str(state)], capture_output=True)


def fill(path: Path) -> None:
    """Write until the filesystem is full."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:  # unbuffered: a buffered file would raise ENOSPC again when closed
        while True:
            os.write(fd, b"\0" * 65536)
    except OSError:
        pass
    finally:
        os.close(fd)


def test_disk_full_refuses_work_then_recovers(
    make_daemon, small_state: Path, tmp_path: Path
) -> None:
    orchd = make_daemon()
    tasks = [{"id": f"t{i}", "command": ["sleep", "0.1"]} for i in range(60)]
    plan = write_plan(
        tmp_path / "plan.json",
        {
            "name": "full",
            "concurrency": 3,
            "workdir": str(tmp_path),
            "defaults": {"agent": "command", "max_retries": 0},
            "tasks": tasks,
        },
    )
    run_id = json.loads(orchd.orchctl("submit", str(plan), "--json", check=True).stdout)["run_id"]

    def completed() -> int:
        view = json.loads(orchd.orchctl("status", run_id, "--json", check=True).stdout)["runs"][0]
        return view["summary"]["counts"]["completed"]

    wait_until(lambda: completed() >= 3, what="a few tasks to complete")
    ballast = small_state / "ballast"
    fill(ballast)
    wait_until(
        lambda: "cannot write the event log" in orchd.log(),
        timeout=30,
        what="the journal to hit the full disk",
    )
    # a plan too big for whatever room the log file still has inside it (SQLite reuses freed WAL pages)
    big = write_plan(
        tmp_path / "big.json",
        {
            "name": "big",
            "workdir": str(tmp_path),
            "defaults": {"agent": "command"},
            "tasks": [{"id": f"b{i}", "command": ["echo", "x" * 200]} for i in range(2000)],
        },
    )
    refused = orchd.orchctl("submit", str(big))
    assert refused.returncode == 1, refused
    assert "cannot write the event log" in refused.stderr
    ballast.unlink()
    assert orchd.orchctl("watch", run_id, timeout=120).returncode == 0
    events = [
        json.loads(line)
        for line in orchd.orchctl(
            "events", "--run", run_id, "--json", check=True
        ).stdout.splitlines()
    ]
    done = collections.Counter(e["task_id"] for e in events if e["kind"] == "TaskCompleted")
    assert sorted(done) == sorted(t["id"] for t in tasks) and set(done.values()) == {1}
    launches = collections.Counter(e["task_id"] for e in events if e["kind"] == "AttemptLaunching")
    assert set(launches.values()) == {1}  # nothing started twice, nothing started unrecorded
    assert orchd.orchctl("audit").returncode == 0
    assert len(json.loads(orchd.orchctl("runs", "--json", check=True).stdout)["runs"]) == 1


def _events(orchd, run_id: str) -> list[dict]:
    out = orchd.orchctl("events", "--run", run_id, "--json", check=True).stdout
    return [json.loads(line) for line in out.splitlines()]


def _consistent(orchd, run_id: str) -> dict:
    """The run's end as status shows it, checked against the log: every task completed once,
    no attempt left running, the hash chain and exactly-once hold, replay equals status."""
    status = json.loads(orchd.orchctl("status", run_id, "--json", check=True).stdout)
    view = status["runs"][0]
    assert all(t["state"] != "running" for t in view["tasks"]), view["tasks"]
    events = _events(orchd, run_id)
    done = collections.Counter(e["task_id"] for e in events if e["kind"] == "TaskCompleted")
    assert set(done.values()) <= {1}, done
    assert orchd.orchctl("audit").returncode == 0
    replay = json.loads(orchd.orchctl("replay", "--json", check=True).stdout)
    replayed = next(r for r in replay["runs"] if r["summary"]["run_id"] == run_id)
    assert replayed == view
    return view


def _spew_plan(tmp_path: Path, gate: Path, n: int, size: int) -> Path:
    return write_plan(
        tmp_path / "spew.json",
        {
            "name": "spew",
            "concurrency": 4,
            "workdir": str(tmp_path),
            "defaults": {"agent": "command", "max_retries": 0, "backoff": {"initial": "0.2s"}},
            "tasks": [
                {
                    "id": f"s{i}",
                    "command": [sys.executable, str(AGENTS / "spew.py"), str(size), str(gate)],
                }
                for i in range(n)
            ],
        },
    )


def test_a_disk_that_fills_mid_run_holds_the_work_and_space_back_resumes_it(
    make_daemon, small_state: Path, tmp_path: Path
) -> None:
    orchd = make_daemon()
    gate = tmp_path / "gate"
    plan = _spew_plan(tmp_path, gate, 12, 300_000)
    run_id = json.loads(orchd.orchctl("submit", str(plan), "--json", check=True).stdout)["run_id"]
    wait_until(
        lambda: (
            json.loads(orchd.orchctl("status", run_id, "--json", check=True).stdout)["runs"][0][
                "summary"
            ]["counts"]["running"]
            == 4
        ),
        what="four running tasks",
    )
    ballast = small_state / "ballast"
    fill(ballast)  # the disk is full before the agents write a byte
    gate.touch()

    def held() -> str:
        return (
            json.loads(orchd.orchctl("daemon", "status", "--json", check=True).stdout).get("held")
            or ""
        )

    # the agents' writes fail; their ends wait in the journal (nothing is lost, nothing starts)
    wait_until(lambda: "disk full" in held(), timeout=60, what="orchd to say the disk is full")
    assert "disk full" in orchd.orchctl("status", run_id).stdout
    ballast.unlink()
    done = orchd.orchctl("wait", run_id, timeout=180)
    assert done.returncode == 0, (
        done.stdout,
        orchd.orchctl("why", run_id, "s0").stdout,
        orchd.orchctl("logs", run_id, "s0", "--raw").stdout[-800:],
        orchd.log()[-3000:],
    )
    view = _consistent(orchd, run_id)
    assert [t["state"] for t in view["tasks"]] == ["completed"] * 12  # max_retries = 0: none spent
    attempts = [e for e in _events(orchd, run_id) if e["kind"] == "AttemptFinished"]
    assert any(e["event"]["outcome"] == "disk_full" for e in attempts), attempts
    log = orchd.log()
    assert log.count("cannot write the event log") <= 3, log  # once, then once a minute at most
    assert "can be written again" in log


@pytest.mark.parametrize("down", ["killed", "stopped"])
def test_a_full_disk_while_orchd_is_down(
    make_daemon, small_state: Path, tmp_path: Path, down: str
) -> None:
    """The disk fills while orchd is down (killed, or stopped cleanly: its log's WAL empty and its
    shared memory gone) and its attempts end for want of room: it starts, answers, starts
    nothing, and carries on once there is room; none of them spends a retry."""
    orchd = make_daemon()
    gate = tmp_path / "gate"
    plan = _spew_plan(tmp_path, gate, 6, 100_000)
    run_id = json.loads(orchd.orchctl("submit", str(plan), "--json", check=True).stdout)["run_id"]
    wait_until(
        lambda: "AttemptStarted" in orchd.orchctl("events", "--run", run_id).stdout,
        what="an attempt to start",
    )
    if down == "killed":
        orchd.kill()
    else:
        orchd.stop()
    ballast = small_state / "ballast"
    fill(ballast)
    gate.touch()
    orchd.start()  # on a full disk: it replays, answers, and waits to write
    status = orchd.orchctl("status", run_id)
    assert status.returncode == 0 and "disk full" in status.stdout, status
    ballast.unlink()
    done = orchd.orchctl("wait", run_id, timeout=90)
    assert done.returncode == 0, (done.stdout, done.stderr, orchd.log()[-5000:])
    view = _consistent(orchd, run_id)
    assert [t["state"] for t in view["tasks"]] == ["completed"] * 6
