"""Gemini CLI end to end: the real CLI (tests/e2e/node_modules) against a stub Gemini API, behind a real orchd.

Gemini CLI retries a 429 or a 5xx by itself, with backoff, for minutes; only
its last word reaches orch. The stub's rate limit therefore says `limit: 0`,
which Gemini CLI takes as final at once, so orch's own retry is what the test
sees (as it is after Gemini CLI's retries run out). The Gemini API answers a
bad key with HTTP 400 (API_KEY_INVALID), not 401; that is the stub's refusal.

All the shared scenarios apply. Claude's usage-limit test has no short
counterpart: Gemini CLI waits out by itself any quota that resets within five
minutes, and orch parks only for a wait of a minute or more, so a park here
is at least five minutes long; the test sees the task parked until the named
reset (an hour, midnight Pacific for a daily quota) and cancels the run.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from orchd.agents.gemini import next_quota_reset
from tests.conftest import Daemon, wait_until
from tests.e2e import scenarios

pytestmark = pytest.mark.timeout(180)


def test_success_tokens_rate_limit_auth_and_edit(rig: Callable) -> None:
    tasks = scenarios.mixed_plan(rig("gemini"))
    assert tasks["answer"]["cost_usd"] is None  # Gemini CLI reports tokens, not money
    assert (
        "GEMINI_API_KEY" in tasks["denied"]["reason"]
        and "API key not valid" in tasks["denied"]["reason"]
    )


def test_twelve_tasks_at_concurrency_three(rig: Callable) -> None:
    # Gemini CLI starts by relaunching itself with a larger heap: a second node start-up (a third of the
    # CPU of a short session) that this test, about orch's concurrency, does without
    scenarios.concurrency(rig("gemini", hold=2.0, env={"GEMINI_CLI_NO_RELAUNCH": "true"}))


def test_not_installed_fails_at_once(
    tmp_path: Path, make_daemon: Callable[..., Daemon], monkeypatch: pytest.MonkeyPatch
) -> None:
    scenarios.not_installed("gemini", tmp_path, make_daemon, monkeypatch)


def test_resume_continues_the_session(rig: Callable) -> None:
    gemini = rig("gemini")
    scenarios.resumed(gemini)
    # the stub names a session by its workspace and prompt, which a fresh session would share: the retry
    # proves it resumed by carrying the first attempt's write_file call and its result in its history
    first, _, retry = gemini.stub.model_requests("[resume]")
    calls = [
        part for turn in retry.body["contents"] for part in turn["parts"] if "functionCall" in part
    ]
    assert [c["functionCall"]["name"] for c in calls] == ["write_file"], retry.body["contents"]
    assert retry.body["contents"][0]["parts"][1:] == first.body["contents"][0]["parts"][1:]


def test_a_quota_gemini_gives_up_on_parks_the_task_until_it_resets(rig: Callable) -> None:
    gemini = rig("gemini")
    gemini.stub.script("[hour]", gemini.stub.retry_in_an_hour)
    gemini.stub.script("[daily]", gemini.stub.daily_quota)
    run_id = gemini.submit(
        [
            {"id": "hour", "prompt": "[hour] Say something."},
            {"id": "daily", "prompt": "[daily] Say something."},
        ]
    )["run_id"]

    def waiting() -> dict[str, dict] | None:
        tasks = json.loads(gemini.daemon.orchctl("status", run_id, "--json", check=True).stdout)[
            "runs"
        ][0]["tasks"]
        return {t["id"]: t for t in tasks} if all(t["due_at"] for t in tasks) else None

    tasks = wait_until(
        waiting, timeout=90, interval=0.5, what="both tasks to wait for their next attempt"
    )
    for task in ("hour", "daily"):
        attempt = json.loads(
            gemini.daemon.orchctl("why", run_id, task, "--json", check=True).stdout
        )["attempts"][0]
        assert attempt["outcome"] == "park" and tasks[task]["state"] == "retrying", (
            attempt,
            tasks[task],
        )
        due = (
            attempt["finished_at"] + 3600 if task == "hour" else next_quota_reset()
        )  # midnight Pacific
        assert tasks[task]["due_at"] == pytest.approx(
            due, abs=5
        )  # not the 0.2s backoff: no retry was spent
        assert len(gemini.stub.model_requests(f"[{task}]")) == 1  # Gemini CLI gave up at once too
    gemini.daemon.orchctl("cancel", run_id, check=True)


def test_a_prompt_longer_than_an_argument_can_be_reaches_the_model(rig: Callable) -> None:
    scenarios.long_prompt(rig("gemini"))
