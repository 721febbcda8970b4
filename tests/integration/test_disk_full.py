"""A full disk: orchd refuses new work with a clear error, starts no agent it cannot record, keeps serving,
and finishes the run once space returns, with a log that still verifies."""

from __future__ import annotations

import collections
import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import wait_until, write_plan


@pytest.fixture
def small_state(orch_home: Path):
    """ORCH_HOME/state on a 4 MiB tmpfs (needs root, as in CI)."""
    state = orch_home / "state"
    state.mkdir(parents=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(state)],
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
