"""The Gemini, OpenCode, Cursor, Amp, Aider and Copilot adapters on recorded output.

Fixtures in tests/fixtures/agents/<agent>/ (each directory's README says how
they were made): gemini from @google/gemini-cli 0.61.0, opencode from
opencode-ai 1.18.33, copilot from @github/copilot 1.0.102 and aider from
aider-chat 0.86.2, each run for real against a loopback stub of its
provider's API; amp's error lines from @sourcegraph/amp against a stub of the
Amp server; cursor's and amp's successful streams from their documented
formats.
"""

from __future__ import annotations

import datetime as dt
import signal
import time
from pathlib import Path

import pytest

from orchd.agents.aider import AiderAdapter
from orchd.agents.amp import AmpAdapter
from orchd.agents.base import (
    PARK,
    PERMANENT,
    RETRY,
    SUCCESS,
    AgentAdapter,
    Outcome,
    failed,
    named_wait,
)
from orchd.agents.copilot import CopilotAdapter
from orchd.agents.cursor import CursorAdapter
from orchd.agents.gemini import GeminiAdapter, next_quota_reset
from orchd.agents.opencode import OpenCodeAdapter
from orchd.events import AgentReport
from orchd.plan import TaskSpec
from tests.unit.recorded import Recorded

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "agents"
ADAPTERS: dict[str, AgentAdapter] = {
    a.name: a
    for a in (
        GeminiAdapter(),
        OpenCodeAdapter(),
        CursorAdapter(),
        AmpAdapter(),
        AiderAdapter(),
        CopilotAdapter(),
    )
}
PROGRAMS = {
    "gemini": "gemini",
    "opencode": "opencode",
    "cursor": "cursor-agent",
    "amp": "amp",
    "aider": "aider",
    "copilot": "copilot",
}
SIGTERM = int(signal.SIGTERM)
DONE = "Done: added type hints to src/core.py."
HOUR = 3600.0

# agent, fixture, (exit code, signal), outcome, what the reason says (PERMANENT) or the report (SUCCESS)
CASES = [
    (
        "gemini",
        "ok.txt",
        (0, None),
        SUCCESS,
        AgentReport(DONE, "286fa850-96f8-47e0-9d3d-245808d480e4", None, 2468, 112),
    ),
    ("gemini", "auth.txt", (144, None), PERMANENT, "GEMINI_API_KEY"),
    ("gemini", "nokey.txt", (41, None), PERMANENT, "GEMINI_API_KEY"),
    ("gemini", "untrusted.txt", (55, None), PERMANENT, "--skip-trust"),
    ("gemini", "resume_bad.txt", (42, None), PERMANENT, "resume = false"),
    ("gemini", "ratelimit.txt", (173, None), RETRY, "Resource has been exhausted"),
    ("gemini", "overload.txt", (247, None), RETRY, "overloaded"),
    ("gemini", "network.txt", (1, None), RETRY, "fetch failed"),
    ("gemini", "retryin.txt", (173, None), PARK, HOUR),
    ("gemini", "daily.txt", (173, None), PARK, "daily quota"),
    (
        "opencode",
        "ok.jsonl",
        (0, None),
        SUCCESS,
        AgentReport(DONE, "ses_dee3bf839ffewRRP59LeeBQct4", 0.00411, 1200, 34),
    ),
    ("opencode", "auth.jsonl", (1, None), PERMANENT, "opencode auth login"),
    ("opencode", "nokey.jsonl", (1, None), PERMANENT, "ProviderModelNotFoundError"),
    ("opencode", "billing.jsonl", (1, None), PERMANENT, "add credits"),
    ("opencode", "ratelimit.jsonl", (1, None), RETRY, "HTTP 429"),
    ("opencode", "network.jsonl", (1, None), RETRY, "Unable to connect"),
    (
        "cursor",
        "ok.jsonl",
        (0, None),
        SUCCESS,
        AgentReport(
            "I'll read the file first.Added type hints to src/core.py.",
            "c6b62c6f-7ead-4fd6-9922-e952131177ff",
        ),
    ),
    ("cursor", "auth.txt", (1, None), PERMANENT, "CURSOR_API_KEY"),
    ("cursor", "ratelimit.txt", (1, None), RETRY, "Rate limit exceeded"),
    ("cursor", "usage_limit.txt", (1, None), PARK, 3 * HOUR + 12 * 60),
    (
        "amp",
        "ok.jsonl",
        (0, None),
        SUCCESS,
        AgentReport(
            "Added type hints to src/core.py.",
            "T-5928a90d-d53b-488f-a829-4e36442142ee",
            None,
            3726,
            69,
        ),
    ),
    ("amp", "auth.txt", (1, None), PERMANENT, "AMP_API_KEY"),
    ("amp", "nokey.txt", (None, SIGTERM), PERMANENT, "amp login"),
    ("amp", "s402.txt", (1, None), PERMANENT, "add credits"),
    ("amp", "error_result.jsonl", (1, None), PERMANENT, "add credits"),
    ("amp", "s429.txt", (1, None), RETRY, "429"),
    ("amp", "s503.txt", (1, None), RETRY, "Try again in a moment"),
    ("amp", "network.txt", (1, None), RETRY, "Couldn't connect"),
    ("aider", "ok.txt", (0, None), SUCCESS, AgentReport(DONE, "", 0.0033, 1200, 34)),
    ("aider", "auth.txt", (0, None), PERMANENT, "OPENAI_API_KEY"),
    ("aider", "billing.txt", (0, None), PERMANENT, "add credits"),
    ("aider", "ratelimit.txt", (0, None), RETRY, "RateLimitError"),
    ("aider", "overload.txt", (0, None), RETRY, "ServiceUnavailableError"),
    (
        "copilot",
        "ok.jsonl",
        (0, None),
        SUCCESS,
        AgentReport(DONE, "9fc35e5d-0251-4094-885b-783499ed8b49"),
    ),
    ("copilot", "auth.jsonl", (1, None), PERMANENT, "COPILOT_GITHUB_TOKEN"),
    ("copilot", "billing.jsonl", (1, None), PERMANENT, "add credits"),
    ("copilot", "ratelimit.jsonl", (1, None), RETRY, "Rate limit reached"),
    ("copilot", "overload.jsonl", (1, None), RETRY, "503 The server is overloaded"),
]


def task(agent: str, **fields: object) -> TaskSpec:
    fields.setdefault("prompt", "Add type hints to src/core.py.")
    return TaskSpec(id="t", agent=agent, cwd="/work/repo", **fields)  # type: ignore[arg-type]


def classify(
    tmp_path: Path, agent: str, output: str, exit_code: int | None, sig: int | None = None
) -> Outcome:
    return Recorded(task(agent)).classify(tmp_path, output, exit_code, sig)


@pytest.mark.parametrize(
    "agent, name, status, expected, detail",
    CASES,
    ids=[f"{c[0]}-{c[1].split('.')[0]}" for c in CASES],
)
def test_recorded_output_is_classified(
    tmp_path: Path,
    agent: str,
    name: str,
    status: tuple[int | None, int | None],
    expected: str,
    detail: object,
) -> None:
    before = time.time()
    outcome = classify(tmp_path, agent, (FIXTURES / agent / name).read_text(), *status)
    assert outcome.outcome == expected, outcome.reason
    if expected == SUCCESS:
        assert outcome.report == detail
        return
    assert outcome.report.result == ""
    if expected == PARK:
        assert outcome.park_until is not None and outcome.park_until > before
        if isinstance(
            detail, float
        ):  # the wait the provider named, from when the attempt was classified
            assert before + detail <= outcome.park_until <= time.time() + detail
        else:
            assert str(detail) in outcome.reason
    else:
        assert outcome.park_until is None
        assert str(detail) in outcome.reason


@pytest.mark.parametrize("agent", sorted(ADAPTERS))
def test_an_agent_that_is_not_installed_fails_at_once(tmp_path: Path, agent: str) -> None:
    program = PROGRAMS[agent]
    keeper = f"orch: cannot start '{program}': not found (is it installed, and on orchd's PATH?)\n"
    outcome = classify(tmp_path, agent, keeper, 127)
    assert outcome.outcome == PERMANENT
    assert "not found" in outcome.reason and "install" in outcome.reason


@pytest.mark.parametrize("agent", sorted(ADAPTERS))
def test_a_crash_without_output_retries(tmp_path: Path, agent: str) -> None:
    outcome = classify(tmp_path, agent, "", None, int(signal.SIGSEGV))
    assert outcome.outcome == RETRY and "SIGSEGV" in outcome.reason


# agent -> the argv of a task with model "m", agent_args ["--extra"], resuming session "S" (attempt 2)
ARGV = {
    "gemini": [
        "gemini",
        "--output-format",
        "stream-json",
        "--skip-trust",
        "--model",
        "m",
        "--resume",
        "S",
        "--approval-mode",
        "yolo",
        "--extra",
    ],
    "opencode": [
        "opencode",
        "run",
        "--format",
        "json",
        "--print-logs",
        "--log-level",
        "ERROR",
        "--model",
        "m",
        "--session",
        "S",
        "--auto",
        "--extra",
        "--",
    ],
    "cursor": [
        "cursor-agent",
        "--print",
        "--output-format",
        "stream-json",
        "--model",
        "m",
        "--resume",
        "S",
        "--force",
        "--trust",
        "--extra",
        "--",
    ],
    "amp": [
        "amp",
        "threads",
        "continue",
        "S",
        "--stream-json",
        "--mode",
        "m",
        "--dangerously-allow-all",
        "--extra",
    ],
    "aider": [
        "aider",
        "--yes-always",
        "--no-stream",
        "--no-pretty",
        "--no-fancy-input",
        "--no-check-update",
        "--no-show-release-notes",
        "--no-analytics",
        "--no-gitignore",
        "--model",
        "m",
        "--restore-chat-history",
        "--extra",
    ],
    "copilot": [
        "copilot",
        "--output-format",
        "json",
        "--no-ask-user",
        "--no-auto-update",
        "--model",
        "m",
        "--resume=S",
        "--allow-all",
        "--extra",
    ],
}


@pytest.mark.parametrize("agent", sorted(ADAPTERS))
def test_argv_carries_model_agent_args_resume_and_the_prompt_last(agent: str) -> None:
    spec = task(agent, model="m", agent_args=["--extra"], resume=True)
    launch = ADAPTERS[agent].launch(spec, 2, "S")
    assert launch.argv[:-1] == ARGV[agent]
    assert launch.argv[-1].endswith(spec.prompt) and "Continue where it left off" in launch.argv[-1]
    assert launch.cwd == "/work/repo"


@pytest.mark.parametrize("agent", sorted(ADAPTERS))
def test_a_first_attempt_sends_the_prompt_as_it_is_even_when_it_starts_with_a_dash(
    agent: str,
) -> None:
    launch = ADAPTERS[agent].launch(task(agent, prompt="-v is not an option here"), 1)
    assert launch.argv[-1].endswith("-v is not an option here")
    assert launch.argv[-1] == "-v is not an option here" or launch.argv[-1].startswith("--")
    assert "--model" not in launch.argv and "S" not in launch.argv


@pytest.mark.parametrize(
    "agent, own",
    [
        ("gemini", ["--approval-mode", "auto_edit"]),
        ("opencode", ["--auto"]),
        ("cursor", ["--mode", "plan", "--trust"]),
        ("amp", ["--dangerously-allow-all"]),
        ("copilot", ["--allow-tool", "write"]),
    ],
)
def test_permissions_the_plan_sets_replace_the_unattended_default(
    agent: str, own: list[str]
) -> None:
    argv = ADAPTERS[agent].launch(task(agent, agent_args=own), 1).argv
    for flag in (
        "--yolo",
        "yolo",
        "--auto",
        "--force",
        "--trust",
        "--dangerously-allow-all",
        "--allow-all",
    ):
        assert argv.count(flag) == own.count(flag)


@pytest.mark.parametrize(
    "text, seconds",
    [
        ("Please retry in 3600s.", 3600),
        ("Please try again in 6m0s.", 360),
        ("Your limit resets in 3h 12m.", 11520),
        ("Suggested retry after 1s.", 1),
        ("retry-after: 30", 30),
        ('"retryDelay": "43200s"', 43200),
        ("Please try again in 250ms", 0.25),
        ("Rate limit exceeded. Please try again later.", None),
    ],
)
def test_named_waits(text: str, seconds: float | None) -> None:
    assert named_wait(text) == seconds


def test_a_short_named_wait_is_a_retry_and_a_long_one_parks() -> None:
    assert (
        failed("X", "429 rate limited, please try again in 20s", AgentReport(), "").outcome == RETRY
    )
    assert (
        failed("X", "429 rate limited, please try again in 2h", AgentReport(), "").outcome == PARK
    )


def test_gemini_daily_quota_resets_at_the_next_midnight_pacific() -> None:
    utc = dt.UTC
    # 2026-07-01 20:00 UTC is 13:00 PDT: the next midnight is 07:00 UTC on 2 July
    assert (
        next_quota_reset(dt.datetime(2026, 7, 1, 20, tzinfo=utc))
        == dt.datetime(2026, 7, 2, 7, tzinfo=utc).timestamp()
    )
    # 2026-12-01 09:00 UTC is 01:00 PST: the next midnight is 08:00 UTC on 2 December
    assert (
        next_quota_reset(dt.datetime(2026, 12, 1, 9, tzinfo=utc))
        == dt.datetime(2026, 12, 2, 8, tzinfo=utc).timestamp()
    )


# agent -> what stands in the argv instead of a prompt too long for one argument (the prompt goes on stdin)
FROM_STDIN = {
    "gemini": "yolo",
    "opencode": "--auto",
    "cursor": "--trust",
    "amp": "--execute",
    "aider": "/dev/stdin",
    "copilot": "--allow-all",
}


@pytest.mark.parametrize("agent", sorted(ADAPTERS))
def test_a_prompt_too_long_for_an_argument_goes_on_stdin(agent: str) -> None:
    prompt = "Add type hints. " * 20_000  # 320 kB: over Linux's 128 KiB for one argument
    launch = ADAPTERS[agent].launch(task(agent, prompt=prompt), 1)
    assert launch.stdin == prompt
    assert launch.argv[-1] == FROM_STDIN[agent]
    assert sum(len(arg) for arg in launch.argv) < 1000
