"""The plan: what a user submits. TOML or JSON, decoded with msgspec, resolved into a RunSpec.

Errors are PlanErrors that name the source, the line (TOML, where it can be
found) and the field path: `plan.toml:12: tasks[3].promt: unknown field`.
"""

from __future__ import annotations

import functools
import itertools
import json
import os
import re
import tomllib
from pathlib import Path
from typing import Any, Literal

import msgspec

from orchd.errors import PlanError

AGENTS = ("claude", "codex", "gemini", "aider", "opencode", "cursor", "amp", "copilot", "command")
MAX_TASKS = 100_000
MAX_PROMPT_BYTES = 1 << 20
MAX_PLAN_BYTES = 64 << 20
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
    prompt: str = ""
    command: list[str] = []
    model: str | None = None
    max_retries: int = 3
    timeout: float = 1800.0
    backoff: BackoffSpec = BackoffSpec()
    agent_args: list[str] = []
    env: dict[str, str] = {}
    resume: bool = False
    isolation: str = "none"
    copy: list[
        str
    ] = []  # worktree isolation: files copied from the workdir into the worktree (".env")
    setup: list[list[str]] = []  # worktree isolation: argvs run in the worktree before the agent
    repo: str | None = (
        None  # worktree isolation: the top level of the cwd's git repository (set at submit)
    )
    base_commit: str | None = None  # ... and the commit its branch starts from
    provider: str | None = None  # the account it spends: the plan's name, else resolved at submit
    budget_usd: float | None = None  # the most this task may spend, over all its attempts
    stall: float | None = None  # seconds without output after which an attempt is stopped


class RunSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True, gc=False):
    """One resolved plan."""

    name: str
    concurrency: int
    workdir: str
    tasks: list[TaskSpec]
    base: str | None = (
        None  # worktree isolation: the branch, tag or commit the plan named (default HEAD)
    )
    budget_usd: float | None = None  # no session starts once the run has spent this much


# ------------------------------------------------------------ raw (what users write)

Duration = str | float | int


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
    prompt: str | None = None
    provider: str | None = None
    budget_usd: float | None = None
    stall: Duration | None = None


class RawTask(RawTaskFields, forbid_unknown_fields=True, kw_only=True):
    id: str
    workdir: str | None = (
        None  # this task's directory (another repository, say), relative to the plan's
    )
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


# ------------------------------------------------------------ errors with lines


class _Where:
    """Finds the line of a field path in TOML text, where it can."""

    def __init__(self, source: str, text: str | None) -> None:
        self.source = source
        self.lines = text.splitlines() if text is not None else None

    def error(self, path: str, what: str) -> PlanError:
        line = self.line(path)
        prefix = f"{self.source}:{line}" if line else self.source
        path, what = _clip(path), _clip(what)
        return PlanError(f"{prefix}: {path}: {what}" if path else f"{prefix}: {what}")

    def line(self, path: str) -> int | None:
        if self.lines is None or not path:
            return None
        match = re.match(r"^(tasks)\[(\d+)\](?:\.(\w+))?|^(defaults)(?:\.(\w+))?|^(\w+)", path)
        if not match:
            return None
        tasks, index, task_key, defaults, default_key, top_key = match.groups()
        if tasks:
            header = _nth(self.lines, lambda s: s == "[[tasks]]", int(index))
            return _key_after(self.lines, header, task_key)
        if defaults:
            header = _nth(self.lines, lambda s: s == "[defaults]", 0)
            return _key_after(self.lines, header, default_key)
        return _key_after(self.lines, -1, top_key)


def _clip(text: str, limit: int = 300) -> str:
    """Cut a value echoed in an error short: a 1 MB id would make a 1 MB error."""
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} characters)"


def _nth(lines: list[str], match: Any, n: int) -> int | None:
    seen = -1
    for i, line in enumerate(lines):
        if match(line.strip()):
            seen += 1
            if seen == n:
                return i
    return None


def _key_after(lines: list[str], header: int | None, key: str | None) -> int | None:
    if header is None:
        return None
    if key is None:
        return header + 1
    key_re = re.compile(rf"^\s*{re.escape(key)}\s*[=.]")
    for i in range(header + 1, len(lines)):
        stripped = lines[i].strip()
        if stripped.startswith("[") and i != header + 1 and not key_re.match(lines[i]):
            if stripped.startswith("[[") or re.match(r"^\[[\w.\"-]+\]$", stripped):
                break
        if key_re.match(lines[i]):
            return i + 1
    return header + 1 if header >= 0 else None


_MSGSPEC_AT = re.compile(r"^(.*?)(?: - at `\$(.*)`)?$", re.S)


def _validation_error(exc: msgspec.ValidationError, where: _Where) -> PlanError:
    message, at = _MSGSPEC_AT.match(str(exc)).groups()  # type: ignore[union-attr]
    path = (at or "").lstrip(".")
    unknown = re.match(r"Object contains unknown field `(.+)`", message)
    if unknown:
        path = f"{path}.{unknown.group(1)}" if path else unknown.group(1)
        return where.error(path, "unknown field")
    missing = re.match(r"Object missing required field `(.+)`", message)
    if missing:
        path = f"{path}.{missing.group(1)}" if path else missing.group(1)
        return where.error(path, "required field is missing")
    message = message.replace(
        " | null", ""
    )  # raw fields are optional only to tell "unset" from a default
    return where.error(path, message[0].lower() + message[1:])


# ------------------------------------------------------------ loading


def load_plan_file(path: str | os.PathLike) -> RunSpec:
    """Load and resolve a plan file (format by suffix, relative paths by its directory)."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise PlanError(f"{path}: cannot read the plan: {exc.strerror or exc}") from None
    fmt = {".toml": "toml", ".json": "json"}.get(p.suffix.lower())
    return load_plan(data, source=str(path), base_dir=p.absolute().parent, fmt=fmt)


def load_plan(
    text: str | bytes,
    *,
    source: str = "<plan>",
    base_dir: str | os.PathLike = ".",
    fmt: str | None = None,
) -> RunSpec:
    """Decode, validate and resolve a plan.

    Args:
        text: the plan, TOML or JSON.
        source: how to name the plan in errors (its path).
        base_dir: what a relative `workdir` is relative to.
        fmt: "toml" or "json"; sniffed from the text when None.

    Raises:
        PlanError: anything wrong with the plan, with the field path.
    """
    if isinstance(text, bytes):
        if len(text) > MAX_PLAN_BYTES:
            raise PlanError(f"{source}: the plan is larger than {MAX_PLAN_BYTES >> 20} MiB")
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise PlanError(
                f"{source}: the plan is not valid UTF-8 ({exc.reason} at byte {exc.start})"
            ) from None
    if fmt is None:
        fmt = (
            "json" if text.lstrip().startswith("{") else "toml"
        )  # a TOML plan may start with "[defaults]"
    where = _Where(source, text if fmt == "toml" else None)
    raw_obj = _parse(text, fmt, source)
    if not isinstance(raw_obj, dict):
        raise PlanError(
            f"{source}: a plan is a table/object at the top level, got {type(raw_obj).__name__}"
        )
    try:
        raw = msgspec.convert(raw_obj, RawPlan)
    except msgspec.ValidationError as exc:
        raise _validation_error(exc, where) from None
    return _resolve(raw, source, Path(base_dir), where)


def _parse(text: str, fmt: str, source: str) -> Any:
    try:
        if fmt == "toml":
            return tomllib.loads(text)
        if fmt == "json":
            return json.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PlanError(f"{source}: invalid TOML: {exc}") from None
    except json.JSONDecodeError as exc:
        raise PlanError(
            f"{source}:{exc.lineno}: invalid JSON: {exc.msg} (at line {exc.lineno}, "
            f"column {exc.colno})"
        ) from None
    except RecursionError:
        raise PlanError(f"{source}: the plan is nested too deeply") from None
    raise PlanError(f"{source}: unknown plan format {fmt!r} (use .toml or .json)")


def _resolve(raw: RawPlan, source: str, base_dir: Path, where: _Where) -> RunSpec:
    if raw.concurrency < 1:
        raise where.error("concurrency", f"must be at least 1, got {raw.concurrency}")
    workdir = _directory(base_dir, raw.workdir, "workdir", where)
    if not raw.tasks:
        raise PlanError(f"{source}: plan has no tasks (add at least one [[tasks]])")
    if len(raw.tasks) > MAX_TASKS:  # before resolving them all (seconds for 100,000)
        raise PlanError(f"{source}: the plan has more than {MAX_TASKS} tasks")
    name = raw.name or Path(source).stem or "run"
    tasks: list[TaskSpec] = []
    first_seen: dict[str, str] = {}
    base_backoff = _backoff([("defaults", raw.defaults.backoff)], where)
    for i, raw_task in enumerate(raw.tasks):
        path = f"tasks[{i}]"
        task_dir = (
            workdir
            if raw_task.workdir is None
            else _directory(workdir, raw_task.workdir, f"{path}.workdir", where)
        )
        for values in _expansions(raw_task, task_dir, path, where):
            task = _task(
                raw_task, raw.defaults, base_backoff, raw.isolation, task_dir, values, path, where
            )
            if task.id in first_seen:
                origin = (
                    f" (expanded from for_each {raw_task.for_each!r})" if raw_task.for_each else ""
                )
                raise where.error(
                    f"{path}.id",
                    f"duplicate id {task.id!r}{origin} (first at {first_seen[task.id]})",
                )
            first_seen[task.id] = path
            tasks.append(task)
            if len(tasks) > MAX_TASKS:
                raise PlanError(f"{source}: the plan has more than {MAX_TASKS} tasks")
    if raw.budget_usd is not None and not 0 < raw.budget_usd < float("inf"):
        raise where.error("budget_usd", f"must be a positive amount, got {raw.budget_usd}")
    return RunSpec(
        name=name,
        concurrency=raw.concurrency,
        workdir=str(workdir),
        tasks=tasks,
        base=raw.base,
        budget_usd=raw.budget_usd,
    )


def _directory(base: Path, value: str, field: str, where: _Where) -> Path:
    """An existing directory named by `value`, relative to `base` (`~` expanded)."""
    try:
        path = (base / Path(value).expanduser()).resolve()
        is_dir = path.is_dir()
    except (ValueError, OSError, RuntimeError) as exc:  # NUL byte, name too long, ~user unknown
        raise where.error(field, f"invalid path {value[:200]!r}: {exc}") from None
    if not is_dir:
        raise where.error(field, f"{path} is not a directory")
    return path


def _expansions(
    task: RawTask, workdir: Path, path: str, where: _Where
) -> list[dict[str, str] | None]:
    if task.for_each is None:
        return [None]
    pattern = task.for_each
    if Path(pattern).is_absolute() or ".." in Path(pattern).parts:
        raise where.error(
            f"{path}.for_each", f"{pattern!r} must be relative to the workdir, inside it"
        )
    try:
        matches = list(
            itertools.islice((p for p in workdir.glob(pattern) if p.is_file()), MAX_TASKS + 1)
        )
    except (ValueError, OSError) as exc:
        raise where.error(f"{path}.for_each", f"invalid pattern {pattern!r}: {exc}") from None
    if len(matches) > MAX_TASKS:  # stop a pattern like "/**" early, not after listing a whole disk
        raise where.error(f"{path}.for_each", f"{pattern!r} matches more than {MAX_TASKS} files")
    matches.sort()
    if not matches:
        raise where.error(f"{path}.for_each", f"{pattern!r} matches no file in {workdir}")
    out: list[dict[str, str] | None] = []
    for match in matches:
        rel = match.relative_to(workdir)
        out.append(
            {
                "path": rel.as_posix(),
                "name": rel.name,
                "stem": rel.stem,
                "dir": rel.parent.as_posix(),
            }
        )
    return out


_PLACEHOLDER_RE = re.compile(r"\{(path|stem|name|dir)\}")


def _fill(template: str, values: dict[str, str] | None, path: str, where: _Where) -> str:
    """Replace {path} {stem} {name} {dir}; other braces (code, JSON in prompts) stay as written."""
    if values is None:
        if _PLACEHOLDER_RE.search(template) and path.endswith(".id"):
            raise where.error(path, f"{template!r} uses a placeholder but the task has no for_each")
        return template
    return _PLACEHOLDER_RE.sub(lambda m: values[m.group(1)], template)


def _pick(
    task: RawTaskFields, defaults: RawTaskFields, field: str, fallback: Any
) -> tuple[Any, str]:
    value = getattr(task, field)
    if value is not None:
        return value, "task"
    value = getattr(defaults, field)
    return (value, "defaults") if value is not None else (fallback, "")


def _duration(value: Duration, path: str, where: _Where) -> float:
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise where.error(path, str(exc)) from None


def _backoff(layers: list[tuple[str, Any]], where: _Where) -> BackoffSpec:
    """The backoff of `layers` ((where it is written, its raw backoff or None)), later ones winning."""
    merged: dict[str, Any] = {}
    for origin, raw in layers:
        if raw is None:
            continue
        for field in ("initial", "factor", "max", "jitter"):
            value = getattr(raw, field)
            if value is None:
                continue
            field_path = f"{origin}.backoff.{field}"
            if field in ("initial", "max"):
                value = _duration(value, field_path, where)
            elif field == "factor" and not 1 <= value < float(
                "inf"
            ):  # NaN and inf would be null in the log
                raise where.error(field_path, f"must be at least 1 and finite, got {value}")
            merged[field] = value
    return BackoffSpec(**merged)


def _task(
    raw: RawTask,
    defaults: RawTaskFields,
    base_backoff: BackoffSpec,
    isolation: str | None,
    workdir: Path,
    values: dict[str, str] | None,
    path: str,
    where: _Where,
) -> TaskSpec:
    """One task of the plan; `base_backoff` is the defaults' (one frozen spec shared by every task
    that sets none)."""
    task_id = _fill(raw.id, values, f"{path}.id", where)
    if not ID_RE.match(task_id):
        raise where.error(
            f"{path}.id",
            f"invalid id {task_id!r}: use a-z, 0-9, '.', '_', '-' "
            "(starting with a letter or digit, at most 128)",
        )
    agent, _ = _pick(raw, defaults, "agent", "claude")
    if agent not in AGENTS:
        raise where.error(f"{path}.agent", f"unknown agent {agent!r} (one of: {', '.join(AGENTS)})")
    retries, origin = _pick(raw, defaults, "max_retries", 3)
    if retries < 0:
        raise where.error(
            f"{path if origin == 'task' else 'defaults'}.max_retries",
            f"must be >= 0, got {retries}",
        )
    timeout_raw, origin = _pick(raw, defaults, "timeout", "30m")
    timeout = _duration(timeout_raw, f"{path if origin == 'task' else 'defaults'}.timeout", where)
    if timeout <= 0:
        raise where.error(
            f"{path if origin == 'task' else 'defaults'}.timeout", "must be more than 0"
        )
    prompt_raw, origin = _pick(raw, defaults, "prompt", "")
    prompt = _fill(prompt_raw, values, f"{path if origin == 'task' else 'defaults'}.prompt", where)
    if len(prompt.encode()) > MAX_PROMPT_BYTES:
        raise where.error(f"{path}.prompt", f"is larger than {MAX_PROMPT_BYTES >> 10} KiB")
    command = [
        _fill(c, values, f"{path}.command[{j}]", where) for j, c in enumerate(raw.command or [])
    ]
    if agent == "command":
        if not command:
            raise where.error(
                f"{path}.command", 'agent "command" needs a non-empty command (an argv list)'
            )
    else:
        if raw.command is not None:
            raise where.error(
                f"{path}.command", f'only agent "command" takes a command (agent is {agent!r})'
            )
        if not prompt.strip():
            raise where.error(f"{path}.prompt", f"agent {agent!r} needs a prompt")
    args, _ = _pick(raw, defaults, "agent_args", [])
    env, origin = _pick(raw, defaults, "env", {})
    for name in env:
        if SECRET_NAME_RE.search(name):
            raise where.error(
                f"{path if origin == 'task' else 'defaults'}.env.{name}",
                "looks like a secret; a plan is kept in the event log, so put secrets in "
                "orchd's environment instead (agents inherit it; see systemd/orchd.service)",
            )
    resume, _ = _pick(raw, defaults, "resume", False)
    model, _ = _pick(raw, defaults, "model", None)
    copy, origin = _pick(raw, defaults, "copy", [])
    for j, name in enumerate(copy):
        if Path(name).is_absolute() or ".." in Path(name).parts:
            raise where.error(
                f"{path if origin == 'task' else 'defaults'}.copy[{j}]",
                f"{name!r} must be a path relative to the workdir, inside it",
            )
    setup, origin = _pick(raw, defaults, "setup", [])
    for j, argv in enumerate(setup):
        if not argv:
            raise where.error(
                f"{path if origin == 'task' else 'defaults'}.setup[{j}]",
                'is empty (each setup step is an argv list, e.g. ["uv", "sync"])',
            )
    provider, origin = _pick(raw, defaults, "provider", None)
    if provider is not None and not PROVIDER_RE.match(provider):
        raise where.error(
            f"{path if origin == 'task' else 'defaults'}.provider",
            f"invalid provider name {provider!r}: use letters, digits, '.', '_', '-', ':', '@'",
        )
    budget, origin = _pick(raw, defaults, "budget_usd", None)
    if budget is not None and not 0 < budget < float("inf"):
        raise where.error(
            f"{path if origin == 'task' else 'defaults'}.budget_usd",
            f"must be a positive amount, got {budget}",
        )
    stall_raw, origin = _pick(raw, defaults, "stall", None)
    stall = None
    if stall_raw is not None:
        stall = _duration(stall_raw, f"{path if origin == 'task' else 'defaults'}.stall", where)
        if stall <= 0:
            raise where.error(
                f"{path if origin == 'task' else 'defaults'}.stall", "must be more than 0"
            )
    return TaskSpec(
        id=task_id,
        agent=agent,
        cwd=str(workdir),
        prompt=prompt,
        command=command,
        model=model,
        max_retries=retries,
        timeout=timeout,
        backoff=base_backoff
        if raw.backoff is None
        else _backoff([("defaults", defaults.backoff), (path, raw.backoff)], where),
        agent_args=[_fill(a, values, f"{path}.agent_args[{j}]", where) for j, a in enumerate(args)],
        env=dict(env),
        resume=resume,
        isolation=isolation or ("none" if agent == "command" else "worktree"),
        copy=list(copy),
        setup=[list(a) for a in setup],
        provider=provider,
        budget_usd=budget,
        stall=stall,
    )
