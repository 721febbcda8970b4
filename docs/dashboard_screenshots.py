"""Regenerate docs/dashboard.png and docs/dashboard-task.png: the web dashboard of a real run.

usage: python docs/dashboard_screenshots.py      (needs Debian's chromium; about a minute)

The same run as docs/screenshots.py: a real orchd runs twelve Claude Code tasks against a
stand-in `claude` that replays recorded stream-json with pauses (tool calls, an overloaded API,
a bad key, a usage limit), and Debian's chromium (through Playwright) takes the pictures: the
run's page while tasks run, retry, wait and fail, then a task's page with its conversation.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parent.parent)]

from screenshots import DOCS, FAKE_CLAUDE, ROOT, TASKS, orchctl, write_plan  # noqa: E402

from tests import browser  # noqa: E402


def status(env: dict[str, str], run_id: str) -> dict:
    return json.loads(orchctl(env, "status", run_id, "--json"))["runs"][0]


def main() -> None:
    home = Path(tempfile.mkdtemp(prefix="orch-shots-"))
    bindir = home / "bin"
    bindir.mkdir()
    (bindir / "claude").write_text(FAKE_CLAUDE)
    (bindir / "claude").chmod(0o755)
    env = {
        **os.environ,
        "ORCH_HOME": str(home),
        "PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}",
    }
    plan = write_plan(home)
    try:
        run_id = json.loads(orchctl(env, "submit", str(plan), "--json"))["run_id"]
        url = json.loads(orchctl(env, "dashboard", "--json"))["url"]
        with browser.chromium(width=1280, height=760) as page:
            page.goto(f"{url}#/run/{run_id}")
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:  # a moment with every kind of row on screen
                counts = status(env, run_id)["summary"]["counts"]
                if all(counts[s] for s in ("running", "retrying", "completed", "failed")):
                    break
                time.sleep(0.2)
            page.wait_for_timeout(800)  # the deltas of that moment reach the page
            page.screenshot(path=str(DOCS / "dashboard.png"), full_page=True)
            while status(env, run_id)["tasks"][0]["state"] != "completed":
                time.sleep(0.2)
            page.goto(f"{url.partition('?')[0]}#/run/{run_id}/task/{TASKS[0]}")
            page.locator("pre.conversation").get_by_text("result").wait_for()
            page.screenshot(path=str(DOCS / "dashboard-task.png"), full_page=True)
    finally:
        subprocess.run(
            [sys.executable, "-m", "orchctl.main", "daemon", "stop"],
            env=env,
            capture_output=True,
            cwd=ROOT,
        )
    print("wrote docs/dashboard.png and docs/dashboard-task.png")


if __name__ == "__main__":
    main()
