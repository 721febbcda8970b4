"""Amp: `amp --execute=PROMPT --stream-json`.

Amp's stream JSON is Claude Code-compatible (the Amp SDK's types): a `system`
init event whose `session_id` is the thread id (`T-...`), `assistant` and
`user` messages, and one `result` with `subtype` success | error_during_execution
| error_max_turns, `is_error`, `result` (success) or `error` (failure),
`num_turns` and `usage` (tokens; no cost). Errors before a thread starts are
one plain line on stderr with exit code 1 (checked against the real CLI):
"Invalid or missing API key. Run 'amp login'", "Couldn't connect to the Amp
server", "API request for getUserInfo failed: 429".

Unattended runs: `--dangerously-allow-all` unless `agent_args` say otherwise.
A retry that resumes continues the thread (`amp threads continue ID`). The
task's `model` picks Amp's agent mode (`--mode`: e.g. low, medium, high),
which is how Amp chooses its model. Authentication: AMP_API_KEY or
`amp login`; without either Amp starts an interactive login and waits (the
attempt then ends only at its timeout).
"""

from __future__ import annotations

from orchd.agents.base import (
    PERMANENT,
    SUCCESS,
    Exit,
    Launch,
    Outcome,
    claude_style_report,
    describe_exit,
    error_words,
    failed,
    has_option,
    json_lines,
    not_installed,
    prompt_for,
    tail,
    with_prompt_option,
)
from orchd.events import VerifyResult
from orchd.plan import TaskSpec

AGENT = "Amp"
INSTALL_HINT = "install Amp (npm install -g @sourcegraph/amp) where orchd finds it on PATH"
AUTH_HINT = (
    "set AMP_API_KEY (ampcode.com/settings) or run `amp login` as orchd's user, restart orchd, "
    "then `orchctl retry RUN`"
)


class AmpAdapter:
    """Amp in execute mode, streaming Claude-compatible JSON."""

    name = "amp"
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
        argv = ["amp", "threads", "continue", resume] if resume else ["amp"]
        argv += ["--stream-json"]
        if task.model:
            argv += ["--mode", task.model]
        if not has_option(task.agent_args, "--dangerously-allow-all"):
            argv += ["--dangerously-allow-all"]
        prompt = prompt_for(task.prompt, bool(resume), feedback)
        return with_prompt_option(
            [*argv, *task.agent_args], "--execute", prompt, task.cwd, ["--execute"]
        )

    def classify(self, task: TaskSpec, exit: Exit) -> Outcome:
        report, result = claude_style_report(json_lines(exit))
        if missing := not_installed(AGENT, exit, INSTALL_HINT, report):
            return missing
        if result is not None and not result.get("is_error") and exit.exit_code == 0:
            return Outcome(SUCCESS, report=report)
        if result is not None and result.get("subtype") == "error_max_turns":
            return Outcome(
                PERMANENT,
                reason=f"{AGENT}: the agent used all its turns (split the task)",
                report=report,
            )
        text = str((result or {}).get("error") or "") or error_words(exit) or describe_exit(exit)
        if "No API key found" in tail(exit):
            return failed(AGENT, text, report, AUTH_HINT, kind="auth")
        return failed(AGENT, text, report, AUTH_HINT)
