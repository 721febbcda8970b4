"""Aider: `aider --message=PROMPT --yes-always --no-stream --no-pretty`.

Aider has no machine-readable output and exits 0 even when the model call
failed, so orch reads its text (checked against aider-chat 0.86.2):
- an API error is a line `litellm.<ErrorClass>: ...` (AuthenticationError,
  RateLimitError, ServiceUnavailableError, ContextWindowExceededError, ...),
  followed by aider's own explanation; aider retries the retryable ones for
  about a minute ("Retrying in 32.0 seconds...") before giving up;
- each answered request ends with `Tokens: 1.2k sent, 34 received. Cost:
  $0.0033 message, $0.0033 session.`
An attempt succeeded when aider exited 0 and no API error came after its last
answer. Lines are wrapped at the terminal width, so they are joined first.

Unattended runs: `--yes-always`, no update check, no release notes, no
analytics, and `--no-gitignore` (aider would otherwise add `.aider*` to the
worktree's .gitignore). Aider has no session id; with `resume = true` it
reloads the worktree's chat history (`--restore-chat-history`). The model's
key comes from the environment (OPENAI_API_KEY, ANTHROPIC_API_KEY, ...).
"""

from __future__ import annotations

import re

from orchd.agents.base import (
    SUCCESS,
    Exit,
    Launch,
    Outcome,
    clip,
    describe_exit,
    failed,
    last_words,
    not_installed,
    prompt_for,
    tail,
    with_prompt_option,
)
from orchd.events import AgentReport, VerifyResult
from orchd.plan import TaskSpec

AGENT = "Aider"
INSTALL_HINT = "install Aider (python -m pip install aider-install && aider-install) where orchd finds it on PATH"
AUTH_HINT = (
    "set the model provider's key (OPENAI_API_KEY, ANTHROPIC_API_KEY, ... or `--api-key` in "
    "`agent_args`) in orchd's environment, restart orchd, then `orchctl retry RUN`"
)
OPTIONS = [
    "--yes-always",
    "--no-stream",
    "--no-pretty",
    "--no-fancy-input",
    "--no-check-update",
    "--no-show-release-notes",
    "--no-analytics",
    "--no-gitignore",
]
ERROR_RE = re.compile(r"^litellm\.(\w+):", re.M)
# litellm errors whose kind the class says, whatever the message
ERROR_KINDS = {
    "AuthenticationError": "auth",
    "ContextWindowExceededError": "context",
    "NotFoundError": "model",
    "BadRequestError": "invalid",
}
USAGE_RE = re.compile(
    r"^Tokens: ([\d.]+k?) sent,.*?([\d.]+k?) received\.(?:\s*Cost: \$[\d.]+ message, "
    r"\$([\d.]+) session\.)?",
    re.M,
)
BANNER_RE = re.compile(
    r"^(Aider v|Main model:|Weak model:|Editor model:|Git repo:|Repo-map:|Added .* to the "
    r"chat\.|Use /help|Restored previous conversation)",
    re.M,
)
CONTEXT_RE = re.compile(r"exceeds the [\d,]+ token limit|Your estimated chat context", re.I)


class AiderAdapter:
    """Aider with one message, answering yes to everything."""

    name = "aider"
    install_hint = INSTALL_HINT
    auth_hint = AUTH_HINT

    def launch(
        self,
        task: TaskSpec,
        attempt: int,
        resume: str | None = None,
        feedback: VerifyResult | None = None,
    ) -> Launch:
        argv = ["aider", *OPTIONS]
        if task.model:
            argv += ["--model", task.model]
        if task.resume and attempt > 1:
            argv += ["--restore-chat-history"]
        prompt = prompt_for(task.prompt, task.resume and attempt > 1, feedback)
        return with_prompt_option(
            [*argv, *task.agent_args],
            "--message",
            prompt,
            task.cwd,
            ["--message-file", "/dev/stdin"],
        )

    def classify(self, task: TaskSpec, exit: Exit) -> Outcome:
        text = tail(exit, 1 << 20)
        report = _report(text)
        if missing := not_installed(AGENT, exit, INSTALL_HINT, report):
            return missing
        usages = list(USAGE_RE.finditer(text))
        errors = list(ERROR_RE.finditer(text))
        answered = usages[-1].start() if usages else -1
        error = errors[-1] if errors and errors[-1].start() > answered else None
        if exit.exit_code == 0 and error is None and not CONTEXT_RE.search(text[answered + 1 :]):
            return Outcome(SUCCESS, report=report)
        if error is None:
            context = CONTEXT_RE.search(text[answered + 1 :])
            words = context.group(0) if context else last_words(exit) or describe_exit(exit)
            return failed(AGENT, words, report, AUTH_HINT, kind="context" if context else None)
        # the error line and aider's explanation, unwrapped
        message = " ".join(text[error.start() :].split("\n\n")[0].split())
        return failed(AGENT, message, report, AUTH_HINT, kind=ERROR_KINDS.get(error.group(1)))


def _count(tokens: str) -> int:
    """`1.2k` -> 1200, `34` -> 34: aider's rounded token counts."""
    return round(float(tokens[:-1]) * 1000) if tokens.endswith("k") else int(float(tokens))


def _report(text: str) -> AgentReport:
    usages = list(USAGE_RE.finditer(text))
    if not usages:
        return AgentReport()
    banners = list(BANNER_RE.finditer(text, 0, usages[-1].start()))
    start = text.find("\n", banners[-1].start()) + 1 if banners else 0
    answer = "\n".join(
        line for line in text[start : usages[-1].start()].splitlines() if line.strip()
    )
    cost = usages[-1].group(3)
    return AgentReport(
        result=clip(answer.strip()),
        cost_usd=float(cost) if cost else None,
        tokens_in=sum(_count(u.group(1)) for u in usages),
        tokens_out=sum(_count(u.group(2)) for u in usages),
    )
