"""Cursor Agent CLI: `cursor-agent -p --output-format stream-json`.

The stream mirrors Claude Code's (cursor.com/docs/cli/reference/output-format):
a `system` init event with `session_id` and `model`, `user` and `assistant`
messages, `tool_call` started/completed events, and one terminal `result`
(`subtype` success, `is_error`, `result`: the final text, `session_id`,
`duration_ms`). It reports neither cost nor tokens. On failure Cursor exits
non-zero and writes a plain error message to stderr, which orch reads from
the attempt's log ("Authentication required", a usage limit with the time it
resets in, ...).

Unattended runs: `--force` (apply edits and run commands unless denied) and
`--trust` (trust the worktree without asking) unless `agent_args` already
choose. Authentication: CURSOR_API_KEY or `cursor-agent login`.
"""

from __future__ import annotations

from orchd.agents.base import (
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
    with_prompt,
)
from orchd.events import VerifyResult
from orchd.plan import TaskSpec

AGENT = "Cursor Agent"
INSTALL_HINT = "install the Cursor Agent CLI (curl https://cursor.com/install -fsS | bash) where orchd finds it on PATH"
AUTH_HINT = (
    "set CURSOR_API_KEY (or run `cursor-agent login` as orchd's user) in orchd's environment, "
    "restart orchd, then `orchctl retry RUN`"
)


class CursorAdapter:
    """Cursor Agent in print mode, streaming JSON."""

    name = "cursor"
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
        argv = ["cursor-agent", "--print", "--output-format", "stream-json"]
        if task.model:
            argv += ["--model", task.model]
        if resume:
            argv += ["--resume", resume]
        if not has_option(task.agent_args, "--force", "-f", "--yolo", "--mode"):
            argv += ["--force"]
        if not has_option(task.agent_args, "--trust"):
            argv += ["--trust"]
        prompt = prompt_for(task.prompt, bool(resume), feedback)
        return with_prompt([*argv, *task.agent_args], prompt, task.cwd)

    def classify(self, task: TaskSpec, exit: Exit) -> Outcome:
        report, result = claude_style_report(json_lines(exit))
        if missing := not_installed(AGENT, exit, INSTALL_HINT, report):
            return missing
        if result is not None and not result.get("is_error") and exit.exit_code == 0:
            return Outcome(SUCCESS, report=report)
        text = (
            str((result or {}).get("error") or (result or {}).get("result") or "") if result else ""
        )
        return failed(AGENT, text or error_words(exit) or describe_exit(exit), report, AUTH_HINT)
