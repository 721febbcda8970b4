"""Providers, end to end: the real Claude Code, Codex and Gemini CLIs, their own retries on, as
users run them, against stub APIs that answer as the real ones do (docs/providers.md).

What orch reads from a CLI's stream while it runs decides: a rejected key ends the attempt at
the CLI's first retry (Claude Code, Codex) or as it gives up at once (Gemini CLI, whose API says
400), and holds the key's provider: its other tasks wait, reaching no API, until `orchctl retry`.
One usage limit holds the provider until its reset (Claude: the unified reset header; Codex: the
minute it prints; Gemini: midnight Pacific time for a daily quota). A storm of 429s lowers the
provider's limit (ProviderLimited) and the run still completes. A run starts no session once its
budget is spent.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest

from orchd.streams.gemini import next_quota_reset
from tests.conftest import wait_until
from tests.e2e.stubs.base import Reply, Slow

pytestmark = pytest.mark.timeout(300)

AGENTS = ["claude", "codex", "gemini"]
KEYS = {"claude": "ANTHROPIC_API_KEY", "codex": "OPENAI_API_KEY", "gemini": "GEMINI_API_KEY"}
SUBSCRIPTION = {"ANTHROPIC_API_KEY": "", "CLAUDE_CODE_OAUTH_TOKEN": "sk-ant-oat01-dummy"}
# Gemini CLI starts by relaunching itself with a larger heap: a second node start-up each session
QUICK = {"gemini": {"GEMINI_CLI_NO_RELAUNCH": "true"}}


def status(rig: Any, run_id: str) -> dict[str, Any]:
    view = json.loads(rig.daemon.orchctl("status", run_id, "--json", check=True).stdout)["runs"][0]
    view["by_id"] = {t["id"]: t for t in view["tasks"]}
    return view


def events(rig: Any, run_id: str, kind: str) -> list[dict[str, Any]]:
    out = rig.daemon.orchctl("events", "--run", run_id, "--json", check=True).stdout
    return [e for e in map(json.loads, out.splitlines()) if e["kind"] == kind]


@pytest.mark.parametrize("agent", AGENTS)
def test_a_rejected_key_fails_fast_and_holds_its_provider_until_retry(
    rig: Callable, agent: str
) -> None:
    cli = rig(agent, own_retries=True, env=QUICK.get(agent))
    cli.stub.script("[p", cli.stub.unauthorized)
    tasks = [{"id": f"p{i}", "prompt": f"[p{i}] Say hello."} for i in range(6)]
    run_id = cli.submit(tasks, concurrency=2)["run_id"]

    def two_failed() -> dict[str, Any] | None:
        view = status(cli, run_id)
        counts = view["summary"]["counts"]
        return view if counts["failed"] == 2 and counts["running"] == 0 else None

    view = wait_until(two_failed, timeout=120, what="the first two tasks to fail")
    failed = [t for t in view["tasks"] if t["state"] == "failed"]
    for task in failed:
        assert task["attempts"] == 1, task  # permanent at once: no retry of a rejected key
        assert KEYS[agent] in task["reason"], task
        # Claude Code would retry for 3 minutes, Codex 5 times: orch stopped it at its first retry
        assert len(cli.stub.model_requests(f"[{task['id']}]")) <= 3, task
    waiting = [t for t in view["tasks"] if t["state"] == "pending"]
    assert len(waiting) == 4
    for task in waiting:
        assert task["held"] and "credentials rejected" in task["held"], task
        assert not cli.stub.model_requests(f"[{task['id']}]")  # none reached the API
    (provider,) = view["summary"]["providers"]
    assert provider["held"] and provider["cause"] == "auth"
    assert events(cli, run_id, "ProviderHeld")

    cli.stub.script("[p", Reply("Hello after the fix."))
    cli.daemon.orchctl("retry", run_id, check=True)
    done = cli.daemon.orchctl("wait", run_id, "--json", timeout=240)
    assert done.returncode == 0, done.stdout
    final = status(cli, run_id)
    assert [t["state"] for t in final["tasks"]] == ["completed"] * 6
    assert not final["summary"]["providers"][0]["held"]


def test_with_on_provider_hold_fail_the_waiting_tasks_fail_at_once(rig: Callable) -> None:
    claude = rig("claude", own_retries=True, on_provider_hold="fail")
    claude.stub.script("[f", claude.stub.unauthorized)
    tasks = [{"id": f"f{i}", "prompt": f"[f{i}] Say hello."} for i in range(4)]
    view = claude.run(tasks, concurrency=1)
    assert [t["state"] for t in view["tasks"]] == ["failed"] * 4
    first, *rest = view["tasks"]
    assert first["attempts"] == 1 and "credentials rejected" in first["reason"]
    for task in rest:
        assert task["attempts"] == 0 and "credentials rejected" in task["reason"], task
    assert len(claude.stub.model_requests()) <= 3


@pytest.mark.parametrize("agent", ["claude", "codex"])
def test_one_usage_limit_holds_the_provider_until_its_reset(rig: Callable, agent: str) -> None:
    cli = rig(agent, own_retries=True, env=SUBSCRIPTION if agent == "claude" else None)
    # Claude Code reads the reset from the API's header; Codex prints the minute (local time)
    # and orch waits to that minute's end: up to a minute more
    reset = time.time() + 8
    ends = reset if agent == "claude" else (reset // 60 + 1) * 60
    limited = cli.stub.usage_limit(reset)
    cli.stub.script("[u", limited, limited, Reply("Done."))  # the two sessions running see it
    tasks = [{"id": f"u{i}", "prompt": f"[u{i}] Say something."} for i in range(6)]
    view = cli.run(tasks, concurrency=2, max_retries=0)
    assert [t["state"] for t in view["tasks"]] == ["completed"] * 6, view["tasks"]
    early = [r for r in cli.stub.model_requests() if r.at < ends - 0.5]
    # only the sessions already running when the limit was seen reached the API before the reset
    assert len({r.session for r in early}) <= 2, early
    for request in cli.stub.model_requests():
        if isinstance(request.answer, Reply):
            assert request.at >= ends - 0.5, (request.at, ends)
    assert sum(t["attempts"] for t in view["tasks"]) <= 6 + 2  # no task parked on its own
    (held,) = events(cli, view["summary"]["run_id"], "ProviderHeld")
    assert held["event"]["until"] == pytest.approx(ends, abs=1)


def test_one_daily_quota_holds_gemini_until_midnight_pacific_or_a_retry(rig: Callable) -> None:
    gemini = rig("gemini", own_retries=True, env=QUICK["gemini"])
    gemini.stub.script("[d", gemini.stub.usage_limit(time.time() + 3600))  # a daily quota
    tasks = [{"id": f"d{i}", "prompt": f"[d{i}] Say something."} for i in range(4)]
    run_id = gemini.submit(tasks, concurrency=1)["run_id"]

    def held() -> dict[str, Any] | None:
        view = status(gemini, run_id)
        parked = view["by_id"]["d0"]["state"] == "retrying"
        return view if parked and view["summary"]["providers"][0]["held"] else None

    view = wait_until(held, timeout=120, what="the provider held, the first task parked")
    (provider,) = view["summary"]["providers"]
    assert provider["cause"] == "usage_limit"
    assert provider["until"] == pytest.approx(next_quota_reset(), abs=5)
    first = view["by_id"]["d0"]
    assert first["state"] == "retrying" and first["due_at"] == pytest.approx(
        next_quota_reset(), abs=5
    )  # parked until the quota resets, no retry spent
    for task in view["tasks"][1:]:
        assert task["state"] == "pending" and "daily quota" in task["held"], task
    assert len(gemini.stub.model_requests()) == 1  # Gemini CLI gave up at once; none other asked

    gemini.stub.script("[d", Reply("Done."))
    gemini.daemon.orchctl("retry", run_id, check=True)  # the user says the quota is fine now
    wait_until(
        lambda: status(gemini, run_id)["summary"]["counts"]["completed"] == 3,
        timeout=180,
        what="the held tasks to run",
    )
    assert status(gemini, run_id)["by_id"]["d0"]["state"] == "retrying"  # still parked
    gemini.daemon.orchctl("cancel", run_id, check=True)


@pytest.mark.parametrize("agent", AGENTS)
def test_a_storm_of_429s_lowers_the_providers_limit(rig: Callable, agent: str) -> None:
    cli = rig(agent, own_retries=True, env=QUICK.get(agent))
    load = cli.stub.limit(1, retry_after=1.0)  # one request at a time; 429 + Retry-After to others
    cli.stub.script("[s", Slow(1.5, Reply("Served.")))
    tasks = [{"id": f"s{i}", "prompt": f"[s{i}] Say something."} for i in range(6)]
    view = cli.run(tasks, concurrency=4, max_retries=3)
    assert [t["state"] for t in view["tasks"]] == ["completed"] * 6, view["tasks"]
    assert load.rejected and load.peak == 1
    limited = events(cli, view["summary"]["run_id"], "ProviderLimited")
    assert min(e["event"]["limit"] or 99 for e in limited) == 1, limited


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
