"""Every `--json` output of orchctl, from a real orchd, validates against its schema in schemas/."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
import pytest

from orchctl.main import cli
from orchd import schemas
from tests.conftest import Daemon, agent, write_plan
from tests.integration.test_worktree import make_repo

jsonschema = pytest.importorskip("jsonschema", reason="pip install jsonschema (the test extra)")

# the command (as typed after `orchctl`) -> the schema its --json output follows
COMMANDS = {
    "submit": "submitted.schema.json",  # and run.schema.json with --wait
    "status": "status.schema.json",
    "runs": "runs.schema.json",
    "results": "results.schema.json",
    "wait": "run.schema.json",
    "events": "event-line.schema.json",  # one per line
    "replay": "status.schema.json",
    "audit": "audit.schema.json",
    "merge": "merge.schema.json",
    "why": "task.schema.json",
    "daemon status": "daemon-status.schema.json",
    "dashboard": "dashboard.schema.json",
}


def schema(name: str) -> Any:
    return jsonschema.Draft202012Validator(json.loads((schemas.SCHEMA_DIR / name).read_text()))


def check(name: str, document: Any) -> Any:
    errors = sorted(schema(name).iter_errors(document), key=lambda e: list(e.path))
    assert not errors, f"{name}: " + "; ".join(f"{list(e.path)}: {e.message}" for e in errors[:5])
    return document


def output(orchd: Daemon, *args: str, ok: tuple[int, ...] = (0,)) -> Any:
    result = orchd.orchctl(*args)
    assert result.returncode in ok, (
        f"orchctl {' '.join(args)} -> {result.returncode}: {result.stderr}"
    )
    return json.loads(result.stdout)


def json_commands(group: click.Group, prefix: str = "") -> set[str]:
    """Every command of orchctl that has a --json option."""
    found = set()
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            found |= json_commands(command, f"{prefix}{name} ")
        elif any("--json" in getattr(param, "opts", []) for param in command.params):
            found.add(prefix + name)
    return found


def test_every_json_command_has_a_schema() -> None:
    assert json_commands(cli) == set(COMMANDS)
    for name in set(COMMANDS.values()) | {"run.schema.json", "events.schema.json"}:
        assert name in schemas.SCHEMAS, name


def test_every_json_output_validates(orchd: Daemon, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    plan = write_plan(
        tmp_path / "plan.json",
        {
            "name": "shapes",
            "workdir": str(repo),
            "isolation": "worktree",
            "defaults": {
                "agent": "command",
                "max_retries": 1,
                "backoff": {"initial": "0.1s", "jitter": "none"},
            },
            "tasks": [
                {"id": "edit", "command": agent("edit", "notes.txt=hello"), "verify": [["true"]]},
                {"id": "flaky", "command": agent("flaky", str(tmp_path / "f"), "1")},
                {"id": "broken", "command": ["false"], "max_retries": 0},
            ],
        },
    )
    waited = check(
        "run.schema.json", output(orchd, "submit", str(plan), "--wait", "--json", ok=(1,))
    )
    run_id = waited["summary"]["run_id"]
    assert {t["id"]: t["state"] for t in waited["tasks"]} == {
        "edit": "completed",
        "flaky": "completed",
        "broken": "failed",
    }
    quick = write_plan(
        tmp_path / "quick.json",
        {
            "workdir": str(tmp_path),
            "defaults": {"agent": "command"},
            "tasks": [{"id": "a", "command": ["true"]}],
        },
    )
    assert (
        check("submitted.schema.json", output(orchd, "submit", str(quick), "--json"))["tasks"] == 1
    )

    check("status.schema.json", output(orchd, "status", "--json"))
    check("status.schema.json", output(orchd, "status", run_id, "--json"))
    check("runs.schema.json", output(orchd, "runs", "--json"))
    results = check("results.schema.json", output(orchd, "results", run_id, "--json"))
    assert results["conflicts"][0]["branches"] == ["edit", "flaky"]
    check("run.schema.json", output(orchd, "wait", run_id, "--json", ok=(1,)))
    check("task.schema.json", output(orchd, "why", run_id, "flaky", "--json"))
    check("status.schema.json", output(orchd, "replay", "--json"))
    check("status.schema.json", output(orchd, "replay", "--at", "5", "--json"))
    check("audit.schema.json", output(orchd, "audit", "--json"))
    check("daemon-status.schema.json", output(orchd, "daemon", "status", "--json"))
    check("dashboard.schema.json", output(orchd, "dashboard", "--json"))
    merged = check("merge.schema.json", output(orchd, "merge", run_id, "--verify", "--json"))
    assert [(r["merged"], r["verified"]) for r in merged["results"]] == [(["edit"], ["edit"])]

    lines = orchd.orchctl("events", "--run", run_id, "--json", check=True).stdout.splitlines()
    events = schema("events.schema.json")
    kinds = set()
    for line in lines:
        row = check("event-line.schema.json", json.loads(line))
        kinds.add(row["kind"])
        errors = list(events.iter_errors(row["event"]))
        assert not errors, (row["kind"], errors[0].message)
    assert {"RunSubmitted", "AttemptFinished", "TaskRetrying", "TaskFailed", "RunFinished"} <= kinds
