"""Codex CLI: `codex exec --json`.

The JSON lines are `thread.started` (`thread_id`: the session), `turn.started`,
`item.started` / `item.completed` (an `agent_message` holds text; also
`file_change`, `command_execution`, non-fatal `error` items), then
`turn.completed` with `usage` (tokens; Codex reports no cost) or
`turn.failed` with `error.message`. Transient trouble shows as `error` events
along the way. Errors carry only a message, so they are classified by it.

Unattended edits need a writable sandbox: unless `agent_args` choose one,
the agent runs with `-c sandbox_mode="workspace-write"` (writes inside its
working directory; commands run sandboxed, without network); `codex exec`
never stops to ask for approval. `--skip-git-repo-check` is always passed:
orch, not Codex, decides where a task runs. A retry with `resume = true`
runs `codex exec resume THREAD_ID`.
"""

from __future__ import annotations

import re
from typing import Any

from orchd.agents.base import (
    NOT_FOUND,
    PARK,
    PERMANENT,
    RETRY,
    SUCCESS,
    Exit,
    Launch,
    Outcome,
    clip,
    describe_exit,
    has_option,
    json_lines,
    last_words,
    prompt_for,
    with_prompt,
)
from orchd.events import AgentReport, VerifyResult
from orchd.plan import TaskSpec
from orchd.streams.codex import reset_time

INSTALL_HINT = "install the Codex CLI (npm install -g @openai/codex) where orchd finds it on PATH"
AUTH_HINT = (
    "set OPENAI_API_KEY (or the `env_key` of your model provider) in orchd's environment, or run "
    "`codex login` as orchd's user; restart orchd, then `orchctl retry RUN`"
)
# (pattern of an error message, outcome, what the user should do); the first match wins
RULES: list[tuple[re.Pattern[str], str, str]] = [
    (re.compile(p, re.I), o, h)
    for p, o, h in [
        (
            r"no rollout found|thread/resume failed",
            PERMANENT,
            "the session to resume is gone (another CODEX_HOME?): set `resume = false`",
        ),
        (r"usage limit", RETRY, ""),
        (
            r"quota exceeded|insufficient_quota|billing|out of credits|spend limit",
            PERMANENT,
            "add credits or raise the limits of the account, then `orchctl retry RUN`",
        ),
        (
            r"\b40[13]\b|unauthori[sz]ed|forbidden|invalid_api_key|incorrect api key|missing environment variable"
            r"|not logged in|codex login|authenticat",
            PERMANENT,
            AUTH_HINT,
        ),
        (
            r"context window|context_length_exceeded|too many tokens|input exceeds",
            PERMANENT,
            "the conversation does not fit the model's context window: shorten the prompt or split the task",
        ),
        (
            r"\b404\b|model .*(not found|does not exist)|not supported",
            PERMANENT,
            "set the task's `model` to one this account and provider can use",
        ),
        (
            r"\b(400|413|422)\b|invalid_request|invalid request",
            PERMANENT,
            "the API refused the request as invalid: check the plan's `model` and `agent_args`",
        ),
    ]
]


class CodexAdapter:
    """Codex in exec mode, streaming JSON lines."""

    name = "codex"
    install_hint = INSTALL_HINT
    auth_hint = AUTH_HINT
    states_outcome = True  # its stream ends with an event that says how it went

    def launch(
        self,
        task: TaskSpec,
        attempt: int,
        resume: str | None = None,
        feedback: VerifyResult | None = None,
    ) -> Launch:
        argv = ["codex", "exec", "--json", "--skip-git-repo-check"]
        if not (
            has_option(
                task.agent_args,
                "--sandbox",
                "-s",
                "--dangerously-bypass-approvals-and-sandbox",
                "--full-auto",
            )
            or any(a.startswith("sandbox_mode=") for a in task.agent_args)
        ):
            argv += ["-c", 'sandbox_mode="workspace-write"']
        if task.model:
            argv += ["--model", task.model]
        argv += task.agent_args
        if resume:
            argv += ["resume", resume]
        prompt = prompt_for(task.prompt, bool(resume), feedback)
        return with_prompt(
            argv, prompt, task.cwd, from_stdin=["-"]
        )  # `codex exec -` reads the prompt from stdin

    def classify(self, task: TaskSpec, exit: Exit) -> Outcome:
        events = json_lines(exit)
        report = _report(events)
        ended = next(
            (e for e in reversed(events) if e.get("type") in ("turn.completed", "turn.failed")),
            None,
        )
        if ended is not None and ended["type"] == "turn.completed" and exit.exit_code == 0:
            return Outcome(SUCCESS, report=report)
        if exit.exit_code == NOT_FOUND and not events:
            return Outcome(
                PERMANENT,
                reason=f"codex not found ({last_words(exit) or describe_exit(exit)})"
                f": {INSTALL_HINT}",
                report=report,
            )
        message = _failure(events, ended) or last_words(exit) or describe_exit(exit)
        at = reset_time(message)
        if at is not None:
            return Outcome(
                PARK, reason=f"Codex usage limit: {message}", report=report, park_until=at
            )
        outcome, hint = next(
            ((o, h) for pattern, o, h in RULES if pattern.search(message)), (RETRY, "")
        )
        if ended is None and outcome == RETRY:
            message = f"Codex ended without finishing its turn ({describe_exit(exit)}): {message}"
        reason = f"Codex: {message}" + (f" ({hint})" if hint else "")
        return Outcome(outcome, reason=reason[:2000], report=report)


def _report(events: list[dict[str, Any]]) -> AgentReport:
    thread = next(
        (
            str(e["thread_id"])
            for e in events
            if e.get("type") == "thread.started" and e.get("thread_id")
        ),
        "",
    )
    text = ""
    tokens_in = tokens_out = None
    for event in events:
        item = event.get("item") or {}
        if event.get("type") == "item.completed" and item.get("type") == "agent_message":
            text = str(item.get("text") or "")
        elif event.get("type") == "turn.completed" and isinstance(event.get("usage"), dict):
            usage = event[
                "usage"
            ]  # the thread's running total (a resumed thread counts its earlier turns)
            tokens_in, tokens_out = (
                int(usage.get("input_tokens") or 0),
                int(usage.get("output_tokens") or 0),
            )
    return AgentReport(
        result=clip(text),
        session_id=thread,
        tokens_in=tokens_in,
        tokens_out=tokens_out,
        session_totals=["tokens_in", "tokens_out"],
    )  # a resumed thread counts from its start


def _failure(events: list[dict[str, Any]], ended: dict[str, Any] | None) -> str:
    """The message that says why the turn failed: `turn.failed`, else the last `error` event."""
    if ended is not None and ended["type"] == "turn.failed":
        return str((ended.get("error") or {}).get("message") or "")
    return next((str(e.get("message")) for e in reversed(events) if e.get("type") == "error"), "")
