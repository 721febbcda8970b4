"""Reading a plan: TOML or JSON text (a file, or stdin) decoded with msgspec, `for_each`
expanded, prompt files read, relative paths resolved, into a RunSpec (its types and the rules of
one task are `orchd/spec.py`).

Errors are PlanErrors that name the source, the line (where it can be found) and the field
path: `plan.toml:12: tasks[3].promt: unknown field`, `<stdin>:4: tasks[0].prompt_file: ...`.
"""

from __future__ import annotations

import bisect
import itertools
import json
import os
import re
import stat
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from orchd.errors import PlanError

# BackoffSpec, RunSpec, TaskSpec, MAX_PROMPT_BYTES and parse_duration are imported from here too
from orchd.spec import (  # noqa: F401
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

MAX_TASKS = 100_000
MAX_PLAN_BYTES = 64 << 20
FORMATS = {".toml": "toml", ".json": "json"}  # a plan file's suffix -> its format
STDIN = "<stdin>"  # the source of a plan read from standard input


def format_of(source: str) -> str | None:
    """The format a plan's name says (`plan.toml` -> "toml"), or None (`<stdin>`, `plan.txt`)."""
    return FORMATS.get(os.path.splitext(source)[1].lower())


# ------------------------------------------------------------ errors with lines


class _Where:
    """Names the plan and the line of a field path in errors, where it can find the line."""

    def __init__(self, source: str, text: str, fmt: str) -> None:
        self.source, self.text, self.fmt = source, text, fmt
        self._json: dict[str, int] | None = None  # scanned when the first error needs it

    def error(self, path: str, what: str) -> PlanError:
        line = self.line(path) if path else None
        prefix = f"{self.source}:{line}" if line else self.source
        path, what = _clip(path), _clip(what)
        return PlanError(f"{prefix}: {path}: {what}" if path else f"{prefix}: {what}")

    def line(self, path: str) -> int | None:
        if self.fmt == "toml":
            return _toml_line(self.text.splitlines(), path)
        if self._json is None:
            self._json = _json_lines(self.text)
        while path:  # a field that is missing is on the line of its object
            if path in self._json:
                return self._json[path]
            shorter = re.sub(r"(\.[^.\[]*|\[\d+\])$", "", path)
            path = "" if shorter == path else shorter
        return None


def _clip(text: str, limit: int = 300) -> str:
    """Cut a value echoed in an error short: a 1 MB id would make a 1 MB error."""
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} characters)"


def _toml_line(lines: list[str], path: str) -> int | None:
    match = re.match(r"^(tasks)\[(\d+)\](?:\.(\w+))?|^(defaults)(?:\.(\w+))?|^(\w+)", path)
    if not match:
        return None
    tasks, index, task_key, defaults, default_key, top_key = match.groups()
    if tasks:
        header = _nth(lines, lambda s: s == "[[tasks]]", int(index))
        return _key_after(lines, header, task_key)
    if defaults:
        header = _nth(lines, lambda s: s == "[defaults]", 0)
        return _key_after(lines, header, default_key)
    return _key_after(lines, -1, top_key)


def _nth(lines: list[str], match: Callable[[str], bool], n: int) -> int | None:
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


_BLANK = re.compile(r"[ \t\n\r]*")


def _json_lines(text: str) -> dict[str, int]:
    """The line of each key and each array item of a JSON document, by its field path
    (`tasks[1].promt`); {} when the text does not scan (nested too deeply, say)."""
    starts = [0, *(m.end() for m in re.finditer("\n", text))]
    lines: dict[str, int] = {}
    scalar = json.JSONDecoder().raw_decode

    def skip(pos: int) -> int:
        return _BLANK.match(text, pos).end()  # type: ignore[union-attr]

    def value(pos: int, path: str) -> int:
        """Scan the value at `pos` (whose path is `path`); the position after it."""
        pos = skip(pos)
        if path:
            lines.setdefault(path, bisect.bisect_right(starts, pos))
        if text[pos] not in "{[":
            return scalar(text, pos)[1]
        close, pos, i = "}" if text[pos] == "{" else "]", pos + 1, 0
        while True:
            pos = skip(pos)
            if text[pos] == close:
                return pos + 1
            if close == "}":
                key, after = json.decoder.scanstring(text, pos + 1)  # type: ignore[attr-defined]
                item = f"{path}.{key}" if path else key
                lines[item] = bisect.bisect_right(starts, pos)
                pos = value(skip(after) + 1, item)  # past the ":"
            else:
                pos, i = value(pos, f"{path}[{i}]"), i + 1
            pos = skip(pos)
            pos += text[pos] == ","

    try:
        value(0, "")
    except (ValueError, IndexError, RecursionError):
        return {}
    return lines


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
    """Load and resolve a plan file (format by its suffix, relative paths by its directory)."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise PlanError(f"{path}: cannot read the plan: {exc.strerror or exc}") from None
    return load_plan(data, source=str(path), base_dir=p.absolute().parent)


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
        source: how to name the plan in errors: its path, or `<stdin>`.
        base_dir: what a relative `workdir` or `prompt_file` is relative to.
        fmt: "toml" or "json"; when None, what the suffix of `source` says, else sniffed from
            the text.

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
    # a TOML plan may start with "[defaults]": only "{" says JSON
    fmt = fmt or format_of(source) or ("json" if text.lstrip().startswith("{") else "toml")
    raw_obj = _parse(text, fmt, source)
    if not isinstance(raw_obj, dict):
        raise PlanError(
            f"{source}: a plan is a table/object at the top level, got {type(raw_obj).__name__}"
        )
    where = _Where(source, text, fmt)
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
        at = re.search(r"\(at line (\d+),", str(exc))  # tomllib names no line before 3.14
        raise PlanError(f"{source}{':' + at.group(1) if at else ''}: invalid TOML: {exc}") from None
    except json.JSONDecodeError as exc:
        raise PlanError(
            f"{source}:{exc.lineno}: invalid JSON: {exc.msg} (at line {exc.lineno}, "
            f"column {exc.colno}){_toml_hint(text)}"
        ) from None
    except RecursionError:
        raise PlanError(f"{source}: the plan is nested too deeply") from None
    raise PlanError(f"{source}: unknown plan format {fmt!r} (use .toml or .json)")


def _toml_hint(text: str) -> str:
    """A hint for TOML given as JSON (a plan on stdin is JSON unless told otherwise)."""
    try:
        table = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, RecursionError):
        return ""
    return "; the plan reads as TOML: say so with --format toml" if table else ""


def _resolve(raw: RawPlan, source: str, base_dir: Path, where: _Where) -> RunSpec:
    if raw.concurrency < 1:
        raise where.error("concurrency", f"must be at least 1, got {raw.concurrency}")
    workdir = _directory(base_dir, raw.workdir, "workdir", where)
    if not raw.tasks:
        raise PlanError(f"{source}: plan has no tasks (add at least one [[tasks]])")
    if len(raw.tasks) > MAX_TASKS:  # before resolving them all (seconds for 100,000)
        raise PlanError(f"{source}: the plan has more than {MAX_TASKS} tasks")
    name = raw.name or Path(source).stem.strip("<>") or "run"  # "<stdin>": "stdin"
    tasks: list[TaskSpec] = []
    first_seen: dict[str, str] = {}
    rules = TaskRules(raw, where, _PromptFiles(base_dir, where))
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


def _path(base: Path, value: str, field: str, where: _Where) -> Path:
    """The absolute path `value` names, relative to `base` (`~` expanded)."""
    try:
        return (base / Path(value).expanduser()).resolve()
    except (ValueError, OSError, RuntimeError) as exc:  # NUL byte, name too long, ~user unknown
        raise where.error(field, f"invalid path {value[:200]!r}: {exc}") from None


def _directory(base: Path, value: str, field: str, where: _Where) -> Path:
    """An existing directory named by `value`, relative to `base` (`~` expanded)."""
    path = _path(base, value, field, where)
    try:
        is_dir = path.is_dir()
    except (ValueError, OSError) as exc:
        raise where.error(field, f"invalid path {value[:200]!r}: {exc}") from None
    if not is_dir:
        raise where.error(field, f"{path} is not a directory")
    return path


class _PromptFiles:
    """The prompt files of one plan, relative to `base` (the plan's directory), each read once:
    every task of a `for_each` shares its file."""

    def __init__(self, base: Path, where: _Where) -> None:
        self.base, self.where = base, where
        self.texts: dict[Path, str] = {}

    def __call__(self, field: str, name: str) -> str:
        path = _path(self.base, name, field, self.where)
        if path not in self.texts:
            self.texts[path] = self._read(path, field, name)
        return self.texts[path]

    def _read(self, path: Path, field: str, name: str) -> str:
        error = self.where.error
        try:
            regular = stat.S_ISREG(os.stat(path).st_mode)  # reading a FIFO would block orchd
            if not regular:
                raise error(field, f"{name!r} ({path}) is not a regular file")
            with open(path, "rb") as f:
                data = f.read(MAX_PROMPT_BYTES + 1)
        except OSError as exc:
            raise error(field, f"cannot read {name!r} ({path}): {exc.strerror or exc}") from None
        if len(data) > MAX_PROMPT_BYTES:
            raise error(field, f"{name!r} is larger than {MAX_PROMPT_BYTES >> 10} KiB")
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise error(
                field, f"{name!r} is not UTF-8 text ({exc.reason} at byte {exc.start})"
            ) from None


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
    rels = [match.relative_to(workdir) for match in matches]
    return [
        {"path": r.as_posix(), "name": r.name, "stem": r.stem, "dir": r.parent.as_posix()}
        for r in rels
    ]
