"""OpenCode: `opencode run --format json`.

The stream (checked against opencode-ai 1.18): every event has `type`,
`timestamp` and `sessionID`; `text` events carry a finished text part
(`part.text`, `part.messageID`), `tool_use` a tool call, `step_finish` the
tokens (`part.tokens`: input, output, reasoning, cache read/write) and cost
in USD (`part.cost`) of one model call, and `error` the error that ended the
run: `error.name` (APIError, ProviderAuthError, UnknownError, ...) and
`error.data` (message, statusCode, isRetryable, responseHeaders). OpenCode
retries 429/5xx itself; an `error` event is its last word, and the exit code
is then 1.

With `--print-logs --log-level ERROR` OpenCode also writes its error log to
stderr: that is where a missing provider or model shows
(ProviderModelNotFoundError) while the JSON only says UnknownError.

Unattended runs: `--auto` (approve every permission not explicitly denied).
`model` is `provider/model` (e.g. `anthropic/claude-sonnet-4-5`);
authentication is OpenCode's own (`opencode auth login`, or the provider's
key variable such as ANTHROPIC_API_KEY).
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
    failed,
    has_option,
    json_lines,
    last_words,
    named_wait,
    not_installed,
    prompt_for,
    tail,
    total,
    with_prompt,
)
from orchd.events import AgentReport, VerifyResult
from orchd.plan import TaskSpec

AGENT = "OpenCode"
INSTALL_HINT = "install OpenCode (npm install -g opencode-ai) where orchd finds it on PATH"
AUTH_HINT = (
    "check the task's `model` (provider/model, as `opencode models` lists them) and log in with "
    "`opencode auth login` or set the provider's key (e.g. ANTHROPIC_API_KEY) in orchd's environment, "
    "restart orchd, then `orchctl retry RUN`"
)
# error names that say the provider or model is not set up, whatever the message
SETUP_ERRORS = ("ProviderAuthError", "ProviderModelNotFoundError", "ProviderInitError")


class OpenCodeAdapter:
    """`opencode run` with raw JSON events."""

    name = "opencode"
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
        argv = ["opencode", "run", "--format", "json", "--print-logs", "--log-level", "ERROR"]
        if task.model:
            argv += ["--model", task.model]
        if resume:
            argv += ["--session", resume]
        if not has_option(task.agent_args, "--auto", "--agent"):
            argv += ["--auto"]
        prompt = prompt_for(task.prompt, bool(resume), feedback)
        return with_prompt([*argv, *task.agent_args], prompt, task.cwd)

    def classify(self, task: TaskSpec, exit: Exit) -> Outcome:
        events = json_lines(exit)
        report = _report(events)
        if missing := not_installed(AGENT, exit, INSTALL_HINT, report):
            return missing
        error = next(
            (e.get("error") or {} for e in reversed(events) if e.get("type") == "error"), None
        )
        if error is None and exit.exit_code == 0:
            return Outcome(SUCCESS, report=report)
        if error is None:
            return failed(AGENT, last_words(exit) or describe_exit(exit), report, AUTH_HINT)
        data = error.get("data") or {}
        name = str(error.get("name") or "")
        text = f"{name}: {data.get('message') or ''}"
        logged = next((s for s in SETUP_ERRORS if s in tail(exit, 16384)), "")
        if name in SETUP_ERRORS or logged:
            return failed(AGENT, f"{text} ({logged or name})", report, AUTH_HINT, kind="auth")
        status = data.get("statusCode")
        text += f" (HTTP {status})" if isinstance(status, int) else ""
        return failed(
            AGENT, text, report, AUTH_HINT, wait=_header_wait(data.get("responseHeaders"))
        )


def _header_wait(headers: Any) -> float | None:
    """The wait a provider named in its response headers (retry-after and the like)."""
    if not isinstance(headers, dict):
        return None
    return named_wait(
        " ".join(f"{k}: {v}" for k, v in headers.items() if "retry" in str(k).lower())
    )


def _report(events: list[dict[str, Any]]) -> AgentReport:
    session = next((str(e["sessionID"]) for e in reversed(events) if e.get("sessionID")), "")
    texts = [e.get("part") or {} for e in events if e.get("type") == "text"]
    last = texts[-1].get("messageID") if texts else None
    answer = "\n".join(str(p.get("text") or "") for p in texts if p.get("messageID") == last)
    steps = [e.get("part") or {} for e in events if e.get("type") == "step_finish"]
    tokens = [s.get("tokens") or {} for s in steps]
    costs: list[float] = [c for s in steps if isinstance(c := s.get("cost"), (int, float))]
    return AgentReport(
        result=clip(answer.strip()),
        session_id=session,
        cost_usd=float(sum(costs)) if costs else None,
        tokens_in=total(
            [t.get("input") for t in tokens]
            + [(t.get("cache") or {}).get(k) for t in tokens for k in ("read", "write")]
        ),
        tokens_out=total([t.get(k) for t in tokens for k in ("output", "reasoning")]),
    )
