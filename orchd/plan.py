"""Reading a plan: TOML or JSON text decoded with msgspec, `for_each` expanded, relative paths
resolved, into a RunSpec (the types, and the rules of one task, are `orchd/spec.py`).

Errors are PlanErrors that name the source, the line (TOML, where it can be found) and the field
path: `plan.toml:12: tasks[3].promt: unknown field`.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import tomllib
from pathlib import Path
from typing import Any

import msgspec

from orchd.errors import PlanError
from orchd.spec import (
    AGENTS,
    MAX_PROMPT_BYTES,
    BackoffSpec,
    RawPlan,
    RawTask,
    RunSpec,
    TaskRules,
    TaskSpec,
    parse_duration,
    positive_amount,
)

# What the rest of orch imports from here; the types are orchd.spec's.
__all__ = [
    "AGENTS",
    "MAX_PLAN_BYTES",
    "MAX_PROMPT_BYTES",
    "MAX_TASKS",
    "BackoffSpec",
    "RunSpec",
    "TaskSpec",
    "load_plan",
    "load_plan_file",
    "parse_duration",
]

MAX_TASKS = 100_000
MAX_PLAN_BYTES = 64 << 20

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
    rules = TaskRules(raw.defaults, raw.isolation, where)
    for i, raw_task in enumerate(raw.tasks):
        path = f"tasks[{i}]"
        task_dir = (
            workdir
            if raw_task.workdir is None
            else _directory(workdir, raw_task.workdir, f"{path}.workdir", where)
        )
        for values in _expansions(raw_task, task_dir, path, where):
            task = rules.task(raw_task, task_dir, values, path)
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
    if raw.budget_usd is not None and not positive_amount(raw.budget_usd):
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
