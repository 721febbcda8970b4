"""The Claude Code adapter on recorded output (tests/fixtures/agents/claude, from `python -m tests.e2e.record_fixtures`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchd.agents import adapter_for
from orchd.agents.base import PARK, PERMANENT, RETRY, SUCCESS
from orchd.plan import TaskSpec
from tests.unit.recorded import Recorded

TASK = TaskSpec(id="t", agent="claude", cwd="/work/repo", prompt="Add type hints to src/core.py.")
claude = adapter_for("claude")
_recorded = Recorded(TASK)
classify, fixture = _recorded.classify, _recorded.fixture


def test_success_reports_result_session_cost_and_tokens(tmp_path: Path) -> None:
    outcome = classify(tmp_path, fixture("success"), exit_code=0)
    assert outcome.outcome == SUCCESS
    report = outcome.report
    assert report.result == "The answer is 42."
    assert len(report.session_id) == 36
    assert report.cost_usd is not None and report.cost_usd > 0
    assert (report.tokens_in, report.tokens_out) == (1200, 80)


def test_an_edit_is_a_success_with_the_final_text(tmp_path: Path) -> None:
    outcome = classify(tmp_path, fixture("edit"), exit_code=0)
    assert outcome.outcome == SUCCESS and outcome.report.result == "I wrote notes.txt."
    assert outcome.report.tokens_out == 50  # both model turns


@pytest.mark.parametrize("name", ["rate_limited", "overloaded"])
def test_rate_limits_and_overload_without_a_reset_time_retry(tmp_path: Path, name: str) -> None:
    outcome = classify(tmp_path, fixture(name))
    assert outcome.outcome == RETRY
    assert outcome.park_until is None
    assert outcome.reason.startswith("Claude Code: ")
    assert outcome.report.session_id and outcome.report.result == ""


def test_a_usage_limit_with_a_reset_time_parks_until_then(tmp_path: Path) -> None:
    outcome = classify(tmp_path, fixture("usage_limit"))
    assert outcome.outcome == PARK
    assert outcome.park_until == 1_900_000_000
    assert "limit" in outcome.reason


def test_a_usage_limit_that_has_already_reset_retries(tmp_path: Path) -> None:
    past = fixture("usage_limit").replace("1900000000", "1000000000")
    assert classify(tmp_path, past).outcome == RETRY


@pytest.mark.parametrize(
    "name, words",
    [
        ("auth", "ANTHROPIC_API_KEY"),
        ("billing", "credits"),
        ("prompt_too_long", "split the task"),
        ("resume_missing", "resume = false"),
    ],
)
def test_auth_billing_invalid_requests_and_lost_sessions_are_permanent(
    tmp_path: Path, name: str, words: str
) -> None:
    outcome = classify(tmp_path, fixture(name))
    assert outcome.outcome == PERMANENT
    assert words in outcome.reason


def test_a_crash_before_the_result_retries(tmp_path: Path) -> None:
    lines = fixture("edit").splitlines()
    cut = "\n".join(lines[:2]) + "\nSegmentation fault\n"  # killed mid-session: no result event
    outcome = classify(tmp_path, cut, exit_code=None, signal=11)
    assert outcome.outcome == RETRY
    assert "SIGSEGV" in outcome.reason and "Segmentation fault" in outcome.reason
    assert outcome.report.session_id  # a retry can resume it


def test_an_empty_log_with_exit_127_means_not_installed(tmp_path: Path) -> None:
    outcome = classify(tmp_path, "sh: 1: claude: not found\n", exit_code=127)
    assert outcome.outcome == PERMANENT
    assert "npm install -g @anthropic-ai/claude-code" in outcome.reason


def test_a_success_result_with_a_failing_exit_code_is_not_success(tmp_path: Path) -> None:
    assert classify(tmp_path, fixture("success"), exit_code=1).outcome == RETRY


def test_launch_builds_print_mode_argv_with_model_permissions_and_prompt_last() -> None:
    task = TaskSpec(
        id="t",
        agent="claude",
        cwd="/w",
        prompt="-x looks like a flag",
        model="sonnet",
        agent_args=["--max-turns", "5"],
    )
    launch = claude.launch(task, 1)
    assert launch.argv == [
        "claude",
        "-p",
        "--output-format",
        "stream-json",
        "--verbose",
        "--model",
        "sonnet",
        "--permission-mode",
        "acceptEdits",
        "--max-turns",
        "5",
        "--",
        "-x looks like a flag",
    ]
    assert launch.cwd == "/w"


def test_launch_keeps_the_permission_mode_the_plan_chose() -> None:
    task = TaskSpec(
        id="t", agent="claude", cwd="/w", prompt="p", agent_args=["--dangerously-skip-permissions"]
    )
    assert "acceptEdits" not in claude.launch(task, 1).argv


def test_resume_passes_the_session_and_a_continuation_prompt() -> None:
    launch = claude.launch(TASK, 2, resume="0f0f0f0f-0000-4000-8000-000000000000")
    argv = launch.argv
    assert argv[argv.index("--resume") + 1] == "0f0f0f0f-0000-4000-8000-000000000000"
    assert argv[-2] == "--" and argv[-1].endswith(TASK.prompt) and "Continue" in argv[-1]
    assert "--resume" not in claude.launch(TASK, 2).argv


def test_a_prompt_too_long_for_argv_goes_on_stdin() -> None:
    big = TaskSpec(id="t", agent="claude", cwd="/w", prompt="x" * 200_000)
    launch = claude.launch(big, 1)
    assert launch.stdin == big.prompt and big.prompt not in launch.argv and "--" not in launch.argv
    assert claude.launch(TASK, 1).stdin is None
