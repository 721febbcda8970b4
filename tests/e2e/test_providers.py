"""Providers, end to end: the real Claude Code CLI (its own retries on) against a stub Anthropic API.

What orch reads from the CLI's stream while it runs decides: a rejected key ends the attempt
at the CLI's first retry and holds the key's provider (its other tasks wait, reaching no API,
until `orchctl retry`); one usage-limit rejection holds the provider until the reset; a run
stops starting sessions once its budget is spent.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.conftest import wait_until
from tests.e2e.stubs.base import Fail, Reply

pytestmark = pytest.mark.timeout(240)

RETRYING = {"CLAUDE_CODE_MAX_RETRIES": "10"}  # as users run it: the CLI retries errors itself


def status(rig: Any, run_id: str) -> dict[str, Any]:
    view = json.loads(rig.daemon.orchctl("status", run_id, "--json", check=True).stdout)["runs"][0]
    view["by_id"] = {t["id"]: t for t in view["tasks"]}
    return view


def test_a_rejected_key_fails_fast_and_holds_its_provider_until_retry(rig: Callable) -> None:
    claude = rig("claude", env=RETRYING)
    claude.stub.script("[p", claude.stub.unauthorized)
    tasks = [{"id": f"p{i}", "prompt": f"[p{i}] Say hello."} for i in range(6)]
    run_id = claude.submit(tasks, concurrency=2)["run_id"]

    def two_failed() -> dict[str, Any] | None:
        view = status(claude, run_id)
        counts = view["summary"]["counts"]
        return view if counts["failed"] == 2 and counts["running"] == 0 else None

    view = wait_until(two_failed, timeout=120, what="the first two tasks to fail")
    failed = [t for t in view["tasks"] if t["state"] == "failed"]
    for task in failed:
        assert task["attempts"] == 1, task  # permanent at once: no retry of a rejected key
        assert "credentials rejected" in task["reason"] and "ANTHROPIC_API_KEY" in task["reason"]
        # the CLI would retry for minutes; orch stopped it at its first retry
        assert len(claude.stub.model_requests(f"[{task['id']}]")) <= 3, task
    waiting = [t for t in view["tasks"] if t["state"] == "pending"]
    assert len(waiting) == 4
    for task in waiting:
        assert task["held"] and "credentials rejected" in task["held"], task
        assert not claude.stub.model_requests(f"[{task['id']}]")  # none reached the API
    (provider,) = view["summary"]["providers"]
    assert provider["held"] and provider["cause"] == "auth"
    events = claude.daemon.orchctl("events", "--run", run_id, "--json", check=True).stdout
    assert '"kind":"ProviderHeld"' in events.replace(" ", "")

    claude.stub.script("[p", Reply("Hello after the fix."))
    retried = claude.daemon.orchctl("retry", run_id, check=True)
    assert retried.returncode == 0, retried.stderr
    done = claude.daemon.orchctl("wait", run_id, "--json", timeout=180)
    assert done.returncode == 0, done.stdout
    final = status(claude, run_id)
    assert [t["state"] for t in final["tasks"]] == ["completed"] * 6
    assert not final["summary"]["providers"][0]["held"]


def test_with_on_provider_hold_fail_the_waiting_tasks_fail_at_once(rig: Callable) -> None:
    claude = rig("claude", env=RETRYING, on_provider_hold="fail")
    claude.stub.script("[f", claude.stub.unauthorized)
    tasks = [{"id": f"f{i}", "prompt": f"[f{i}] Say hello."} for i in range(4)]
    view = claude.run(tasks, concurrency=1)
    assert [t["state"] for t in view["tasks"]] == ["failed"] * 4
    first, *rest = view["tasks"]
    assert first["attempts"] == 1 and "credentials rejected" in first["reason"]
    for task in rest:
        assert task["attempts"] == 0 and "credentials rejected" in task["reason"], task
    assert len(claude.stub.model_requests()) <= 3


def test_one_usage_limit_holds_the_provider_until_its_reset(rig: Callable) -> None:
    claude = rig(
        "claude",
        env={**RETRYING, "ANTHROPIC_API_KEY": "", "CLAUDE_CODE_OAUTH_TOKEN": "sk-ant-oat01-dummy"},
    )
    reset = int(time.time()) + 8
    limited = Fail(
        429,
        "rate_limit_error",
        "rate limited",
        {
            "anthropic-ratelimit-unified-status": "rejected",
            "anthropic-ratelimit-unified-reset": str(reset),
            "anthropic-ratelimit-unified-representative-claim": "five_hour",
        },
    )
    claude.stub.script("[u", limited, limited, Reply("Done."))  # the two sessions running see it
    tasks = [{"id": f"u{i}", "prompt": f"[u{i}] Say something."} for i in range(8)]
    view = claude.run(tasks, concurrency=2, max_retries=0)
    assert [t["state"] for t in view["tasks"]] == ["completed"] * 8, view["tasks"]
    early = [r for r in claude.stub.model_requests() if r.at < reset - 0.5]
    # only the sessions already running when the limit was seen reached the API before the reset
    assert len({r.session for r in early}) <= 2, early
    for request in claude.stub.model_requests():
        if request.answer is not None and isinstance(request.answer, Reply):
            assert request.at >= reset - 0.5
    assert sum(t["attempts"] for t in view["tasks"]) <= 8 + 2  # no task parked on its own


def test_a_run_starts_no_session_once_its_budget_is_spent(rig: Callable) -> None:
    claude = rig("claude")
    claude.stub.script("[b", Reply("Spent.", tokens_in=200_000, tokens_out=1_000))
    tasks = [{"id": f"b{i}", "prompt": f"[b{i}] Say something."} for i in range(4)]
    done = claude.submit(tasks, concurrency=1, wait=True, plan={"budget_usd": 0.000001})
    run_id = done["summary"]["run_id"]
    view = status(claude, run_id)
    states = [t["state"] for t in view["tasks"]]
    assert states == ["completed", "failed", "failed", "failed"], view["tasks"]
    for task in view["tasks"][1:]:
        assert task["reason"].startswith("not started: budget $1e-06 reached"), task
        assert task["attempts"] == 0
    assert view["summary"]["state"] == "failed"
    assert len(claude.stub.model_requests()) == 1
