"""Providers: the accounts agents spend, and how much of one may run at once.

A provider is an agent together with the endpoint it talks to and the
credential it uses: `claude:api.anthropic.com:key-1f2e3d4c`. Only a fingerprint
of the credential is kept (the first 8 hex digits of its SHA-256), never the
credential. A plan may name the provider of its tasks instead (`provider =
"team-anthropic"`), to group tasks whose environment orch cannot tell apart.
Tasks are given their provider at submit, from orchd's environment and the
plan's `env`; `command` tasks have none.

Holds (a rejected credential; a usage limit until its reset) are events in the
log (`ProviderHeld`, `ProviderReleased`), folded in `state.py`. How many sessions
of a provider run at once adapts to its rate limits (`Aimd`), in memory: a
restart starts again from the caps.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

import msgspec

from orchd.plan import RunSpec, TaskSpec


@dataclass(frozen=True)
class Account:
    """Where an agent CLI finds its endpoint and its credential."""

    endpoint_vars: tuple[str, ...]
    default_endpoint: str
    credential_vars: tuple[str, ...]  # the first one set is the credential
    login_vars: tuple[str, ...] = ()  # else: the directory its login lives in, if set


ACCOUNTS: dict[str, Account] = {
    "claude": Account(
        ("ANTHROPIC_BASE_URL",),
        "api.anthropic.com",
        ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "CLAUDE_CODE_OAUTH_TOKEN"),
        ("CLAUDE_CONFIG_DIR",),
    ),
    "codex": Account(
        ("OPENAI_BASE_URL",), "api.openai.com", ("CODEX_API_KEY", "OPENAI_API_KEY"), ("CODEX_HOME",)
    ),
    "gemini": Account(
        ("GOOGLE_GEMINI_BASE_URL",),
        "generativelanguage.googleapis.com",
        ("GEMINI_API_KEY", "GOOGLE_API_KEY"),
        ("GOOGLE_CLOUD_PROJECT",),
    ),
    "cursor": Account((), "cursor.com", ("CURSOR_API_KEY",)),
    "amp": Account(("AMP_URL",), "ampcode.com", ("AMP_API_KEY",)),
    "copilot": Account(
        ("COPILOT_PROVIDER_BASE_URL",),
        "api.githubcopilot.com",
        ("COPILOT_PROVIDER_API_KEY", "COPILOT_GITHUB_TOKEN", "GH_TOKEN", "GITHUB_TOKEN"),
    ),
    # agents that talk to the provider their model names: the model's provider is the endpoint
    "opencode": Account((), "", ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "GEMINI_API_KEY")),
    "aider": Account((), "", ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "GEMINI_API_KEY")),
}


def fingerprint(secret: str) -> str:
    """A short, one-way name for a credential."""
    return hashlib.sha256(secret.encode()).hexdigest()[:8]


def provider_of(task: TaskSpec, env: Mapping[str, str]) -> str | None:
    """The provider `task` spends from, with orchd's environment `env` (None: a plain command)."""
    if task.provider is not None:
        return task.provider
    account = ACCOUNTS.get(task.agent)
    if account is None:
        return None
    seen = {**env, **task.env}
    endpoint = next((seen[v] for v in account.endpoint_vars if seen.get(v)), "")
    host = (urlsplit(endpoint).netloc or endpoint) if endpoint else account.default_endpoint
    if not host:  # the model says which provider: "anthropic/claude-..." or "claude-..."
        host = (task.model or "default").split("/")[0]
    secret = next((seen[v] for v in account.credential_vars if seen.get(v)), None)
    if secret is not None:
        who = f"key-{fingerprint(secret)}"
    else:
        login = next((seen[v] for v in account.login_vars if seen.get(v)), "")
        who = f"login-{fingerprint(login)}" if login else "login"
    return f"{task.agent}:{host}:{who}"


def with_providers(spec: RunSpec, env: Mapping[str, str]) -> RunSpec:
    """`spec` with each task's provider resolved (at submit)."""
    tasks = [msgspec.structs.replace(t, provider=provider_of(t, env)) for t in spec.tasks]
    return msgspec.structs.replace(spec, tasks=tasks)


# ------------------------------------------------------------ adaptive concurrency

START = 2  # sessions of a provider that start before it has answered any (slow start)
DECREASE = 0.5  # one decrease never takes the limit below this share of what it was
ROUNDS = 8  # once throttled, the limit grows by one after this many answers per session allowed


class Aimd:
    """How many sessions of one provider may run at once (the plan's and the global caps still hold).

    The provider's answers clock it, as acknowledgements clock TCP's window:

    - *Slow start*: from START sessions, each session's first answer lets one more start (the
      limit doubles per round of answers), until the provider first throttles.
    - *Decrease*: a rate limit or overload seen by a session started after the last decrease
      brings the limit down by one, to the most sessions the provider answered at once since the
      last decrease (what it served) if that is lower, and never below half of it in one step; a session started before the last decrease tells
      nothing new (it was one of the excess, already counted).
    - *Additive increase*: once throttled, ROUNDS answers per session allowed add one.

    The limit grows only while it is used: never past the sessions answered plus one (a quarter
    of them in slow start), so a probe past the provider's capacity is one session (or a few), and
    costs one or two 429s.
    """

    def __init__(self, ceiling: int, start: int | None = None) -> None:
        self.ceiling = ceiling  # the global cap: the limit never goes above it
        self.slow = start is None  # no throttle seen yet (a restored limit was throttled before)
        self.limit = float(min(START if start is None else start, ceiling))
        self.decreased_at = -math.inf  # monotonic time of the last decrease
        self.credit = 0  # answers since the last change, once throttled
        self.served = 0  # the most sessions answered at once since the last decrease
        self.throttled = 0  # throttle signals seen (for status)

    @property
    def allowed(self) -> int:
        return max(1, int(self.limit))

    def throttle(self, started: float, answering: int, now: float) -> bool:
        """A session started at `started` (monotonic) was throttled while the provider answered
        `answering` of its sessions: lower the limit. True when it was lowered."""
        self.throttled += 1
        if started < self.decreased_at:
            return False
        self.slow = False
        served = max(answering, self.served)  # answers lag: the latest count may be one short
        lowered = max(1.0, min(self.limit - 1, max(served, self.limit * DECREASE)))
        self.decreased_at, self.credit, self.served = now, 0, answering
        if lowered >= self.limit:
            return False
        self.limit = float(int(lowered))
        return True

    def answered(self, answering: int) -> bool:
        """A session's first answer, with `answering` sessions answered and running (this one
        included): one more may start. True when the limit rose."""
        self.served = max(self.served, answering)
        # grow only while the limit is in use: past the sessions answered, a quarter more of them
        # may wait for their first answer in slow start (at least one), one once throttled
        probes = max(1, answering // 4) if self.slow else 1
        top = min(self.ceiling, answering + probes)
        if self.limit >= top:
            return False
        if not self.slow:
            self.credit += 1
            if self.credit < ROUNDS * self.allowed:
                return False
            self.credit = 0
        self.limit += 1
        return True

    @property
    def recorded(self) -> int | None:
        """The limit as the log keeps it (None: not learnt yet, or back at the caps)."""
        return None if self.slow or self.limit >= self.ceiling else self.allowed
