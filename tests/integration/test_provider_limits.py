"""A provider's limit, with a fake Claude Code on PATH: a session rate-limited before its
provider's first answer is deferred (stopped, run again, no retry spent), the provider's limit is
lowered and logged, and the run completes."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import AGENTS, Daemon, write_plan


@pytest.fixture
def fake_claude(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A `claude` on PATH that runs tests/agents/claude_like.py."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    claude = bin_dir / "claude"
    claude.write_text(
        f"#!{sys.executable}\nimport runpy\nrunpy.run_path({str(AGENTS / 'claude_like.py')!r})\n"
    )
    claude.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-fake")
    monkeypatch.setenv("FAKE_CLAUDE_LIMITED", "1")  # every task's first attempt meets a 429
    return claude


def test_a_session_rate_limited_before_its_first_answer_is_deferred(
    fake_claude: Path, make_daemon: Callable[..., Daemon], tmp_path: Path
) -> None:
    daemon = make_daemon()
    plan = write_plan(
        tmp_path / "plan.json",
        {
            "name": "deferred",
            "workdir": str(tmp_path),
            "concurrency": 3,
            "isolation": "none",
            "defaults": {"agent": "claude", "max_retries": 0, "timeout": "5m"},
            "tasks": [{"id": f"t{i}", "prompt": "Say hello."} for i in range(3)],
        },
    )
    done = daemon.orchctl("submit", str(plan), "--wait", "--json", timeout=120)
    view = json.loads(done.stdout)
    assert done.returncode == 0, view
    for task in view["tasks"]:  # no retry to spend, yet each ran twice
        assert task["state"] == "completed" and task["attempts"] == 2, task
    run_id = view["summary"]["run_id"]
    why = json.loads(daemon.orchctl("why", run_id, "t0", "--json", check=True).stdout)
    first = why["attempts"][0]
    assert first["outcome"] == "deferred" and "before its first answer" in first["reason"], first
    out = daemon.orchctl("events", "--run", run_id, "--json", check=True).stdout
    limited = [e for e in map(json.loads, out.splitlines()) if e["kind"] == "ProviderLimited"]
    assert limited and limited[0]["event"]["limit"] == 1, limited
