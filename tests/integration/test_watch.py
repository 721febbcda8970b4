"""`orchctl watch` in a real terminal (tmux): live counts, a retrying task's due time, the final summary."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import Daemon, agent, wait_until, write_plan

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None and not os.environ.get("CI"),
                                reason="tmux is not installed (apt-get install tmux)")


def test_watch_shows_progress_retry_due_time_and_summary(orchd: Daemon, tmp_path: Path) -> None:
    plan = write_plan(tmp_path / "plan.json", {
        "name": "watched", "concurrency": 2, "workdir": str(tmp_path),
        "defaults": {"agent": "command", "max_retries": 1,
                     "backoff": {"initial": "2s", "jitter": "none"}},
        "tasks": [{"id": "flaky", "command": agent("flaky", str(tmp_path / "f"), "1")}] +
                 [{"id": f"slow{i}", "command": agent("record", str(tmp_path / "n"), "0.6")} for i in range(4)]})
    run_id = json.loads(orchd.orchctl("submit", str(plan), "--json", check=True).stdout)["run_id"]
    session = f"orch-watch-{os.getpid()}"
    env = f"ORCH_HOME={shlex.quote(str(orchd.home))}"
    command = f"{env} {shlex.quote(sys.executable)} -m orchctl.main watch {run_id}; echo EXIT=$?; sleep 600"
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "120", "-y", "30", command], check=True,
                   cwd=str(Path(__file__).resolve().parents[2]))
    try:
        def screen() -> str:
            return subprocess.run(["tmux", "capture-pane", "-p", "-t", session], capture_output=True,
                                  text=True).stdout

        live = wait_until(lambda: (s := screen()) and "next attempt at" in s and s, timeout=30,
                          what="the retrying task's due time on screen")
        assert run_id in live and "retrying" in live
        final = wait_until(lambda: (s := screen()) and "EXIT=" in s and s, timeout=60, what="watch to end")
        assert "EXIT=0" in final
        assert f"{run_id}  completed  5 tasks in" in final
        assert "5 completed" in final
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
