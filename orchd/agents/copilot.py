"""GitHub Copilot CLI: `copilot --prompt=PROMPT --output-format json`.

The JSON lines (checked against @github/copilot 1.0.102) are session events:
`user.message`, `assistant.message` (`data.content`: a reply's full text),
`assistant.message_delta`, tool events, `session.error` (`data.errorType`:
authentication | rate_limit | query | ..., `data.message`, `data.statusCode`)
and a final `result` (`sessionId`, `exitCode`, `usage.premiumRequests`). No
cost in USD and no token counts. Copilot retries 429/5xx itself (5 times)
before it reports a `session.error`.

Unattended runs: `--allow-all` (tools, paths and URLs) and `--no-ask-user`
unless `agent_args` grant permissions themselves; `--no-auto-update` keeps a
run from downloading a new CLI. Authentication: COPILOT_GITHUB_TOKEN /
GH_TOKEN / GITHUB_TOKEN or `copilot login`; or a model provider of one's own
(BYOK: COPILOT_PROVIDER_BASE_URL, COPILOT_PROVIDER_API_KEY, COPILOT_MODEL).
"""

from __future__ import annotations

from typing import Any

from orchd.agents.base import (
    SUCCESS,
    Exit,
    Launch,
    Outcome,
    clip,
    describe_exit,
    error_words,
    failed,
    has_option,
    json_lines,
    not_installed,
    prompt_for,
    with_prompt_option,
)
from orchd.events import AgentReport, VerifyResult
from orchd.plan import TaskSpec

AGENT = "Copilot CLI"
INSTALL_HINT = (
    "install GitHub Copilot CLI (npm install -g @github/copilot) where orchd finds it on PATH"
)
AUTH_HINT = (
    "set COPILOT_GITHUB_TOKEN (a token with the Copilot Requests permission) or run `copilot login` as "
    "orchd's user (with BYOK: check COPILOT_PROVIDER_API_KEY), restart orchd, then `orchctl retry RUN`"
)
PERMISSION_OPTIONS = ("--allow-all", "--yolo", "--allow-all-tools", "--allow-tool", "--deny-tool")


class CopilotAdapter:
    """Copilot CLI in prompt mode, with JSON lines."""

    name = "copilot"
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
        argv = ["copilot", "--output-format", "json", "--no-ask-user", "--no-auto-update"]
        if task.model:
            argv += ["--model", task.model]
        if resume:
            argv += [f"--resume={resume}"]
        if not has_option(task.agent_args, *PERMISSION_OPTIONS):
            argv += ["--allow-all"]
        prompt = prompt_for(task.prompt, bool(resume), feedback)
        return with_prompt_option([*argv, *task.agent_args], "--prompt", prompt, task.cwd)

    def classify(self, task: TaskSpec, exit: Exit) -> Outcome:
        events = json_lines(exit)
        result = next((e for e in reversed(events) if e.get("type") == "result"), None)
        errors = [e.get("data") or {} for e in events if e.get("type") == "session.error"]
        report = _report(events, result, ok=not errors)
        if missing := not_installed(AGENT, exit, INSTALL_HINT, report):
            return missing
        if (
            result is not None
            and not errors
            and exit.exit_code == 0
            and result.get("exitCode", 0) == 0
        ):
            return Outcome(SUCCESS, report=report)
        if not errors:
            return failed(AGENT, error_words(exit) or describe_exit(exit), report, AUTH_HINT)
        error = errors[-1]
        kind = "auth" if error.get("errorType") == "authentication" else None
        return failed(
            AGENT, str(error.get("message") or error.get("errorType")), report, AUTH_HINT, kind=kind
        )


def _report(events: list[dict[str, Any]], result: dict[str, Any] | None, ok: bool) -> AgentReport:
    replies = [
        str((e.get("data") or {}).get("content") or "")
        for e in events
        if e.get("type") == "assistant.message"
    ]
    answer = next((r for r in reversed(replies) if r.strip()), "")
    return AgentReport(
        result=clip(answer.strip()) if ok else "",
        session_id=str((result or {}).get("sessionId") or ""),
    )
