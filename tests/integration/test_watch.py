"""The live terminal experience: `watch` and `submit --wait` in a real terminal (tmux) — counts, a retrying
task's due time, an agent's activity, keys, the final summary — and `logs` rendering an agent's conversation."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import ROOT, Daemon, agent, wait_until, write_plan

needs_tmux = pytest.mark.skipif(
    shutil.which("tmux") is None and not os.environ.get("CI"),
    reason="tmux is not installed (apt-get install tmux)",
)

# an agent that says what it does, then works until the test opens the gate
GATED = (
    "import os, sys, time\nprint('step 1: reading src/core.py', flush=True)\n"
    "while not os.path.exists(sys.argv[1]):\n    time.sleep(0.02)\nprint('done', flush=True)\n"
)


class Terminal:
    """A tmux session running one command in a 120x30 terminal."""

    def __init__(self, command: str, name: str) -> None:
        self.session = f"orch-{name}-{os.getpid()}"
        subprocess.run(
            ["tmux", "new-session", "-d", "-s", self.session, "-x", "120", "-y", "30", command],
            check=True,
            cwd=str(ROOT),
        )
        self.last = ""

    def screen(self) -> str:
        self.last = subprocess.run(
            ["tmux", "capture-pane", "-p", "-t", self.session], capture_output=True, text=True
        ).stdout
        return self.last

    def wait_for(self, check: Callable[[str], bool], what: str, timeout: float = 30) -> str:
        try:
            return wait_until(
                lambda: (s := self.screen()) and check(s) and s, timeout=timeout, what=what
            )
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


@needs_tmux
def test_watch_shows_counts_due_time_activity_and_summary(orchd: Daemon, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    plan = write_plan(
        tmp_path / "plan.json",
        {
            "name": "watched",
            "concurrency": 4,
            "workdir": str(tmp_path),
            "defaults": {
                "agent": "command",
                "max_retries": 1,
                "backoff": {"initial": "3s", "jitter": "none"},
            },
            "tasks": [
                {"id": "flaky", "command": agent("flaky", str(tmp_path / "f"), "1")},
                {"id": "worker", "command": [sys.executable, "-c", GATED, str(gate)]},
                {"id": "broken", "command": ["false"], "max_retries": 0},
            ]
            + [
                {"id": f"slow{i}", "command": agent("record", str(tmp_path / "n"), "0.3")}
                for i in range(3)
            ],
        },
    )
    run_id = json.loads(orchd.orchctl("submit", str(plan), "--json", check=True).stdout)["run_id"]
    term = Terminal(watch_command(orchd, "watch", run_id), "watch")
    try:
        live = term.wait_for(
            lambda s: "next attempt at" in s and "1 failed" in s and "reading src/core.py" in s,
            "the retrying task's due time, the failed count and the worker's activity",
        )
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


@needs_tmux
def test_ctrl_c_leaves_the_run_alone(orchd: Daemon, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    plan = write_plan(
        tmp_path / "plan.json",
        {
            "name": "left",
            "workdir": str(tmp_path),
            "defaults": {"agent": "command", "max_retries": 0},
            "tasks": [{"id": "worker", "command": [sys.executable, "-c", GATED, str(gate)]}],
        },
    )
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


@needs_tmux
def test_submit_wait_keeps_one_progress_line_on_a_terminal(orchd: Daemon, tmp_path: Path) -> None:
    plan = write_plan(
        tmp_path / "plan.json",
        {
            "name": "waited",
            "workdir": str(tmp_path),
            "defaults": {"agent": "command"},
            "tasks": [
                {"id": f"t{i}", "command": agent("record", str(tmp_path / "n"), "0.2")}
                for i in range(3)
            ],
        },
    )
    term = Terminal(watch_command(orchd, "submit", str(plan), "--wait"), "wait")
    try:
        final = term.wait_for(lambda s: "EXIT=" in s, "submit --wait to end", timeout=60)
        assert "EXIT=0" in final
        progress = [line for line in final.splitlines() if " done (" in line]
        assert (
            len(progress) == 1 and "[####################] 3/3 done (3 completed)" in progress[0]
        ), final
        assert re.search(r"waited-\w+  completed  3 tasks in", final)
    finally:
        term.close()


def test_submit_wait_prints_plain_lines_when_not_a_terminal(orchd: Daemon, tmp_path: Path) -> None:
    plan = write_plan(
        tmp_path / "plan.json",
        {
            "name": "piped",
            "workdir": str(tmp_path),
            "defaults": {
                "agent": "command",
                "max_retries": 1,
                "backoff": {"initial": "0.1s", "jitter": "none"},
            },
            "tasks": [{"id": "flaky", "command": agent("flaky", str(tmp_path / "f"), "1")}],
        },
    )
    result = orchd.orchctl("submit", str(plan), "--wait")
    assert result.returncode == 0, result.stderr
    assert "\r" not in result.stdout and "\x1b" not in result.stdout
    lines = result.stdout.splitlines()
    assert re.fullmatch(
        r"\[0/1\] flaky retrying: exit code 1; attempt 2 at \d\d:\d\d:\d\d", lines[0]
    ), lines
    assert lines[1].startswith("[1/1] flaky completed (attempt 2, ") and lines[1].endswith(
        "): attempt 2: ok"
    )


def test_logs_render_an_agents_conversation_and_raw_gives_the_bytes(
    orchd: Daemon, tmp_path: Path
) -> None:
    fixture = ROOT / "tests" / "fixtures" / "agents" / "claude" / "edit.jsonl"
    plan = write_plan(
        tmp_path / "plan.json",
        {
            "name": "talk",
            "workdir": str(tmp_path),
            "defaults": {"agent": "command", "max_retries": 0},
            "tasks": [{"id": "talk", "command": ["cat", str(fixture)]}],
        },
    )
    run_id = json.loads(orchd.orchctl("submit", str(plan), "--wait", "--json").stdout)["summary"][
        "run_id"
    ]
    rendered = orchd.orchctl("logs", run_id, "talk", check=True).stdout.splitlines()
    assert rendered[1:] == [
        "→ Write /work/repo/notes.txt",
        "  ← File created successfully at: /work/repo/notes.txt (file state is current in your "
        "context — no need to Read it back)",
        "I wrote notes.txt.",
        "✓ result: I wrote notes.txt. ($0.0019, 220 in / 50 out, 2 turns)",
    ]
    raw = subprocess.run(
        [sys.executable, "-m", "orchctl.main", "logs", run_id, "talk", "--raw"],
        env=orchd.env,
        capture_output=True,
        timeout=60,
    )
    assert raw.returncode == 0 and raw.stdout == fixture.read_bytes()


# A stand-in for Claude Code whose cost is the session's running total, as Claude's is: attempt 1
# fails having spent $0.10, attempt 2 resumes the session and ends at $0.25 in all.
RESUMED_CLAUDE = """#!{python}
import json, os, sys
first = os.environ["ORCH_ATTEMPT"] == "1"
assert first or "--resume" in sys.argv
print(json.dumps({{"type": "result", "subtype": "success", "is_error": first,
                  "result": "overloaded" if first else "done", "session_id": "s-1",
                  "total_cost_usd": 0.10 if first else 0.25}}))
sys.exit(1 if first else 0)
"""


@needs_tmux
def test_the_watch_header_counts_a_resumed_session_s_cost_once(
    make_daemon: Callable[..., Daemon], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "claude").write_text(RESUMED_CLAUDE.format(python=sys.executable))
    (bindir / "claude").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    orchd = make_daemon()
    gate = tmp_path / "gate"
    plan = write_plan(
        tmp_path / "plan.json",
        {
            "name": "resumed",
            "workdir": str(tmp_path),
            "isolation": "none",
            "defaults": {"max_retries": 1, "backoff": {"initial": "0.1s", "jitter": "none"}},
            "tasks": [
                {"id": "talk", "agent": "claude", "prompt": "go", "resume": True},
                {
                    "id": "worker",
                    "agent": "command",
                    "command": [sys.executable, "-c", GATED, str(gate)],
                },
            ],
        },
    )
    run_id = json.loads(orchd.orchctl("submit", str(plan), "--json", check=True).stdout)["run_id"]
    term = Terminal(watch_command(orchd, "watch", run_id), "cost")
    try:
        live = term.wait_for(lambda s: "1/2 done" in s, "the resumed task to complete")
        header = live.splitlines()[0]
        assert "cost $0.2500" in header, live  # not $0.3500: the second report includes the first
        status = json.loads(orchd.orchctl("status", run_id, "--json", check=True).stdout)
        assert status["runs"][0]["summary"]["cost_usd"] == 0.25
        gate.write_text("")
        term.wait_for(lambda s: "EXIT=0" in s, "watch to end", timeout=60)
    finally:
        term.close()
