"""What `status`, `runs` and `results` print, through the real CLI: off a terminal every cell whole
(ids above all), in a terminal long text cut to fit with a hint that shows where it is whole."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import Daemon, write_plan

NAME = "a-plan-with-a-long-name-as-generated-by-a-script"
LONG_ID = "hdr-__init__.very-long-module-name-of-a-generated-task"
SAID = "a result that runs on and on, " * 5 + "and ends here"


def long_run(orchd: Daemon, tmp_path: Path) -> str:
    """A run whose id, task ids, result and failure reason are longer than any column."""
    say = [sys.executable, "-c", f"print({SAID!r})"]
    fail = [sys.executable, "-c", f"import sys; print({SAID!r}); sys.exit(3)"]
    plan = write_plan(
        tmp_path / "plan.json",
        {
            "name": NAME,
            "workdir": str(tmp_path),
            "defaults": {"agent": "command", "max_retries": 0},
            "tasks": [{"id": LONG_ID, "command": say}, {"id": "short", "command": fail}],
        },
    )
    result = orchd.orchctl("submit", str(plan), "--wait", "--json")
    assert result.returncode == 1, result
    return json.loads(result.stdout)["summary"]["run_id"]


def rows(text: str) -> dict[str, list[str]]:
    """Tab-separated lines by their first cell."""
    return {line.split("\t")[0]: line.split("\t") for line in text.splitlines()}


def test_off_a_terminal_every_cell_is_whole(orchd: Daemon, tmp_path: Path) -> None:
    run_id = long_run(orchd, tmp_path)
    assert len(run_id) > 40  # longer than any column rich gave it in 80
    for command in (["status"], ["runs"]):
        out = orchd.orchctl(*command, check=True).stdout
        assert rows(out)["RUN"][0] == "RUN" and rows(out)[run_id][1] == "failed", out
    status = rows(orchd.orchctl("status", run_id, check=True).stdout)
    assert status[LONG_ID][1] == "completed" and status[LONG_ID][-1] == SAID
    reason = "exit code 3 (gave up after 1 attempt)"  # cut to `exit code 3 (gave up after 1 att…`
    assert status["short"][1:3] == ["failed", "1/1"] and status["short"][-1] == reason
    results = rows(orchd.orchctl("results", run_id, check=True).stdout)
    assert results["TASK"] == ["TASK", "STATE", "ATTEMPTS", "DURATION", "RESULT"]
    assert results[LONG_ID][-1] == SAID and results["short"][-1] == reason


def in_terminal(orchd: Daemon, *args: str, columns: int) -> str:
    """What `orchctl ARGS` shows in a terminal `columns` wide (a pseudo-terminal)."""
    parent, child = pty.openpty()
    env = {**orchd.env, "COLUMNS": str(columns)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "orchctl.main", *args], stdout=child, stderr=child, env=env
    )
    os.close(child)
    out, deadline = b"", time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            if select.select([parent], [], [], 1.0)[0]:
                try:
                    chunk = os.read(parent, 1 << 16)
                except OSError:  # the terminal's other end closed: orchctl is done
                    break
                if not chunk:
                    break
                out += chunk
    finally:
        os.close(parent)
        proc.kill()
        proc.wait(timeout=30)
    return re.sub(r"\x1b\[[0-9;]*m", "", out.decode()).replace("\r\n", "\n")  # styles off


def test_in_a_terminal_long_text_is_cut_with_a_hint_and_ids_are_whole(
    orchd: Daemon, tmp_path: Path
) -> None:
    run_id = long_run(orchd, tmp_path)
    for args in (("results", run_id), ("status", run_id)):
        screen = in_terminal(orchd, *args, columns=120)
        lines = screen.splitlines()
        task = next(line for line in lines if LONG_ID in line)
        assert task.split()[0] == LONG_ID and task.rstrip().endswith("…"), screen
        assert all(len(line) <= 120 for line in lines), screen
        assert f"`orchctl why {run_id} TASK` or `--json`" in " ".join(screen.split()), screen
    screen = in_terminal(orchd, "runs", columns=40)  # narrower than an id: a longer line, whole
    assert any(line.split()[:2] == [run_id, "failed"] for line in screen.splitlines()), screen
