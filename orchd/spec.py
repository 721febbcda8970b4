"""What a plan is: the fields users write (`Raw*`), what they resolve into (`*Spec`, kept in the
log), and the rules that turn one written task into a TaskSpec.

Pure: no files, no clock. Reading a plan (its format, `for_each`, prompt files, the lines that
errors name) is `orchd/plan.py`; its errors reach the rules here through `where`, which knows the
line of a field path, and its prompt files through `read_prompt`.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal, Protocol

import msgspec

from orchd.errors import PlanError

AGENTS = ("claude", "codex", "gemini", "aider", "opencode", "cursor", "amp", "copilot", "command")
MAX_PROMPT_BYTES = 1 << 20
PROVIDER_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$")
ID_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,127}$")
SECRET_NAME_RE = re.compile(r"(_KEY|_TOKEN)$|SECRET|PASSWORD|CREDENTIAL", re.I)

# ------------------------------------------------------------ resolved (persisted in events)


class BackoffSpec(
    msgspec.Struct, frozen=True, forbid_unknown_fields=True, gc=False, omit_defaults=True
):
    """Backoff between attempts: min(max, initial × factor^(n-1)), jittered."""

    initial: float = 2.0
    factor: float = 2.0
    max: float = 300.0
    jitter: str = "full"


class TaskSpec(
    msgspec.Struct, frozen=True, forbid_unknown_fields=True, gc=False, omit_defaults=True
):
    """One resolved task: everything needed to run it, defaults applied."""

    id: str
    agent: str
    cwd: str
    prompt: str = ""  # the text itself, also when the plan named a prompt_file: a replay shows it
    command: list[str] = []
    model: str | None = None
    max_retries: int = 3
    timeout: float = 1800.0
    backoff: BackoffSpec = BackoffSpec()
    agent_args: list[str] = []
    env: dict[str, str] = {}
    resume: bool = False
    isolation: str = "none"
    # worktree isolation: files copied from the workdir into the worktree (".env")
    copy: list[str] = []
    setup: list[list[str]] = []  # worktree isolation: argvs run in the worktree before the agent
    repo: str | None = None  # worktree isolation: the cwd's repository's top level (set at submit)
    base_commit: str | None = None  # ... and the commit its branch starts from
    provider: str | None = None  # the account it spends: the plan's name, else resolved at submit
    budget_usd: float | None = None  # the most this task may spend, over all its attempts
    stall: float | None = None  # seconds without output after which an attempt is stopped
    verify: list[list[str]] = []  # argvs run in the task's directory after its agent exits 0
    verify_timeout: float = 600.0  # for each of them


class RunSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True, gc=False):
    """One resolved plan."""

    name: str
    concurrency: int
    workdir: str
    tasks: list[TaskSpec]
    base: str | None = None  # worktree isolation: the branch, tag or commit named (default HEAD)
    budget_usd: float | None = None  # no session starts once the run has spent this much


# ------------------------------------------------------------ raw (what users write)

Duration = str | float | int
Prompt = Annotated[
    str | None,
    msgspec.Meta(description="What the agent is asked; {path} {stem} {name} {dir} are filled in."),
]
PromptFile = Annotated[
    str | None,
    msgspec.Meta(
        description="A file whose text is the prompt (relative to the plan file; for a plan on "
        "stdin, to the current directory), filled in like prompt. Set prompt or prompt_file."
    ),
]


class RawBackoff(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    initial: Duration | None = None
    factor: float | None = None
    max: Duration | None = None
    jitter: Literal["full", "none"] | None = None


class RawTaskFields(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Fields allowed both in [defaults] and in each task."""

    agent: str | None = None
    max_retries: int | None = None
    timeout: Duration | None = None
    backoff: RawBackoff | None = None
    agent_args: list[str] | None = None
    env: dict[str, str] | None = None
    resume: bool | None = None
    model: str | None = None
    copy: list[str] | None = None
    setup: list[list[str]] | None = None
    prompt: Prompt = None
    prompt_file: PromptFile = None
    provider: str | None = None
    budget_usd: float | None = None
    stall: Duration | None = None
    verify: list[list[str]] | None = None
    verify_timeout: Duration | None = None


class RawTask(RawTaskFields, forbid_unknown_fields=True, kw_only=True):
    id: str
    workdir: str | None = None  # this task's directory (another repository), relative to the plan's
    command: list[str] | None = None
    for_each: str | None = None


class RawPlan(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """A plan file as written (schemas/plan.schema.json)."""

    name: str | None = None
    concurrency: int = 4
    workdir: str = "."
    isolation: Literal["worktree", "none"] | None = None
    base: str | None = None
    budget_usd: float | None = None
    verify: list[list[str]] | None = None  # every task's checks, unless [defaults] or the task say
    verify_timeout: Duration | None = None
    defaults: RawTaskFields = msgspec.field(default_factory=RawTaskFields)
    tasks: list[RawTask] = []


# ------------------------------------------------------------ durations

_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


@functools.lru_cache(maxsize=1024, typed=True)  # a plan of 100,000 tasks says "30m" 100,000 times
def parse_duration(value: Duration) -> float:
    """Seconds in `"90s"`, `"5m"`, `"1h30m"`, `"250ms"`, or a bare number of seconds.

    Raises:
        ValueError: the value is not a duration.
    """
    if isinstance(value, bool):
        raise ValueError(f'expected a duration like "90s", got {value!r}')
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        text = value.strip().replace(" ", "")
        if not text or _DURATION_RE.sub("", text) != "":
            raise ValueError(f'invalid duration {value!r} (use e.g. "90s", "5m", "1h30m", "250ms")')
        seconds = sum(float(n) * _UNITS[u] for n, u in _DURATION_RE.findall(text))
    if seconds < 0 or seconds != seconds or seconds == float("inf"):
        raise ValueError(f"invalid duration {value!r}")
    return seconds


def positive_amount(value: float) -> bool:
    """Whether `value` is a budget in USD: more than 0 and finite (NaN and inf are null in JSON)."""
    return 0 < value < float("inf")


# ------------------------------------------------------------ one task


class Where(Protocol):
    """Makes the error of a field path, naming the plan and the field's line where it can."""

    def error(self, path: str, what: str) -> PlanError: ...


ReadPrompt = Callable[[str, str], str]  # (field path, file name as written) -> the file's text
_PLACEHOLDER_RE = re.compile(r"\{(path|stem|name|dir)\}")


class TaskRules:
    """Turns each task of one plan into a TaskSpec: its fields over the plan's [defaults] (and the
    plan's own `verify` and `verify_timeout`, where [defaults] sets none)."""

    def __init__(self, plan: RawPlan, where: Where, read_prompt: ReadPrompt) -> None:
        self.defaults, self.isolation, self.where = plan.defaults, plan.isolation, where
        self.plan = {"verify": plan.verify, "verify_timeout": plan.verify_timeout}
        self.read_prompt = read_prompt
        # one frozen spec shared by every task that sets no backoff of its own
        self.backoff = self._backoff([("defaults", plan.defaults.backoff)])

    def task(
        self, raw: RawTask, workdir: Path, values: dict[str, str] | None, path: str
    ) -> TaskSpec:
        """The task `raw` (at `path`, e.g. `tasks[3]`), with `values` for its placeholders.

        Raises:
            PlanError: a field is wrong; the error names it (`tasks[3].timeout`, `defaults.env.X`).
        """
        error = self.where.error
        task_id = self._fill(raw.id, values, f"{path}.id")
        if not ID_RE.match(task_id):
            raise error(
                f"{path}.id",
                f"invalid id {task_id!r}: use a-z, 0-9, '.', '_', '-' "
                "(starting with a letter or digit, at most 128)",
            )
        agent, _ = self._pick(raw, "agent", "claude", path)
        if agent not in AGENTS:
            raise error(f"{path}.agent", f"unknown agent {agent!r} (one of: {', '.join(AGENTS)})")
        retries, at = self._pick(raw, "max_retries", 3, path)
        if retries < 0:
            raise error(at, f"must be >= 0, got {retries}")
        timeout = self._positive_duration(raw, "timeout", "30m", path)
        prompt = self._prompt(raw, values, path)
        command = [
            self._fill(c, values, f"{path}.command[{j}]") for j, c in enumerate(raw.command or [])
        ]
        if agent == "command":
            if not command:
                raise error(
                    f"{path}.command", 'agent "command" needs a non-empty command (an argv list)'
                )
        elif raw.command is not None:
            raise error(
                f"{path}.command", f'only agent "command" takes a command (agent is {agent!r})'
            )
        elif not prompt.strip():
            raise error(f"{path}.prompt", f"agent {agent!r} needs a prompt (prompt or prompt_file)")
        args, _ = self._pick(raw, "agent_args", [], path)
        env, at = self._pick(raw, "env", {}, path)
        for name in env:
            if SECRET_NAME_RE.search(name):
                raise error(
                    f"{at}.{name}",
                    "looks like a secret; a plan is kept in the event log, so put secrets in "
                    "orchd's environment instead (agents inherit it; see systemd/orchd.service)",
                )
        copy, at = self._pick(raw, "copy", [], path)
        for j, name in enumerate(copy):
            if Path(name).is_absolute() or ".." in Path(name).parts:
                raise error(
                    f"{at}[{j}]", f"{name!r} must be a path relative to the workdir, inside it"
                )
        setup, at = self._pick(raw, "setup", [], path)
        self._argvs(setup, at)
        verify, at = self._pick(raw, "verify", [], path)
        self._argvs(verify, at)
        provider, at = self._pick(raw, "provider", None, path)
        if provider is not None and not PROVIDER_RE.match(provider):
            raise error(
                at,
                f"invalid provider name {provider!r}: use letters, digits, '.', '_', '-', ':', '@'",
            )
        budget, at = self._pick(raw, "budget_usd", None, path)
        if budget is not None and not positive_amount(budget):
            raise error(at, f"must be a positive amount, got {budget}")
        return TaskSpec(
            id=task_id,
            agent=agent,
            cwd=str(workdir),
            prompt=prompt,
            command=command,
            model=self._pick(raw, "model", None, path)[0],
            max_retries=retries,
            timeout=timeout,
            backoff=self.backoff
            if raw.backoff is None
            else self._backoff([("defaults", self.defaults.backoff), (path, raw.backoff)]),
            agent_args=[
                self._fill(a, values, f"{path}.agent_args[{j}]") for j, a in enumerate(args)
            ],
            env=dict(env),
            resume=self._pick(raw, "resume", False, path)[0],
            isolation=self.isolation or ("none" if agent == "command" else "worktree"),
            copy=list(copy),
            setup=[list(a) for a in setup],
            provider=provider,
            budget_usd=budget,
            stall=self._positive_duration(raw, "stall", None, path),
            verify=[  # a check may name the task's file: {path} {stem} {name} {dir}
                [self._fill(arg, values, f"{at}[{j}][{k}]") for k, arg in enumerate(argv)]
                for j, argv in enumerate(verify)
            ],
            verify_timeout=self._positive_duration(raw, "verify_timeout", "10m", path),
        )

    def _argvs(self, argvs: list[list[str]], at: str) -> None:
        """Each of `setup`'s steps and `verify`'s checks is a non-empty argv."""
        for j, argv in enumerate(argvs):
            if not argv:
                raise self.where.error(
                    f"{at}[{j}]",
                    'is empty (each is an argv list, e.g. ["python3", "-m", "pytest"])',
                )

    def _pick(self, raw: RawTask, field: str, fallback: Any, path: str) -> tuple[Any, str]:
        """The task's value of `field`, else the defaults', else the plan's, else `fallback`; and
        where it is written (`tasks[3].timeout`, `defaults.timeout`), for errors."""
        value = getattr(raw, field)
        if value is not None:
            return value, f"{path}.{field}"
        value = getattr(self.defaults, field)
        if value is not None:
            return value, f"defaults.{field}"
        value = self.plan.get(field)  # the plan's own `verify`, `verify_timeout`
        return (value, field) if value is not None else (fallback, f"{path}.{field}")

    def _positive_duration(
        self, raw: RawTask, field: str, fallback: Duration | None, path: str
    ) -> Any:
        """The seconds of a duration field that must be more than 0 (None when unset)."""
        value, at = self._pick(raw, field, fallback, path)
        if value is None:
            return None
        seconds = self._duration(value, at)
        if seconds <= 0:
            raise self.where.error(at, "must be more than 0")
        return seconds

    def _prompt(self, raw: RawTask, values: dict[str, str] | None, path: str) -> str:
        """The prompt's text, filled in: `prompt`, or the text of `prompt_file`, whichever the
        task sets, else whichever the defaults set; both at one level is a mistake."""
        for fields, at in ((raw, path), (self.defaults, "defaults")):
            if fields.prompt is not None and fields.prompt_file is not None:
                raise self.where.error(f"{at}.prompt_file", "set prompt or prompt_file, not both")
            if fields.prompt is not None:
                field, template = f"{at}.prompt", fields.prompt
                break
            if fields.prompt_file is not None:
                field = f"{at}.prompt_file"
                template = self.read_prompt(field, fields.prompt_file)
                if not template.strip():
                    raise self.where.error(field, f"{fields.prompt_file!r} is empty")
                break
        else:
            return ""
        prompt = self._fill(template, values, field)
        if len(prompt.encode()) > MAX_PROMPT_BYTES:
            raise self.where.error(field, f"is larger than {MAX_PROMPT_BYTES >> 10} KiB")
        return prompt

    def _fill(self, template: str, values: dict[str, str] | None, path: str) -> str:
        """Replace {path} {stem} {name} {dir}; other braces (code, JSON in prompts) stay as
        written."""
        if values is None:
            if path.endswith(".id") and _PLACEHOLDER_RE.search(template):
                raise self.where.error(
                    path, f"{template!r} uses a placeholder but the task has no for_each"
                )
            return template
        return _PLACEHOLDER_RE.sub(lambda m: values[m.group(1)], template)

    def _duration(self, value: Duration, path: str) -> float:
        try:
            return parse_duration(value)
        except ValueError as exc:
            raise self.where.error(path, str(exc)) from None

    def _backoff(self, layers: list[tuple[str, RawBackoff | None]]) -> BackoffSpec:
        """The backoff of `layers` ((where it is written, its raw backoff)), later ones winning."""
        merged: dict[str, Any] = {}
        for origin, raw in layers:
            if raw is None:
                continue
            for field in ("initial", "factor", "max", "jitter"):
                value = getattr(raw, field)
                if value is None:
                    continue
                at = f"{origin}.backoff.{field}"
                if field in ("initial", "max"):
                    value = self._duration(value, at)
                elif field == "factor" and not 1 <= value < float("inf"):  # NaN, inf: null in JSON
                    raise self.where.error(at, f"must be at least 1 and finite, got {value}")
                merged[field] = value
        return BackoffSpec(**merged)
