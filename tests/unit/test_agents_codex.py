"""The Codex adapter on recorded output (tests/fixtures/agents/codex, from `python -m tests.e2e.record_fixtures`)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from orchd.agents import adapter_for
from orchd.agents.base import PARK, PERMANENT, RETRY, SUCCESS
from orchd.agents.codex import reset_time
from orchd.plan import TaskSpec
from tests.unit.recorded import Recorded

TASK = TaskSpec(id="t", agent="codex", cwd="/work/repo", prompt="Add type hints to src/core.py.")
codex = adapter_for("codex")
_recorded = Recorded(TASK)
classify, fixture = _recorded.classify, _recorded.fixture


def test_success_reports_result_thread_and_tokens_but_no_cost(tmp_path: Path) -> None:
    outcome = classify(tmp_path, fixture("success"), exit_code=0)
    assert outcome.outcome == SUCCESS
    report = outcome.report
    assert report.result == "The answer is 42."
    assert len(report.session_id) == 36
    assert (report.tokens_in, report.tokens_out) == (1200, 80)
    assert report.cost_usd is None  # Codex reports tokens, not money


def test_an_edit_is_a_success_with_the_final_text(tmp_path: Path) -> None:
    outcome = classify(tmp_path, fixture("edit"), exit_code=0)
    assert outcome.outcome == SUCCESS and outcome.report.result == "I wrote notes.txt."


@pytest.mark.parametrize("name", ["rate_limited", "server_error"])
def test_rate_limits_and_server_errors_retry(tmp_path: Path, name: str) -> None:
    outcome = classify(tmp_path, fixture(name))
    assert outcome.outcome == RETRY and outcome.park_until is None
    assert outcome.reason.startswith("Codex: ")
    assert outcome.report.session_id


def test_a_usage_limit_with_a_reset_time_parks_until_then(tmp_path: Path) -> None:
    outcome = classify(tmp_path, fixture("usage_limit"))
    assert outcome.outcome == PARK
    # Codex prints the reset in local time ("try again at Mar 17th, 2030 5:46 PM" when recorded in
    # UTC), without its seconds: orch waits to the end of that minute
    assert outcome.park_until == dt.datetime(2030, 3, 17, 17, 47).astimezone().timestamp()


def test_a_usage_limit_without_a_time_retries(tmp_path: Path) -> None:
    later = fixture("usage_limit").replace(" or try again at Mar 17th, 2030 5:46 PM", "")
    assert classify(tmp_path, later).outcome == RETRY


def test_reset_time_of_today_and_tomorrow() -> None:
    now = dt.datetime(2026, 5, 1, 10, 0)
    assert reset_time("Try again at 11:30 AM.", now) == now.replace(hour=11, minute=31).timestamp()
    assert (
        reset_time("try again at 9:05 AM", now)
        == (now.replace(hour=9, minute=6) + dt.timedelta(days=1)).timestamp()
    )
    assert reset_time("try again at 12:15 PM", now) == now.replace(hour=12, minute=16).timestamp()
    assert reset_time("Try again later.", now) is None


@pytest.mark.parametrize(
    "name, words",
    [
        ("auth", "OPENAI_API_KEY"),
        ("quota", "credits"),
        ("context_too_long", "split the task"),
        ("resume_missing", "resume = false"),
    ],
)
def test_auth_billing_context_and_lost_sessions_are_permanent(
    tmp_path: Path, name: str, words: str
) -> None:
    outcome = classify(tmp_path, fixture(name))
    assert outcome.outcome == PERMANENT
    assert words in outcome.reason


def test_a_missing_key_is_permanent(tmp_path: Path) -> None:
    failed = (
        '{"type":"thread.started","thread_id":"x"}\n{"type":"turn.started"}\n'
        '{"type":"turn.failed","error":{"message":"Missing environment variable: `OPENAI_API_KEY`."}}\n'
    )
    assert classify(tmp_path, failed).outcome == PERMANENT


def test_a_crash_mid_turn_retries(tmp_path: Path) -> None:
    cut = "\n".join(fixture("edit").splitlines()[:5]) + "\n"  # killed before turn.completed
    outcome = classify(tmp_path, cut, exit_code=None, signal=9)
    assert outcome.outcome == RETRY
    assert "SIGKILL" in outcome.reason and outcome.report.session_id


def test_not_installed_is_permanent(tmp_path: Path) -> None:
    outcome = classify(tmp_path, "env: 'codex': No such file or directory\n", exit_code=127)
    assert outcome.outcome == PERMANENT and "npm install -g @openai/codex" in outcome.reason


def test_launch_builds_exec_argv_with_sandbox_model_and_prompt_last() -> None:
    task = TaskSpec(
        id="t", agent="codex", cwd="/w", prompt="resume", model="gpt-5.5", agent_args=["--oss"]
    )
    assert codex.launch(task, 1).argv == [
        "codex",
        "exec",
        "--json",
        "--skip-git-repo-check",
        "-c",
        'sandbox_mode="workspace-write"',
        "--model",
        "gpt-5.5",
        "--oss",
        "--",
        "resume",
    ]


def test_launch_keeps_the_sandbox_the_plan_chose() -> None:
    for args in (
        ["--sandbox", "read-only"],
        ["-c", "sandbox_mode=danger-full-access"],
        ["--dangerously-bypass-approvals-and-sandbox"],
    ):
        task = TaskSpec(id="t", agent="codex", cwd="/w", prompt="p", agent_args=args)
        assert 'sandbox_mode="workspace-write"' not in codex.launch(task, 1).argv


def test_resume_runs_exec_resume_with_the_thread() -> None:
    argv = codex.launch(TASK, 2, resume="01a211c4-20a0-74e0-b19c-c1f0798262b2").argv
    at = argv.index("resume")
    assert argv[:2] == ["codex", "exec"] and "--json" in argv[:at]
    assert argv[at + 1 : at + 3] == ["01a211c4-20a0-74e0-b19c-c1f0798262b2", "--"]
    assert argv[-1].endswith(TASK.prompt) and "Continue" in argv[-1]


def test_a_prompt_too_long_for_argv_goes_on_stdin() -> None:
    from orchd.agents import adapter_for

    big = TaskSpec(id="t", agent="codex", cwd="/w", prompt="y" * 200_000)
    launch = adapter_for("codex").launch(big, 1)
    assert launch.stdin == big.prompt and launch.argv[-1] == "-" and big.prompt not in launch.argv
