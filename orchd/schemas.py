"""JSON Schemas of what users write and what `--json` prints, generated from the msgspec types.

`python -m orchd.schemas` rewrites `schemas/`; a test fails when a file there is stale.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "schemas"


def _plan() -> Any:
    from orchd.spec import RawPlan

    return RawPlan


def _status() -> Any:
    from orchd.protocol import StatusReply

    return StatusReply


def _runs() -> Any:
    from orchd.protocol import RunsReply

    return RunsReply


def _protocol() -> Any:
    from orchd.protocol import Request, Response

    return (Request, Response)


def _events() -> Any:
    from orchd.events import Event

    return Event


def _run() -> Any:
    from orchd.views import RunView

    return RunView


def _submitted() -> Any:
    from orchd.protocol import SubmittedRun

    return SubmittedRun


def _event_line() -> dict[str, Any]:
    from orchd.protocol import EventLine

    schema = msgspec.json.schema(EventLine)
    # the payload is one of the events (events.schema.json) or a kind a newer orch wrote: any object
    schema["$defs"]["EventLine"]["properties"]["event"] = {
        "type": "object",
        "description": "the event's payload; known kinds are described in events.schema.json",
    }
    return schema


def _task() -> Any:
    from orchd.protocol import TaskReply

    return TaskReply


def _audit() -> Any:
    from orchd.protocol import AuditReply

    return AuditReply


def _results() -> Any:
    from orchd.reports import RunResults

    return RunResults


def _merge() -> Any:
    from orchd.protocol import MergeReply

    return MergeReply


def _dashboard() -> Any:
    from orchd.protocol import DashboardUrl

    return DashboardUrl


def _notification() -> Any:
    from orchd.notify import Notification

    return Notification


def _daemon() -> Any:
    from orchd.protocol import Pong

    return Pong


SCHEMAS: dict[str, Callable[[], Any]] = {
    "plan.schema.json": _plan,  # what users write
    "status.schema.json": _status,  # `status --json`, `replay --json`
    "run.schema.json": _run,  # `submit --wait --json`, `wait --json`, `watch`'s run (one run of status)
    "results.schema.json": _results,  # `results --json`: a run, and the conflicts predicted
    "runs.schema.json": _runs,  # `runs --json`
    "submitted.schema.json": _submitted,  # `submit --json` without --wait
    "event-line.schema.json": _event_line,  # each line of `events --json`
    "task.schema.json": _task,  # `why --json`
    "audit.schema.json": _audit,  # `audit --json`
    "merge.schema.json": _merge,  # `merge --json`
    "daemon-status.schema.json": _daemon,  # `daemon status --json`
    "dashboard.schema.json": _dashboard,  # `dashboard --json`
    "notification.schema.json": _notification,  # what a [notify] command reads on its stdin
    "protocol.schema.json": _protocol,  # every request and response on the socket
    "events.schema.json": _events,  # the payload of every event in the log
}


def _schema(types: Any) -> dict[str, Any]:
    if isinstance(types, dict):  # already a schema
        return types
    if not isinstance(types, tuple):
        return msgspec.json.schema(types)
    # unions that cannot be one type (different tag fields): any of them, shared definitions
    parts, defs = msgspec.json.schema_components(types)
    return {"$defs": defs, "anyOf": list(parts)}


def _normalised(node: Any) -> Any:
    """Every description dedented as `inspect.cleandoc` does it.

    msgspec copies docstrings into descriptions, and its versions differ in whether they dedent
    them (0.18 keeps the indentation of a docstring's later lines, 0.23 removes it); cleandoc is
    idempotent. They also order the members of an `anyOf` differently, so those are sorted. The
    files are then the same whichever version wrote them.
    """
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for key, value in node.items():
            if key == "description" and isinstance(value, str):
                out[key] = inspect.cleandoc(value)
            elif key in ("anyOf", "oneOf") and isinstance(value, list):
                members = [_normalised(member) for member in value]
                out[key] = sorted(members, key=lambda m: json.dumps(m, sort_keys=True))
            else:
                out[key] = _normalised(value)
        return out
    if isinstance(node, list):
        return [_normalised(value) for value in node]
    return node


def generate() -> dict[str, str]:
    """File name -> schema text, for every schema."""
    return {
        name: json.dumps(_normalised(_schema(make())), indent=2, sort_keys=True) + "\n"
        for name, make in SCHEMAS.items()
    }


def main() -> None:
    SCHEMA_DIR.mkdir(exist_ok=True)
    for name, text in generate().items():
        (SCHEMA_DIR / name).write_text(text)
        print(f"wrote schemas/{name}")


if __name__ == "__main__":
    main()
