"""Claude Code end to end: the real CLI (tests/e2e/node_modules) against a stub Anthropic API, behind a real orchd."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import Daemon
from tests.e2e import scenarios
from tests.e2e.stubs.base import Fail, Reply

pytestmark = pytest.mark.timeout(180)


def test_success_cost_rate_limit_auth_and_edit(rig: Callable) -> None:
    tasks = scenarios.mixed_plan(rig("claude"))
    assert tasks["answer"]["cost_usd"] > 0  # Claude Code prices the usage the stub reported
    assert "ANTHROPIC_API_KEY" in tasks["denied"]["reason"]


def test_twelve_tasks_at_concurrency_three(rig: Callable) -> None:
    scenarios.concurrency(rig("claude", hold=2.0))


def test_usage_limit_parks_until_the_reset_without_spending_a_retry(rig: Callable) -> None:
    # a Claude subscription (OAuth token) reports its usage windows; the API-key rate limit does not
    claude = rig(
        "claude", env={"ANTHROPIC_API_KEY": "", "CLAUDE_CODE_OAUTH_TOKEN": "sk-ant-oat01-dummy"}
    )
    reset = (
        int(time.time()) + 6
    )  # margin for a loaded machine: a reset already past is a plain retry
    claude.stub.script(
        "[limited]",
        Fail(
            429,
            "rate_limit_error",
            "rate limited",
            {
                "anthropic-ratelimit-unified-status": "rejected",
                "anthropic-ratelimit-unified-reset": str(reset),
                "anthropic-ratelimit-unified-representative-claim": "five_hour",
            },
        ),
        Reply("Back after the reset."),
    )
    task = claude.run([{"id": "limited", "prompt": "[limited] Say something."}], max_retries=0)[
        "by_id"
    ]["limited"]
    assert task["state"] == "completed" and task["attempts"] == 2, task
    assert task["result"] == "Back after the reset."
    second = claude.stub.model_requests("[limited]")[-1]
    assert second.at >= reset - 0.5  # parked until the reset, not a backoff of 0.1s


def test_not_installed_fails_at_once(
    tmp_path: Path, make_daemon: Callable[..., Daemon], monkeypatch: pytest.MonkeyPatch
) -> None:
    scenarios.not_installed("claude", tmp_path, make_daemon, monkeypatch)


def test_resume_continues_the_session(rig: Callable) -> None:
    scenarios.resumed(rig("claude"))


def test_a_prompt_longer_than_an_argument_can_be_reaches_the_model(rig: Callable) -> None:
    scenarios.long_prompt(rig("claude"))
