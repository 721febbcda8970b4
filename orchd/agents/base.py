"""The adapter seam: how a task becomes a process, and how its end is classified."""

from __future__ import annotations

import json
import os
from typing import Protocol

import msgspec

from orchd.events import AgentReport
from orchd.plan import TaskSpec

# How an attempt ended, as adapters classify it.
SUCCESS, RETRY, PARK, PERMANENT = "success", "retry", "park", "permanent"
# Outcomes the session itself decides.
TIMEOUT, CANCELLED, LOST = "timeout", "cancelled", "lost"
RETRYABLE = frozenset({RETRY, TIMEOUT})


class Launch(msgspec.Struct, frozen=True):
    """What to start for one attempt: argv (never a shell string), extra env, cwd."""

    argv: list[str]
    cwd: str
    env: dict[str, str] = {}


class Exit(msgspec.Struct, frozen=True):
    """How the attempt's process ended."""

    exit_code: int | None
    signal: int | None
    log_path: str


class Outcome(msgspec.Struct, frozen=True):
    """The classification of an ended attempt, with what the agent reported."""

    outcome: str
    reason: str = ""
    report: AgentReport = AgentReport()
    park_until: float | None = None  # for PARK: when the provider said to come back


class AgentAdapter(Protocol):
    """One agent CLI."""

    name: str

    def launch(self, task: TaskSpec, attempt: int, resume: str | None = None) -> Launch:
        """The process to start for attempt number `attempt` (1-based) of `task`.

        `resume` is the agent's own session id from the latest attempt that
        reported one, given when the plan says `resume = true`: an adapter whose
        CLI can continue a session passes it on so finished work is not redone.
        """
        ...

    def classify(self, task: TaskSpec, exit: Exit) -> Outcome:
        """Classify an ended attempt from its exit status and output."""
        ...


def describe_exit(exit: Exit) -> str:
    """`exit code 3` or `killed by SIGKILL`."""
    if exit.signal is not None:
        from orchd.executors.local import SIGNALS

        return f"killed by {SIGNALS.get(exit.signal, f'signal {exit.signal}')}"
    return f"exit code {exit.exit_code}"


def tail(log_path: str, limit: int = 4096) -> str:
    """The last `limit` bytes of an attempt's output, decoded leniently."""
    try:  # raw fd calls: few syscalls, as this runs for every attempt
        fd = os.open(log_path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return ""
    try:
        size = os.fstat(fd).st_size
        return os.pread(fd, limit, max(0, size - limit)).decode("utf-8", "replace") if size else ""
    except OSError:
        return ""
    finally:
        os.close(fd)


def json_lines(log_path: str, limit: int = 16 << 20) -> list[dict]:
    """The JSON objects among the last `limit` bytes of an attempt's output, in order.

    Agents that stream JSON lines (Claude Code, Codex, Gemini, ...) share one
    log with their stderr, so lines that are not JSON objects are skipped.
    """
    objects = []
    for line in tail(log_path, limit).splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            objects.append(value)
    return objects


# ------------------------------------------------------------ shared by the coding-agent adapters

RESULT_LIMIT = 16 << 10  # characters of an agent's final text kept in the log
NOT_FOUND = 127  # the shell's (and npm shims') exit code for a program that is not there


def clip(text: str, limit: int = RESULT_LIMIT) -> str:
    """`text` cut to `limit` characters, saying so when it was cut."""
    return text if len(text) <= limit else text[: limit - 20] + "\n… (cut by orch)"


def has_option(args: list[str], *names: str) -> bool:
    """Whether the argv `args` sets one of the options `names` (as `--name` or `--name=value`)."""
    return any(arg == name or arg.startswith(name + "=") for arg in args for name in names)


def resume_prompt(prompt: str) -> str:
    """The prompt of an attempt that continues the agent's earlier session of the same task."""
    return ("The previous attempt at this task was interrupted before it finished. Continue where it "
            "left off and finish the task; do not redo work that is already done. The task, for reference:"
            f"\n\n{prompt}")


def last_words(log_path: str, limit: int = 300) -> str:
    """The last line of an attempt's output that is not JSON: usually the agent's own last complaint."""
    for line in reversed(tail(log_path, 8192).splitlines()):
        line = line.strip()
        if line and not line.startswith("{"):
            return line[:limit]
    return ""
