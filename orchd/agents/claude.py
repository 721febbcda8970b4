"""Claude Code: `claude -p --output-format stream-json --verbose`.

The stream ends with one `result` event: `is_error`, `result` (the final
text, or the error shown to the user), `session_id`, `total_cost_usd`,
`usage`, `api_error_status`. An API error is also an `assistant` event with
`error` set to a category (`authentication_failed`, `billing_error`,
`rate_limit`, `server_error`, `invalid_request`, `model_not_found`, ...), and
a usage limit of a Claude subscription comes as a `rate_limit_event` whose
`rate_limit_info` is `rejected` with `resetsAt` (epoch seconds).

Unattended runs need edits allowed without a prompt: unless `agent_args` name
a permission mode, the agent runs with `--permission-mode acceptEdits`
(file edits in its working directory are allowed; a command that would ask
for permission is refused and the agent carries on without it). A plan can
widen that, e.g. `agent_args = ["--permission-mode", "bypassPermissions"]`
in a sandbox, or `["--allowedTools", "Bash(pytest:*)"]`.
"""

from __future__ import annotations

import time
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

INSTALL_HINT = (
    "install Claude Code (npm install -g @anthropic-ai/claude-code) where orchd finds it on PATH"
)
AUTH_HINT = (
    "set ANTHROPIC_API_KEY (or CLAUDE_CODE_OAUTH_TOKEN from `claude setup-token`) in orchd's "
    "environment, restart orchd, then `orchctl retry RUN`"
)
# the `error` category of an API error message -> (outcome, what the user should do)
CATEGORIES: dict[str, tuple[str, str]] = {
    "authentication_failed": (PERMANENT, AUTH_HINT),
    "billing_error": (
        PERMANENT,
        "add credits or raise the spend limit of the Anthropic account, then `orchctl retry RUN`",
    ),
    "invalid_request": (
        PERMANENT,
        "the API refused the request as invalid: check the plan's `model` and "
        "`agent_args`, shorten the prompt or split the task",
    ),
    "model_not_found": (PERMANENT, "set the task's `model` to one this account can use"),
    "rate_limit": (RETRY, ""),
    "server_error": (RETRY, ""),
}
STATUSES: dict[int, str] = {
    401: "authentication_failed",
    403: "authentication_failed",
    400: "invalid_request",
    404: "model_not_found",
    413: "invalid_request",
    429: "rate_limit",
}
# `result` subtypes of a run that ended on its own terms, not on an API error
SUBTYPES: dict[str, tuple[str, str]] = {
    "error_max_turns": (
        PERMANENT,
        "the agent used all its turns: raise --max-turns in `agent_args` or split the task",
    ),
    "error_max_budget_usd": (
        PERMANENT,
        "the agent reached its --max-budget-usd: raise it in `agent_args`",
    ),
}


class ClaudeAdapter:
    """Claude Code in print mode, streaming JSON."""

    name = "claude"
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
        argv = ["claude", "-p", "--output-format", "stream-json", "--verbose"]
        if task.model:
            argv += ["--model", task.model]
        if resume:
            argv += ["--resume", resume]
        if not has_option(task.agent_args, "--permission-mode", "--dangerously-skip-permissions"):
            argv += ["--permission-mode", "acceptEdits"]
        prompt = prompt_for(task.prompt, bool(resume), feedback)
        return with_prompt(
            [*argv, *task.agent_args], prompt, task.cwd
        )  # `claude -p` reads stdin without one

    def classify(self, task: TaskSpec, exit: Exit) -> Outcome:
        events = json_lines(exit)
        result = next((e for e in reversed(events) if e.get("type") == "result"), None)
        report = _report(events, result)
        if result is None:
            return _no_result(exit, report)
        if (
            not result.get("is_error")
            and result.get("subtype") == "success"
            and exit.exit_code == 0
        ):
            return Outcome(SUCCESS, report=report)
        errors = "; ".join(str(e) for e in result.get("errors") or [])
        text = str(result.get("result") or errors or last_words(exit) or describe_exit(exit))
        reset = _reset_at(events)
        if reset is not None and reset > time.time():
            return Outcome(
                PARK, reason=f"Claude usage limit: {text}", report=report, park_until=float(reset)
            )
        outcome, hint = _category(events, result)
        reason = f"Claude Code: {text}" + (f" ({hint})" if hint else "")
        return Outcome(outcome, reason=reason[:2000], report=report)


def _report(events: list[dict[str, Any]], result: dict[str, Any] | None) -> AgentReport:
    session = next((str(e["session_id"]) for e in reversed(events) if e.get("session_id")), "")
    if result is None:
        return AgentReport(session_id=session)
    usage = result.get("usage") or {}
    tokens_in = sum(
        int(usage.get(k) or 0)
        for k in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
    )
    cost = result.get("total_cost_usd")
    return AgentReport(
        result=clip(str(result.get("result") or "")) if not result.get("is_error") else "",
        session_id=str(result.get("session_id") or session),
        cost_usd=float(cost) if isinstance(cost, (int, float)) else None,
        tokens_in=tokens_in if usage else None,
        tokens_out=int(usage.get("output_tokens") or 0) if usage else None,
        session_totals=["cost_usd"],
    )  # total_cost_usd counts a resumed session from its start; usage does not


def _reset_at(events: list[dict[str, Any]]) -> float | None:
    """When a rejected usage limit resets (epoch seconds), as the stream said."""
    for event in reversed(events):
        info = None
        if event.get("type") == "rate_limit_event":
            info = event.get("rate_limit_info")
        elif event.get("type") in ("assistant", "result"):
            info = (event.get("api_error_params") or {}).get("rate_limit_info")
        if (
            isinstance(info, dict)
            and info.get("status") == "rejected"
            and isinstance(info.get("resetsAt"), (int, float))
        ):
            return float(info["resetsAt"])
    return None


def _category(events: list[dict[str, Any]], result: dict[str, Any]) -> tuple[str, str]:
    """(outcome, hint) of an error result: by the API error's category, its status, or the result subtype."""
    if result.get("terminal_reason") == "prompt_too_long":
        return CATEGORIES["invalid_request"]
    category = next(
        (
            str(e["error"])
            for e in reversed(events)
            if e.get("type") == "assistant" and e.get("is_api_error_message") and e.get("error")
        ),
        "",
    )
    status = result.get("api_error_status")
    if category not in CATEGORIES and isinstance(status, int):
        category = STATUSES.get(status, "server_error" if status >= 500 else "")
    if category in CATEGORIES:
        return CATEGORIES[category]
    if "No conversation found with session ID" in str(result.get("errors")) + str(
        result.get("result")
    ):
        return (
            PERMANENT,
            "the session to resume is gone (another CLAUDE_CONFIG_DIR?): set `resume = false`",
        )
    return SUBTYPES.get(str(result.get("subtype")), (RETRY, ""))


def _no_result(exit: Exit, report: AgentReport) -> Outcome:
    """The stream ended without a result: Claude Code crashed, was killed, or never started."""
    words = last_words(exit)
    if exit.exit_code == NOT_FOUND:
        return Outcome(
            PERMANENT,
            reason=f"claude not found ({words or describe_exit(exit)}): {INSTALL_HINT}",
            report=report,
        )
    if "No conversation found with session ID" in words:
        return Outcome(
            PERMANENT, reason=f"Claude Code: {words} (set `resume = false`)", report=report
        )
    reason = f"Claude Code ended without a result ({describe_exit(exit)})" + (
        f": {words}" if words else ""
    )
    return Outcome(RETRY, reason=reason, report=report)
