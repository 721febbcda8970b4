"""The adapter seam: how a task becomes a process, and how its end is classified."""

from __future__ import annotations

import json
import os
import shlex
import time
from collections.abc import Sequence
from typing import Any, Protocol

import msgspec

# How an attempt ended, and the types of what adapters read: one vocabulary, in orchd.decide
# (re-exported here: adapters and their tests import them from this module).
from orchd.decide import (
    CANCELLED,
    LOST,
    PARK,
    PERMANENT,
    RETRY,
    RETRYABLE,
    SUCCESS,
    TIMEOUT,
    VERIFY_FAILED,
    Exit,
    Outcome,
    describe_exit,
)
from orchd.events import AgentReport, VerifyResult
from orchd.plan import TaskSpec
from orchd.streams.base import PARK_AFTER, failure_kind, named_wait

__all__ = [
    "CANCELLED",
    "LOST",
    "PARK",
    "PARK_AFTER",
    "PERMANENT",
    "RETRY",
    "RETRYABLE",
    "SUCCESS",
    "TIMEOUT",
    "VERIFY_FAILED",
    "Exit",
    "Outcome",
    "describe_exit",
    "failure_kind",
    "named_wait",
]


class Launch(msgspec.Struct, frozen=True):
    """What to start for one attempt: argv (never a shell string), extra env, cwd."""

    argv: list[str]
    cwd: str
    env: dict[str, str] = {}
    stdin: str | None = None  # text for the process's standard input (a prompt too long for argv)


class AgentAdapter(Protocol):
    """One agent CLI."""

    name: str

    def launch(
        self,
        task: TaskSpec,
        attempt: int,
        resume: str | None = None,
        feedback: VerifyResult | None = None,
    ) -> Launch:
        """The process to start for attempt number `attempt` (1-based) of `task`.

        `resume` is the agent's own session id from the latest attempt that
        reported one, given when the plan says `resume = true`: an adapter whose
        CLI can continue a session passes it on so finished work is not redone.
        `feedback` is the failed check of the previous attempt, whose output the
        prompt quotes (`prompt_for`).
        """
        ...

    def classify(self, task: TaskSpec, exit: Exit) -> Outcome:
        """Classify an ended attempt from its exit status and output."""
        ...


ARG_LIMIT = 100_000  # bytes: Linux refuses a single argument over 128 KiB (MAX_ARG_STRLEN)


def with_prompt(argv: list[str], prompt: str, cwd: str, from_stdin: list[str] = ()) -> Launch:  # type: ignore[assignment]
    """`argv -- PROMPT`, or, for a prompt too long for one argument, `argv FROM_STDIN` with the prompt on stdin.

    `--` ends the options, so a prompt that starts with "-" stays the prompt.
    """
    if len(prompt.encode()) > ARG_LIMIT:
        return Launch(argv=[*argv, *from_stdin], cwd=cwd, stdin=prompt)
    return Launch(argv=[*argv, "--", prompt], cwd=cwd)


Log = str | Exit  # an attempt's log: its path, or how it ended (only the agent's part of the log)


def tail(log: Log, limit: int = 4096) -> str:
    """The last `limit` bytes of an attempt's output (of its agent's, for an Exit), decoded leniently."""
    log_path, end = (log.log_path, log.log_end) if isinstance(log, Exit) else (log, None)
    try:  # raw fd calls: few syscalls, as this runs for every attempt
        fd = os.open(log_path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return ""
    try:
        size = os.fstat(fd).st_size
        size = size if end is None else min(size, end)
        start = max(0, size - limit)
        return os.pread(fd, size - start, start).decode("utf-8", "replace") if size else ""
    except OSError:
        return ""
    finally:
        os.close(fd)


def json_lines(log_path: Log, limit: int = 16 << 20) -> list[dict]:
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
    return (
        "The previous attempt at this task was interrupted before it finished. Continue where it "
        "left off and finish the task; do not redo work that is already done. The task, for reference:"
        f"\n\n{prompt}"
    )


def prompt_for(prompt: str, resumed: bool, feedback: VerifyResult | None = None) -> str:
    """The prompt of an attempt: the task's own, the continuation of a resumed session, and after
    an attempt whose checks failed, the failing check and the tail of its output.

    A resumed session continues with only what it needs to fix; a fresh one gets the task's prompt
    followed by what the previous attempt's check said.
    """
    if feedback is None or feedback.passed:
        return resume_prompt(prompt) if resumed else prompt
    check = shlex.join(feedback.argv)
    output = feedback.output.strip() or "(no output)"
    quoted = f"`{check}` failed ({feedback.detail}). The end of its output:\n\n```\n{output}\n```"
    if resumed:
        return (
            "You finished the task, but its check did not pass: "
            f"{quoted}\n\nFix the work so that `{check}` passes; keep what is already right. "
            f"The task, for reference:\n\n{prompt}"
        )
    return (
        f"{prompt}\n\nA previous attempt at this task was checked with `{check}` afterwards, and "
        f"the check failed ({feedback.detail}). The end of its output:\n\n```\n{output}\n```\n\n"
        f"Make sure `{check}` passes when you are done."
    )


def last_words(log_path: Log, limit: int = 300) -> str:
    """The last line of an attempt's output that is not JSON: usually the agent's own last complaint."""
    for line in reversed(tail(log_path, 8192).splitlines()):
        line = line.strip()
        if line and not line.startswith("{"):
            return line[:limit]
    return ""


# ------------------------------------------------------------ failures told in words (the adapters after claude, codex)

KIND_OUTCOMES = {
    "context": PERMANENT,
    "billing": PERMANENT,
    "auth": PERMANENT,
    "model": PERMANENT,
    "invalid": PERMANENT,
    "rate_limit": RETRY,
    "overload": RETRY,
    "network": RETRY,
}
KIND_HINTS = {
    "context": "the conversation outgrew the model's context: split the task or shorten the prompt",
    "billing": "add credits or raise the account's spend limit, then `orchctl retry RUN`",
    "model": "set the task's `model` to one this account can use",
    "invalid": "the provider refused the request as invalid: check the task's `model` and `agent_args`",
}


def failed(
    agent: str,
    text: str,
    report: AgentReport,
    auth_hint: str,
    *,
    kind: str | None = None,
    wait: float | None = None,
) -> Outcome:
    """The Outcome of an attempt that failed with the error `text`.

    A wait the provider named (`wait`, else read from the text) of at least
    PARK_AFTER seconds parks the task until then; otherwise the kind of failure
    (`kind`, else read from the text) decides: permanent ones carry what the
    user should do, everything unrecognised is retried.
    """
    wait = named_wait(text) if wait is None else wait
    text = " ".join(text.split())[:1500] or "failed without saying why"
    if wait is not None and wait >= PARK_AFTER:
        return Outcome(
            PARK, reason=f"{agent}: {text}", report=report, park_until=time.time() + wait
        )
    kind = kind or failure_kind(text)
    outcome = KIND_OUTCOMES.get(kind or "", RETRY)
    hint = (
        auth_hint
        if kind == "auth"
        else KIND_HINTS.get(kind or "", "")
        if outcome == PERMANENT
        else ""
    )
    return Outcome(
        outcome, reason=f"{agent}: {text}" + (f" ({hint})" if hint else ""), report=report
    )


def not_installed(
    agent: str, exit: Exit, install_hint: str, report: AgentReport = AgentReport()
) -> Outcome | None:
    """PERMANENT when the agent's program could not be started (exit 127), else None."""
    if exit.exit_code != NOT_FOUND:
        return None
    words = last_words(exit) or describe_exit(exit)
    return Outcome(PERMANENT, reason=f"{agent} not found ({words}): {install_hint}", report=report)


def total(values: list[Any]) -> int | None:
    """The sum of the numbers among `values`, or None when there is none."""
    numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return int(sum(numbers)) if numbers else None


def claude_style_report(events: list[dict[str, Any]]) -> tuple[AgentReport, dict[str, Any] | None]:
    """The report of a Claude-compatible stream (Cursor, Amp), with its `result` event if it has one."""
    result = next((e for e in reversed(events) if e.get("type") == "result"), None)
    session = next((str(e["session_id"]) for e in reversed(events) if e.get("session_id")), "")
    usage = (result or {}).get("usage") or {}
    cost = (result or {}).get("total_cost_usd")
    return AgentReport(
        result=clip(str(result.get("result") or ""))
        if result and not result.get("is_error")
        else "",
        session_id=session,
        cost_usd=float(cost) if isinstance(cost, (int, float)) else None,
        tokens_in=total(
            [
                usage.get(k)
                for k in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
            ]
        ),
        tokens_out=total([usage.get("output_tokens")]),
    ), result


def error_words(log_path: Log, limit: int = 1000) -> str:
    """The last line of an attempt's output that starts with `Error`, else its last non-JSON line."""
    for line in reversed(tail(log_path, 8192).splitlines()):
        if line.lstrip().lower().startswith("error"):
            return line.strip()[:limit]
    return last_words(log_path, limit)


def with_prompt_option(
    argv: list[str], option: str, prompt: str, cwd: str, from_stdin: Sequence[str] = ()
) -> Launch:
    """`argv OPTION=PROMPT` (one argument, so a prompt that starts with "-" stays the prompt), or, for a
    prompt too long for one argument, `argv FROM_STDIN` with the prompt on stdin."""
    if len(prompt.encode()) > ARG_LIMIT:
        return Launch(argv=[*argv, *from_stdin], cwd=cwd, stdin=prompt)
    return Launch(argv=[*argv, f"{option}={prompt}"], cwd=cwd)
