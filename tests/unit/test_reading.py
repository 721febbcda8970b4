"""How a session reads its ended attempt (orchd/actors/reading.py), from logs as written."""

from __future__ import annotations

import json
from pathlib import Path

from orchd import verify
from orchd.actors import reading
from orchd.agents import ADAPTERS
from orchd.decide import PERMANENT, RETRY, SUCCESS, Exit
from orchd.plan import TaskSpec

CHECK = ["python3", "-m", "pytest", "-q"]
RESULT = {"type": "result", "subtype": "success", "is_error": False, "result": "done"}
TASK = TaskSpec(id="t", agent="claude", cwd=".", prompt="p", verify=[CHECK])
CLAUDE = ADAPTERS["claude"]


def log_of(tmp_path: Path, *lines: str) -> str:
    path = tmp_path / "t.1.log"
    path.write_text("".join(f"{line}\n" for line in lines))
    return str(path)


def checks(passed: bool) -> list[str]:
    end = [verify.check_passed(1, 1, 0.5), verify.passed(1)]
    if not passed:
        end = ["1 failed", verify.check_failed(1, 1, "exit 1"), verify.failed(CHECK, "exit 1")]
    return [verify.start(1), verify.check(1, 1, CHECK), *end]


def test_the_agents_reading_carries_its_checks(tmp_path: Path) -> None:
    log = log_of(tmp_path, json.dumps(RESULT), *checks(passed=False))
    read = reading.classify(CLAUDE, TASK, Exit(122, None, log))
    # the agent's part says success (decide makes it verify_failed); nothing is committed
    assert read.outcome == SUCCESS and read.report.result == "done"
    assert read.verify is not None and read.verify.output == "1 failed"
    assert not reading.passed(read)
    passed = reading.classify(
        CLAUDE, TASK, Exit(0, None, log_of(tmp_path, json.dumps(RESULT), *checks(True)))
    )
    assert reading.passed(passed) and passed.verify is not None and passed.verify.passed


def test_a_lost_exit_status_is_proven_only_once_the_checks_said_how_they_went(
    tmp_path: Path,
) -> None:
    lost = Exit(None, None, log_of(tmp_path, json.dumps(RESULT), verify.start(1)))
    assert reading.proven(CLAUDE, TASK, lost) is None  # the checks were still running
    done = Exit(None, None, log_of(tmp_path, json.dumps(RESULT), *checks(passed=True)))
    proven = reading.proven(CLAUDE, TASK, done)
    assert proven is not None and proven.outcome == SUCCESS and proven.verify is not None


def test_the_wrappers_own_failure_is_its_last_line(tmp_path: Path) -> None:
    log = log_of(tmp_path, "orch: setup step npm ci failed with exit code 1")
    failed = reading.wrapper_failure(Exit(125, None, log), CLAUDE)
    assert failed is not None and failed.outcome == RETRY and failed.reason.startswith("setup")
    log = log_of(tmp_path, "orch: cannot start 'claude': not found (is it installed?)")
    missing = reading.wrapper_failure(Exit(127, None, log), CLAUDE)
    assert missing is not None and missing.outcome == PERMANENT and "npm install" in missing.reason
    assert reading.wrapper_failure(Exit(1, None, log), CLAUDE) is None
