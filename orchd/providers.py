"""Providers: the accounts agents spend, and how much of one may run at once.

A provider is an agent together with the endpoint it talks to and the
credential it uses: `claude:api.anthropic.com:key-1f2e3d4c`. Only a fingerprint
of the credential is kept (the first 8 hex digits of its SHA-256), never the
credential. A plan may name the provider of its tasks instead (`provider =
"team-anthropic"`), to group tasks whose environment orch cannot tell apart.
Tasks are given their provider at submit, from orchd's environment and the
plan's `env`; `command` tasks have none.

Holds (a rejected credential; a usage limit until its reset) are events in the
log (`ProviderHeld`, `ProviderReleased`), folded in `fold.py`. How many sessions
of a provider run at once adapts to its answers and rate limits (`Aimd`); the
limit it learnt from a throttle is logged (`ProviderLimited`) and a restart takes
it up again; a provider that never throttled starts again slowly. What the real
CLIs do, and the benchmark this was tuned on: docs/providers.md.
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
ROUNDS = 16  # once throttled, the limit grows by one after this many answers per session allowed


class Aimd:
    """How many sessions of one provider may run at once (the plan's and the global caps still hold).

    The provider's answers and refusals clock it, as acknowledgements and losses clock TCP's
    window; the supervisor tells it each session's first answer and its first throttle (a rate
    limit or an overload), with when that session started, how many sessions of the provider
    run (`using`) and how many of them are throttled now (`excess`: refused, not answered since).

    - *Slow start*: from START sessions, the limit grows by a quarter (at least one) each time a
      session started since the last change is answered while the limit is in use (every
      allowed session runs, none is throttled): the last step worked, take the next.
    - *Decrease*: a throttle of a session started since the last change lowers the limit by one,
      to the sessions that were not throttled (what the provider served) if that is lower; a
      session started before the last change tells nothing new (one of the excess, counted).
    - *Additive increase*: once throttled, ROUNDS answers per session allowed, while the limit
      is in use, add one: a probe past the provider's capacity every so often.

    A probe past the capacity is one session; deferred at its first 429 (decide.live), it costs
    one 429.
    """

    def __init__(self, ceiling: int, start: int | None = None) -> None:
        self.ceiling = ceiling  # the global cap: the limit never goes above it
        self.slow = start is None  # no throttle seen yet (a restored limit was throttled before)
        self.limit = min(START if start is None else start, ceiling)
        self.changed = -math.inf  # monotonic time of the last change
        self.credit = 0  # answers since the last change, once throttled
        self.throttled = 0  # throttle signals seen (for status)

    @property
    def allowed(self) -> int:
        return max(1, self.limit)

    def throttle(self, started: float, using: int, excess: int, now: float) -> bool:
        """A session started at `started` (monotonic) was throttled while `using` sessions of the
        provider ran, `excess` of them throttled (this one included). True when it lowered."""
        self.throttled += 1
        if started < self.changed:
            return False
        self.slow, self.credit, self.changed = False, 0, now
        lowered = max(1, min(self.allowed - 1, using - excess))
        if lowered >= self.limit:
            return False
        self.limit = lowered
        return True

    def answered(self, started: float, using: int, excess: int, now: float) -> bool:
        """A session started at `started` had its first answer while `using` sessions of the
        provider ran, `excess` of them throttled. True when the limit rose."""
        if excess or using < self.allowed or started < self.changed or self.limit >= self.ceiling:
            return False  # not in use, already too many, or the last step not proven yet
        if not self.slow:
            self.credit += 1
            if self.credit < ROUNDS * self.allowed:
                return False
        step = max(1, self.allowed // 4) if self.slow else 1
        self.limit = min(self.ceiling, self.allowed + step)
        self.credit, self.changed = 0, now
        return True

    @property
    def recorded(self) -> int | None:
        """The limit as the log keeps it (None: not learnt yet, or back at the caps)."""
        return None if self.slow or self.limit >= self.ceiling else self.allowed
