"""`orchctl watch` in a real terminal (tmux): counts, a retrying task's due time, an agent's activity, keys,
the final summary."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Callable

import pytest

from tests.conftest import ROOT, Daemon, agent, wait_until, write_plan

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None and not os.environ.get("CI"),
                                reason="tmux is not installed (apt-get install tmux)")

# an agent that says what it does, then works until the test opens the gate
GATED = ("import os, sys, time\nprint('step 1: reading src/core.py', flush=True)\n"
         "while not os.path.exists(sys.argv[1]):\n    time.sleep(0.02)\nprint('done', flush=True)\n")


class Terminal:
    """A tmux session running one command in a 120x30 terminal."""

    def __init__(self, command: str, name: str) -> None:
        self.session = f"orch-{name}-{os.getpid()}"
        subprocess.run(["tmux", "new-session", "-d", "-s", self.session, "-x", "120", "-y", "30", command],
                       check=True, cwd=str(ROOT))
        self.last = ""

    def screen(self) -> str:
        self.last = subprocess.run(["tmux", "capture-pane", "-p", "-t", self.session], capture_output=True,
                                   text=True).stdout
        return self.last

    def wait_for(self, check: Callable[[str], bool], what: str, timeout: float = 30) -> str:
        try:
            return wait_until(lambda: (s := self.screen()) and check(s) and s, timeout=timeout, what=what)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; the screen:\n{self.last}") from None

    def keys(self, *keys: str) -> None:
        subprocess.run(["tmux", "send-keys", "-t", self.session, *keys], check=True)

    def close(self) -> None:
        subprocess.run(["tmux", "kill-session", "-t", self.session], capture_output=True)


def watch_command(orchd: Daemon, *args: str) -> str:
    env = f"ORCH_HOME={shlex.quote(str(orchd.home))}"
    argv = " ".join(shlex.quote(a) for a in (sys.executable, "-m", "orchctl.main", *args))
    return f"{env} {argv}; echo EXIT=$?; sleep 600"


def test_watch_shows_counts_due_time_activity_and_summary(orchd: Daemon, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    plan = write_plan(tmp_path / "plan.json", {
        "name": "watched", "concurrency": 4, "workdir": str(tmp_path),
        "defaults": {"agent": "command", "max_retries": 1, "backoff": {"initial": "3s", "jitter": "none"}},
        "tasks": [{"id": "flaky", "command": agent("flaky", str(tmp_path / "f"), "1")},
                  {"id": "worker", "command": [sys.executable, "-c", GATED, str(gate)]},
                  {"id": "broken", "command": ["false"], "max_retries": 0}] +
                 [{"id": f"slow{i}", "command": agent("record", str(tmp_path / "n"), "0.3")} for i in range(3)]})
    run_id = json.loads(orchd.orchctl("submit", str(plan), "--json", check=True).stdout)["run_id"]
    term = Terminal(watch_command(orchd, "watch", run_id), "watch")
    try:
        live = term.wait_for(lambda s: "next attempt at" in s and "1 failed" in s and "reading src/core.py" in s,
                             "the retrying task's due time, the failed count and the worker's activity")
        assert run_id in live and re.search(r"\d+/6 done", live)
        flaky_row = next(line for line in live.splitlines() if line.lstrip().startswith("flaky"))
        assert "retrying" in flaky_row and "1/2" in flaky_row
        assert re.search(r"next attempt at \d\d:\d\d:\d\d \(exit code 1\)", flaky_row), flaky_row
        worker_row = next(line for line in live.splitlines() if line.lstrip().startswith("worker"))
        assert "running" in worker_row and "step 1: reading src/core.py" in worker_row
        term.keys("f")  # the filter shows running tasks only
        only = term.wait_for(lambda s: "showing running" in s, "the state filter to apply")
        assert "flaky" not in only.split("TASK", 1)[1] or "running" in only
        gate.write_text("")
        final = term.wait_for(lambda s: "EXIT=" in s, "watch to end", timeout=60)
        assert "EXIT=1" in final  # one task failed
        assert re.search(rf"{run_id}  failed  6 tasks in \S+  5 completed  1 failed", final), final
    finally:
        term.close()


def test_ctrl_c_leaves_the_run_alone(orchd: Daemon, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    plan = write_plan(tmp_path / "plan.json", {
        "name": "left", "workdir": str(tmp_path), "defaults": {"agent": "command", "max_retries": 0},
        "tasks": [{"id": "worker", "command": [sys.executable, "-c", GATED, str(gate)]}]})
    run_id = json.loads(orchd.orchctl("submit", str(plan), "--json", check=True).stdout)["run_id"]
    term = Terminal(watch_command(orchd, "watch", run_id), "ctrlc")
    try:
        term.wait_for(lambda s: "reading src/core.py" in s, "the worker's activity")
        term.keys("C-c")
        left = term.wait_for(lambda s: "EXIT=" in s, "watch to stop")
        assert "EXIT=130" in left and f"{run_id} goes on" in left
        assert "Traceback" not in left
        status = json.loads(orchd.orchctl("status", run_id, "--json", check=True).stdout)["runs"][0]
        assert status["tasks"][0]["state"] == "running"
    finally:
        gate.write_text("")
        term.close()
