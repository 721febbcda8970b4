"""Gemini CLI: `gemini --prompt=PROMPT --output-format stream-json`.

The stream (checked against @google/gemini-cli 0.61.0): `init` (session_id,
model), `message` (role user|assistant; assistant text comes as `delta`
chunks), `tool_use`, `tool_result`, `error` (non-fatal), and one `result`
with `status` success|error, `error.message` and `stats` (input_tokens,
output_tokens, per model). It reports no cost.

Exit codes: 0 success, 41 authentication, 42 input (bad flags, a session to
resume that is gone), 44 sandbox, 52 config, 53 turn limit, 54 tool failure,
55 untrusted folder, 130 cancelled; an API error exits with its HTTP status
modulo 256 (429 -> 173, 400 -> 144, 503 -> 247), so the `result` text decides.
Gemini CLI retries 429/5xx itself before giving up; what reaches orch is the
last word: a daily quota ("exhausted your daily quota") parks the task until
the quota resets (midnight Pacific time), a named wait ("Please retry in
3600s") parks it that long, anything else of that kind is retried.

Unattended runs: `--approval-mode yolo` unless `agent_args` name an approval
mode, and `--skip-trust` (headless Gemini CLI refuses an untrusted folder,
which every fresh worktree is). Authentication is Gemini CLI's own:
GEMINI_API_KEY, Vertex AI variables, or a login in ~/.gemini.
"""

from __future__ import annotations

from typing import Any

from orchd.agents.base import (
    PARK,
    PERMANENT,
    RETRY,
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
    not_installed,
    prompt_for,
    total,
    with_prompt_option,
)
from orchd.events import AgentReport, VerifyResult
from orchd.plan import TaskSpec
from orchd.streams.gemini import category, next_quota_reset

AGENT = "Gemini CLI"
INSTALL_HINT = "install Gemini CLI (npm install -g @google/gemini-cli) where orchd finds it on PATH"
AUTH_HINT = (
    "set GEMINI_API_KEY (or the Vertex AI variables, or log in with `gemini` once) in orchd's "
    "environment, restart orchd, then `orchctl retry RUN`"
)
# exit codes of Gemini CLI's fatal errors that no retry fixes -> what the user should do
FATAL_EXITS: dict[int, str] = {
    41: AUTH_HINT,
    42: "Gemini CLI refused its input: check the task's `agent_args`; a session to resume that is gone "
    "needs `resume = false`",
    44: "Gemini CLI's sandbox failed: fix the sandbox setup or drop --sandbox from `agent_args`",
    52: "Gemini CLI's configuration is invalid: fix ~/.gemini/settings.json or the workspace's .gemini/",
    53: "the agent used all its turns: raise maxSessionTurns in Gemini's settings.json or split the task",
    55: "the folder is not trusted: keep --skip-trust, or set GEMINI_CLI_TRUST_WORKSPACE=true",
}


class GeminiAdapter:
    """Gemini CLI in headless mode, streaming JSON."""

    name = "gemini"
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
        argv = ["gemini", "--output-format", "stream-json", "--skip-trust"]
        if task.model:
            argv += ["--model", task.model]
        if resume:
            argv += ["--resume", resume]
        if not has_option(task.agent_args, "--approval-mode", "--yolo", "-y"):
            argv += ["--approval-mode", "yolo"]
        prompt = prompt_for(task.prompt, bool(resume), feedback)
        # a long prompt goes on stdin alone: Gemini CLI runs headless when stdin is not a terminal
        return with_prompt_option([*argv, *task.agent_args], "--prompt", prompt, task.cwd)

    def classify(self, task: TaskSpec, exit: Exit) -> Outcome:
        events = json_lines(exit)
        result = next((e for e in reversed(events) if e.get("type") == "result"), None)
        report = _report(events, result)
        if missing := not_installed(AGENT, exit, INSTALL_HINT, report):
            return missing
        if result is not None and result.get("status") == "success" and exit.exit_code == 0:
            return Outcome(SUCCESS, report=report)
        error = (result or {}).get("error") or {}
        text = str(error.get("message") or last_words(exit) or describe_exit(exit))
        if exit.exit_code in FATAL_EXITS:
            return Outcome(
                PERMANENT, reason=f"{AGENT}: {text} ({FATAL_EXITS[exit.exit_code]})", report=report
            )
        if "daily quota" in text.lower():
            return Outcome(
                PARK,
                reason=f"{AGENT}: {' '.join(text.split())}",
                report=report,
                park_until=next_quota_reset(),
            )
        if "exhausted your capacity" in text.lower() or "MODEL_CAPACITY" in text:
            return Outcome(RETRY, reason=f"{AGENT}: {' '.join(text.split())}", report=report)
        return failed(AGENT, text, report, AUTH_HINT, kind=category(text) or None)


def _report(events: list[dict[str, Any]], result: dict[str, Any] | None) -> AgentReport:
    session = next(
        (str(e["session_id"]) for e in events if e.get("type") == "init" and e.get("session_id")),
        "",
    )
    # the final answer: the assistant text after the last tool call
    answer: list[str] = []
    for event in events:
        if event.get("type") in ("tool_use", "tool_result"):
            answer = []
        elif event.get("type") == "message" and event.get("role") == "assistant":
            answer.append(str(event.get("content") or ""))
    stats = (result or {}).get("stats") or {}
    ok = result is not None and result.get("status") == "success"
    return AgentReport(
        result=clip("".join(answer).strip()) if ok else "",
        session_id=session,
        tokens_in=total([stats.get("input_tokens")]) if stats else None,
        tokens_out=total([stats.get("output_tokens")]) if stats else None,
    )
