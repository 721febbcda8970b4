"""The checks' marker lines read back from a log, and the prompt that feeds a failed check back to
the next attempt (their verdict on an attempt is a row of decide's table: test_decide.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchd import verify
from orchd.agents import ADAPTERS
from orchd.agents.base import Exit, prompt_for, tail
from orchd.events import VerifyResult
from orchd.plan import TaskSpec

PYTEST = ["python3", "-m", "pytest", "-q"]
RUFF = ["ruff", "check", "src dir"]


def log_of(tmp_path: Path, *lines: str) -> str:
    path = tmp_path / "t.1.log"
    path.write_text("".join(f"{line}\n" for line in lines))
    return str(path)


AGENT = ('{"type": "result", "result": "done"}', "orch: verify 1/9: fake, printed by the agent")


def test_every_check_passed(tmp_path: Path) -> None:
    log = log_of(
        tmp_path,
        *AGENT,
        verify.start(2),
        verify.check(1, 2, PYTEST),
        "3 passed",
        verify.check_passed(1, 2, 1.5),
        verify.check(2, 2, RUFF),
        verify.check_passed(2, 2, 0.1),
        verify.passed(2),
    )
    result = verify.verify_result(log)
    assert result == VerifyResult("passed", checks=2, log_offset=result.log_offset)  # type: ignore[union-attr]
    assert (
        Path(log).read_bytes()[result.log_offset :].startswith(b"orch: verify: the agent exited 0")
    )  # type: ignore[union-attr]
    assert result.reason == "verify: 2 checks passed"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("how", "kind"),
    [
        ("exit 1", "failed"),
        ("killed by SIGSEGV", "failed"),
        ("timed out after 600s", "timeout"),
        ("not found", "not_found"),
        ("cannot start: Permission denied", "not_found"),
    ],
)
def test_a_check_that_did_not_pass(tmp_path: Path, how: str, kind: str) -> None:
    output = [f"line {i}" for i in range(100)]
    log = log_of(
        tmp_path,
        *AGENT,
        verify.start(2),
        verify.check(1, 2, PYTEST),
        verify.check_passed(1, 2, 1.5),
        verify.check(2, 2, RUFF),
        *output,
        verify.check_failed(2, 2, how),
        "orch: the checks changed 1 file (a.py); put back as the agent left them",
        verify.failed(RUFF, how),
    )
    result = verify.verify_result(log)
    assert result is not None and result.result == kind and result.detail == how
    assert result.argv == RUFF and result.checks == 2
    assert result.output == "\n".join(output[-verify.OUTPUT_LINES :])
    assert result.reason == f"verify: ruff check 'src dir': {how}"


def test_no_checks_ran(tmp_path: Path) -> None:
    assert verify.verify_result(log_of(tmp_path, *AGENT, "the agent's last words")) is None
    assert verify.verify_result(log_of(tmp_path)) is None
    assert verify.verify_result(str(tmp_path / "missing.log")) is None
    # stopped during a check: no last line, no verdict
    assert (
        verify.verify_result(log_of(tmp_path, verify.start(1), verify.check(1, 1, PYTEST))) is None
    )


def test_the_adapter_reads_only_the_agents_part_of_the_log(tmp_path: Path) -> None:
    log = log_of(tmp_path, "edited 1 file", verify.start(1), verify.check(1, 1, PYTEST), "ERROR")
    offset = Path(log).read_text().index("orch: verify")
    assert tail(Exit(0, None, log, log_end=offset)).strip() == "edited 1 file"
    task = TaskSpec(id="t", agent="command", cwd=".", command=["x"])
    outcome = ADAPTERS["command"].classify(task, Exit(0, None, log, log_end=offset))
    assert outcome.report.result == "edited 1 file"


PASSED = VerifyResult("passed", checks=1)
FAILED = VerifyResult("failed", checks=1, argv=PYTEST, detail="exit 1", output="1 failed")


def test_the_next_prompt_quotes_the_failed_check() -> None:
    assert prompt_for("Fix it.", False) == "Fix it."
    assert prompt_for("Fix it.", False, PASSED) == "Fix it."
    assert "Continue where it left off" in prompt_for("Fix it.", True)
    fresh = prompt_for("Fix it.", False, FAILED)
    assert fresh.startswith("Fix it.\n\n") and "`python3 -m pytest -q`" in fresh
    assert "exit 1" in fresh and "```\n1 failed\n```" in fresh
    resumed = prompt_for("Fix it.", True, FAILED)
    assert resumed.startswith("You finished the task, but its check did not pass")
    assert "1 failed" in resumed and resumed.endswith("The task, for reference:\n\nFix it.")


@pytest.mark.parametrize("agent", sorted(set(ADAPTERS) - {"command"}))
def test_every_agent_gets_the_feedback(agent: str) -> None:
    task = TaskSpec(id="t", agent=agent, cwd=".", prompt="Fix it.", resume=True)
    for resume in (None, "S"):
        launch = ADAPTERS[agent].launch(task, 2, resume, FAILED)
        assert "1 failed" in " ".join(launch.argv) + (launch.stdin or ""), (agent, resume)
