"""How a session reads its ended attempt: what `decide` is told (the reading of an `Ended`).

The attempt's process says it in its exit status and its log: the wrapper's own failure (a
worktree that could not be made, a setup step that failed, an agent that cannot start: its exit
code and last line, orchd/attempt.py), else the agent's output as its adapter classifies it (only
the agent's part of the log) with how the task's checks went (their marker lines, orchd/verify.py).
A successful attempt's change is then committed to its task's branch (orchd/branches.py).
"""

from __future__ import annotations

from pathlib import Path

import msgspec

from orchd import branches, disk
from orchd.agents.base import AgentAdapter, tail
from orchd.attempt import CANNOT_RUN, NOT_FOUND, SETUP_FAILED, Prep
from orchd.decide import PERMANENT, RETRY, SUCCESS, Exit, Outcome
from orchd.git import GitError
from orchd.journal import Journal
from orchd.plan import TaskSpec
from orchd.verify import verify_result

WRAPPER_EXITS = (SETUP_FAILED, CANNOT_RUN, NOT_FOUND)


def wrapper_failure(exit: Exit, adapter: AgentAdapter) -> Outcome | None:
    """The wrapper's own failure (workspace, setup, agent not startable), told by its exit code
    and last line; None when the attempt got as far as its agent."""
    if exit.exit_code not in WRAPPER_EXITS:
        return None
    lines = tail(exit.log_path, 2048).rstrip().splitlines()
    if not lines or not lines[-1].startswith("orch: "):
        return None
    reason = lines[-1][len("orch: ") :]
    hint = getattr(adapter, "install_hint", "")
    if exit.exit_code == NOT_FOUND and hint:
        reason = f"{reason}: {hint}"
    return Outcome(RETRY if exit.exit_code == SETUP_FAILED else PERMANENT, reason=reason)


def classify(adapter: AgentAdapter, task: TaskSpec, exit: Exit) -> Outcome:
    """The adapter's reading of the agent's own output, with how the task's checks went when they
    ran (then the agent exited 0, and its output ends where theirs starts)."""
    checks = verify_result(exit.log_path) if task.verify else None
    if checks is None:
        return adapter.classify(task, exit)
    agent = Exit(0, None, exit.log_path, log_end=checks.log_offset)
    return msgspec.structs.replace(adapter.classify(task, agent), verify=checks)


def proven(adapter: AgentAdapter, task: TaskSpec, exit: Exit) -> Outcome | None:
    """An attempt whose exit status is lost, but whose agent's stream says it succeeded (its
    final event) and, for a task with checks, whose checks' last line says how they went: read
    from its log. Nothing else is taken from a log alone (None)."""
    if not getattr(adapter, "states_outcome", False):
        return None
    if task.verify and verify_result(exit.log_path) is None:  # the checks did not finish
        return None
    reading = classify(adapter, task, Exit(0, None, exit.log_path))
    return reading if reading.outcome == SUCCESS else None


def passed(reading: Outcome) -> bool:
    """Whether the agent succeeded and its checks (if any ran) passed: its change is committed."""
    return reading.outcome == SUCCESS and (reading.verify is None or reading.verify.passed)


def commit(prep: Prep, task_id: str, reading: Outcome) -> Outcome:
    """Commit a successful attempt's change to the task's branch, listing the files it changed; a
    commit that fails is retried (the attempt's report and checks kept)."""
    message = f"orch: {task_id}\n\n{reading.report.result[:4000]}".rstrip() + "\n"
    try:
        files = branches.commit(prep.workspace, message, prep.copy)
    except GitError as exc:
        reason = f"could not commit the task's changes: {exc.message}"
        return Outcome(RETRY, reason=reason, report=reading.report, verify=reading.verify)
    return msgspec.structs.replace(
        reading, report=msgspec.structs.replace(reading.report, files=files)
    )


def disk_was_full(exit: Exit, journal: Journal, since: float) -> bool:
    """Whether the attempt failed for want of room: its disk is full, or was seen full while it
    ran (the log refused a commit at `since` or later), or its last words say so."""
    if disk.is_full(str(Path(exit.log_path).parent)):
        return True
    if journal.failed_at >= since:
        return True
    return "No space left on device" in tail(exit.log_path, 4096)
