"""verify: checks run inside the attempt after the agent exits 0, against a real orchd."""

from __future__ import annotations

import json
import os
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import AGENTS, Daemon, agent, wait_until, write_plan
from tests.integration.test_worktree import git, make_repo, run_plan

# a check that passes when the file the agent was to write says "good"
GOOD = [
    sys.executable,
    "-c",
    "import sys; print('checking'); sys.exit(open('out.txt').read().strip() != 'good')",
]


def why(orchd: Daemon, run_id: str, task: str) -> dict[str, Any]:
    return json.loads(orchd.orchctl("why", run_id, task, "--json", check=True).stdout)


def test_a_passing_check_completes_the_task_and_is_shown(orchd: Daemon, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    view = run_plan(
        orchd,
        tmp_path,
        repo,
        [{"id": "t", "command": agent("edit", "out.txt=good"), "verify": [GOOD, ["true"]]}],
    )
    task = view["tasks"][0]
    run_id = view["summary"]["run_id"]
    assert task["state"] == "completed" and task["attempts"] == 1, task
    assert task["verify"]["result"] == "passed" and task["verify"]["checks"] == 2
    assert task["result"].startswith("edited 1 file")  # the agent's own last line, not a marker
    log = orchd.orchctl("logs", run_id, "t", check=True).stdout
    assert "orch: verify 1/2: " in log and "checking" in log
    assert log.rstrip().endswith("orch: verify passed: 2 checks")
    attempts = why(orchd, run_id, "t")["attempts"]
    assert attempts[0]["verify"]["result"] == "passed"
    assert "verify: 2 checks passed" in orchd.orchctl("why", run_id, "t").stdout
    assert "CHECKS" in orchd.orchctl("results", run_id).stdout


def test_a_failing_check_spends_a_retry_and_the_next_attempt_passes(
    orchd: Daemon, tmp_path: Path
) -> None:
    repo = make_repo(tmp_path / "repo")
    script = (
        "import os, pathlib; n = os.environ['ORCH_ATTEMPT']; "
        "pathlib.Path('out.txt').write_text('good' if n == '2' else 'bad'); print('wrote', n)"
    )
    view = run_plan(
        orchd,
        tmp_path,
        repo,
        [
            {
                "id": "t",
                "command": ["python3", "-c", script],
                "verify": [GOOD],
                "max_retries": 2,
                "backoff": {"initial": "10ms", "jitter": "none"},
            }
        ],
    )
    task = view["tasks"][0]
    run_id = view["summary"]["run_id"]
    assert task["state"] == "completed" and task["attempts"] == 2, task
    first, second = why(orchd, run_id, "t")["attempts"]
    assert first["outcome"] == "verify_failed" and first["exit_code"] == 122
    assert first["reason"] == f"verify: {shlex.join(GOOD)}: exit 1"
    assert first["verify"]["output"] == "checking"
    assert second["outcome"] == "success" and second["verify"]["result"] == "passed"
    story = orchd.orchctl("why", run_id, "t").stdout
    assert "-> verify_failed: verify: " in story and "| checking" in story
    assert "not spending a retry" not in story  # a failed check spends one, as a crash does
    assert git(repo, "show", f"orch/{run_id}/t:out.txt") == "good"  # the passing attempt's


@pytest.mark.parametrize("resume", [True, False])
def test_the_next_attempt_is_told_why_the_check_failed(
    make_daemon: Callable[..., Daemon],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    resume: bool,
) -> None:
    """The launcher feeds the last attempt's failed check to the adapter: a resumed session is told
    to fix its work, a fresh one gets the task's prompt and the check's output."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    claude = bin_dir / "claude"
    claude.write_text(
        f"#!{sys.executable}\nimport runpy\nrunpy.run_path({str(AGENTS / 'checked.py')!r})\n"
    )
    claude.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    orchd = make_daemon()
    task = {"id": "t", "agent": "claude", "prompt": "Write out.txt.", "resume": resume}
    view = run_plan(
        orchd,
        tmp_path,
        make_repo(tmp_path / "repo"),
        [{**task, "verify": [GOOD], "max_retries": 1, "backoff": {"initial": "10ms"}}],
    )
    run_id = view["summary"]["run_id"]
    assert view["tasks"][0]["state"] == "completed" and view["tasks"][0]["attempts"] == 2, view
    first, second = (
        orchd.orchctl("logs", run_id, "t", "--attempt", str(n), "--raw", check=True).stdout
        for n in (1, 2)
    )
    assert "resumed: -" in first and "prompt: Write out.txt." in first
    check = f"`{shlex.join(GOOD)}`"
    if resume:  # the agent's own session goes on, told what to fix
        assert "resumed: s-t-1" in second
        assert "prompt: You finished the task, but its check did not pass: " + check in second
    else:  # a fresh session: the task, then what the check said
        assert "resumed: -" in second and "prompt: Write out.txt.\\n\\nA previous attempt" in second
    assert "```\\nchecking\\n```" in second and check in second
    assert git(tmp_path / "repo", "show", f"orch/{run_id}/t:out.txt") == "good\n"


def test_a_check_that_is_not_found_fails_the_task_at_once(orchd: Daemon, tmp_path: Path) -> None:
    view = run_plan(
        orchd,
        tmp_path,
        make_repo(tmp_path / "repo"),
        [
            {
                "id": "t",
                "command": agent("edit", "out.txt=good"),
                "verify": [["no-such-checker-orch", "-q"]],
                "max_retries": 3,
            }
        ],
    )
    task = view["tasks"][0]
    assert task["state"] == "failed" and task["attempts"] == 1, task
    assert task["reason"].startswith("verify: no-such-checker-orch -q: not found"), task["reason"]
    assert task["verify"]["result"] == "not_found"


def test_a_hanging_check_is_killed_at_its_timeout(orchd: Daemon, tmp_path: Path) -> None:
    view = run_plan(
        orchd,
        tmp_path,
        make_repo(tmp_path / "repo"),
        [
            {
                "id": "t",
                "command": agent("edit", "out.txt=good"),
                "verify": [["sleep", "600"]],
                "verify_timeout": "0.5s",
                "timeout": "60s",
            }
        ],
    )
    task = view["tasks"][0]
    assert task["state"] == "failed" and task["attempts"] == 1, task
    assert task["reason"].startswith("verify: sleep 600: timed out after 0.5s"), task["reason"]
    assert task["verify"]["result"] == "timeout"


def test_what_a_check_changes_is_put_back_and_never_committed(
    orchd: Daemon, tmp_path: Path
) -> None:
    repo = make_repo(tmp_path / "repo")
    meddle = (
        "import pathlib; pathlib.Path('app.py').write_text('reformatted\\n'); "
        "pathlib.Path('out.txt').write_text('changed by the check\\n'); "
        "pathlib.Path('report.xml').write_text('<report/>')"
    )
    view = run_plan(
        orchd,
        tmp_path,
        repo,
        [
            {
                "id": "t",
                "command": agent("edit", "out.txt=good"),
                "verify": [["python3", "-c", meddle]],
            }
        ],
    )
    task = view["tasks"][0]
    run_id = view["summary"]["run_id"]
    assert task["state"] == "completed" and task["files"] == ["out.txt"], task
    assert git(repo, "show", f"orch/{run_id}/t:out.txt") == "good\n"
    log = orchd.orchctl("logs", run_id, "t", check=True).stdout
    assert (
        "orch: the checks changed 3 files (app.py, out.txt, report.xml); put back as the agent left them"
        in log
    )
    worktree = Path(orchd.home) / "state" / "worktrees" / run_id / "t"
    assert (worktree / "app.py").read_text() == "print('hello')\n"
    assert not (worktree / "report.xml").exists()


def test_a_quiet_check_is_not_a_stalled_agent(orchd: Daemon, tmp_path: Path) -> None:
    """`stall` watches the agent; a check that prints nothing for longer is bounded by its own
    verify_timeout instead."""
    quiet = ["python3", "-c", "import time; time.sleep(3)"]
    view = run_plan(
        orchd,
        tmp_path,
        make_repo(tmp_path / "repo"),
        [{"id": "t", "command": agent("edit", "out.txt=good"), "stall": "1s", "verify": [quiet]}],
    )
    task = view["tasks"][0]
    assert task["state"] == "completed" and task["attempts"] == 1, task
    assert task["verify"]["result"] == "passed"


def test_checks_of_a_task_without_a_worktree_run_in_its_workdir(
    orchd: Daemon, tmp_path: Path
) -> None:
    workdir = tmp_path / "plain"
    workdir.mkdir()
    path = write_plan(
        tmp_path / "plan.json",
        {
            "name": "plain",
            "workdir": str(workdir),
            "verify": [GOOD],  # the plan's own: every task's, unless it says otherwise
            "defaults": {"agent": "command", "max_retries": 0},
            "tasks": [
                {"id": "good", "command": agent("edit", "out.txt=good")},
                {"id": "unchecked", "command": ["echo", "done"], "verify": []},
            ],
        },
    )
    view = json.loads(orchd.orchctl("submit", str(path), "--wait", "--json", check=True).stdout)
    tasks = {t["id"]: t for t in view["tasks"]}
    assert tasks["good"]["verify"]["result"] == "passed"
    assert tasks["good"]["result"].startswith("edited 1 file")
    assert tasks["unchecked"]["verify"] is None and tasks["unchecked"]["result"] == "done"


def _log_says(orchd: Daemon, text: str) -> bool:
    return any(text in p.read_text() for p in (Path(orchd.home) / "state" / "logs").rglob("*.log"))


def _running(tag: str) -> bool:
    """Whether a process whose command line holds `tag` still runs."""
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and tag.encode() in (proc / "cmdline").read_bytes():
                return True
        except OSError:
            continue
    return False


def test_cancel_stops_a_check_with_its_attempt(orchd: Daemon, tmp_path: Path) -> None:
    tag = f"orch-check-{tmp_path.name}"
    hang = ["python3", "-c", "import time, sys; time.sleep(600)", tag]
    path = write_plan(
        tmp_path / "plan.json",
        {
            "workdir": str(make_repo(tmp_path / "repo")),
            "isolation": "worktree",
            "defaults": {"agent": "command", "max_retries": 0},
            "tasks": [{"id": "t", "command": agent("edit", "out.txt=good"), "verify": [hang]}],
        },
    )
    run_id = json.loads(orchd.orchctl("submit", str(path), "--json", check=True).stdout)["run_id"]
    wait_until(lambda: _log_says(orchd, "orch: verify 1/1: ") and _running(tag), what="the check")
    orchd.orchctl("cancel", run_id, check=True)
    done = json.loads(orchd.orchctl("wait", run_id, "--json").stdout)
    assert done["tasks"][0]["state"] == "cancelled"
    wait_until(lambda: not _running(tag), timeout=30, what="the check to end")


def test_a_check_outlives_a_crash_of_orchd(make_daemon: Any, tmp_path: Path) -> None:
    orchd = make_daemon()
    go = tmp_path / "go"
    gate = [
        "python3",
        "-c",
        f"import os, time\nwhile not os.path.exists({str(go)!r}): time.sleep(0.02)",
    ]
    path = write_plan(
        tmp_path / "plan.json",
        {
            "workdir": str(make_repo(tmp_path / "repo")),
            "isolation": "worktree",
            "defaults": {"agent": "command", "max_retries": 0},
            "tasks": [
                {"id": "t", "command": agent("edit", "out.txt=good"), "verify": [gate, GOOD]}
            ],
        },
    )
    run_id = json.loads(orchd.orchctl("submit", str(path), "--json", check=True).stdout)["run_id"]
    wait_until(lambda: _log_says(orchd, "orch: verify 1/2: "), what="the first check")
    orchd.kill()
    go.touch()  # the check ends while no orchd listens
    orchd = make_daemon()
    done = json.loads(orchd.orchctl("wait", run_id, "--json", timeout=60).stdout)
    task = done["tasks"][0]
    assert task["state"] == "completed" and task["attempts"] == 1, task
    assert task["verify"]["result"] == "passed" and task["files"] == ["out.txt"]


def test_only_a_task_with_checks_or_a_worktree_gets_a_process_around_its_agent(
    orchd: Daemon, tmp_path: Path
) -> None:
    """A task with neither is started by the keeper directly (the dispatch benchmark relies on
    it); with checks, the agent is a child of the attempt's process, which then runs them."""
    parent = [
        "python3",
        "-c",
        "import os; print(open(f'/proc/{os.getppid()}/cmdline').read().replace(chr(0), ' '))",
    ]
    path = write_plan(
        tmp_path / "plan.json",
        {
            "workdir": str(tmp_path),
            "defaults": {"agent": "command", "max_retries": 0},
            "tasks": [
                {"id": "plain", "command": parent},
                {"id": "checked", "command": parent, "verify": [["true"]]},
            ],
        },
    )
    view = json.loads(orchd.orchctl("submit", str(path), "--wait", "--json", check=True).stdout)
    logs = {t["id"]: Path(t["log_path"]).read_text() for t in view["tasks"]}
    assert "-m orchd.keeper" in logs["plain"] and "orch:" not in logs["plain"]
    assert "-m orchd.attempt" in logs["checked"]
