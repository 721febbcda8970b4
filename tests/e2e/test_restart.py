"""Restarting orchd costs no Claude Code session: the real CLI against the stub Anthropic API,
each model answer taking seconds; `orchctl daemon restart` three times while sessions wait on
their answers. Each task completes on its first attempt, and the stub saw one session (one
request chain) per task, not two."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from tests.conftest import wait_until
from tests.e2e.stubs.base import Reply, Slow

pytestmark = pytest.mark.timeout(240)


def test_restarts_during_claude_code_sessions_cost_no_session(rig: Callable) -> None:
    claude = rig("claude")
    claude.stub.script("[r", Slow(4.0, Reply("Done after thinking.")))
    tasks = [{"id": f"r{i}", "prompt": f"[r{i}] Think, then say done."} for i in range(6)]
    run_id = claude.submit(tasks, concurrency=3, max_retries=0)["run_id"]
    for n in range(1, 4):  # each time while sessions wait on the model's answer
        wait_until(
            lambda n=n: len(claude.stub.model_requests("[r")) >= n,
            timeout=120,
            what="a session to ask the model",
        )
        said = claude.daemon.orchctl("daemon", "restart", check=True).stdout
        assert "sessions kept running, taken over" in said, said
    done = claude.daemon.orchctl("wait", run_id, "--json", timeout=200)
    assert done.returncode == 0, done.stdout
    view = json.loads(claude.daemon.orchctl("status", run_id, "--json", check=True).stdout)
    by_id = {t["id"]: t for t in view["runs"][0]["tasks"]}
    assert {(t["state"], t["attempts"]) for t in by_id.values()} == {("completed", 1)}, by_id
    chains = {
        t["id"]: {r.session for r in claude.stub.model_requests(f"[{t['id']}]")} for t in tasks
    }
    assert all(len(sessions) == 1 for sessions in chains.values()), chains  # one chain each
    answered = {t: len(claude.stub.model_requests(f"[{t}]")) for t in chains}
    events = claude.daemon.orchctl("events", "--run", run_id, "--json", check=True).stdout
    adopted = sum(json.loads(line)["kind"] == "AttemptAdopted" for line in events.splitlines())
    print(f"\n3 restarts during 6 Claude Code sessions: {adopted} taken over; requests {answered}")
    assert adopted >= 3
