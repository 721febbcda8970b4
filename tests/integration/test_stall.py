"""`stall`: an attempt that writes nothing for that long is stopped and retried like a timeout."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import agent, write_plan


def test_an_attempt_with_no_output_for_its_stall_time_is_stopped(orchd, tmp_path: Path) -> None:
    plan = write_plan(
        tmp_path / "plan.json",
        {
            "name": "stall",
            "workdir": str(tmp_path),
            "defaults": {"agent": "command", "max_retries": 1, "stall": "1s", "timeout": "5m"},
            "tasks": [
                {"id": "quiet", "command": agent("quiet")},
                {"id": "brief", "command": agent("quiet", "0.1")},
            ],
        },
    )
    done = orchd.orchctl("submit", str(plan), "--wait", "--json", timeout=120)
    view = json.loads(done.stdout)
    tasks = {t["id"]: t for t in view["tasks"]}
    assert tasks["brief"]["state"] == "completed"
    quiet = tasks["quiet"]
    assert quiet["state"] == "failed" and quiet["attempts"] == 2, quiet
    assert "stalled: no output for 1s" in quiet["reason"], quiet
    why = orchd.orchctl("why", view["summary"]["run_id"], "quiet", check=True).stdout
    assert "stalled" in why
