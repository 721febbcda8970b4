"""Where a plan comes from: its format (said once, by its suffix or by the user), stdin, and the
lines that errors name in JSON as in TOML."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchd.errors import PlanError
from orchd.plan import STDIN, _json_lines, format_of, load_plan, load_plan_file

TOML = '[defaults]\nagent = "command"\n[[tasks]]\nid = "a"\ncommand = ["true"]\n'


def error(text: str, tmp_path: Path, **kwargs: object) -> str:
    with pytest.raises(PlanError) as info:
        load_plan(text, base_dir=tmp_path, **kwargs)  # type: ignore[arg-type]
    return str(info.value)


def test_the_format_is_what_the_suffix_says_else_guessed(tmp_path: Path) -> None:
    assert [format_of(n) for n in ("a.toml", "b.JSON", "plan.txt", STDIN, "plan")] == [
        "toml",
        "json",
        None,
        None,
        None,
    ]
    (tmp_path / "plan.txt").write_text(TOML)  # no suffix to go by: guessed from the text
    assert load_plan_file(tmp_path / "plan.txt").tasks[0].id == "a"
    # the suffix wins over guessing, and a format the user names wins over the suffix
    assert "invalid JSON" in error(TOML, tmp_path, source="p.json")
    assert load_plan(TOML, source="p.json", fmt="toml", base_dir=tmp_path).tasks[0].id == "a"


def test_a_plan_on_stdin_is_named_so_and_toml_given_as_json_gets_a_hint(tmp_path: Path) -> None:
    plan = {"defaults": {"agent": "command"}, "tasks": [{"id": "a", "command": ["true"]}]}
    spec = load_plan(json.dumps(plan), source=STDIN, fmt="json", base_dir=tmp_path)
    assert spec.name == "stdin" and spec.workdir == str(tmp_path.resolve())
    message = error(TOML, tmp_path, source=STDIN, fmt="json")
    assert message.startswith("<stdin>:1: invalid JSON") and "--format toml" in message
    assert "--format" not in error("{", tmp_path, source=STDIN, fmt="json")
    assert "--format" not in error("", tmp_path, source=STDIN, fmt="json")


def test_invalid_toml_names_its_line(tmp_path: Path) -> None:
    message = error('name = "x"\n\n[[tasks]\nid = "a"\n', tmp_path, source=STDIN, fmt="toml")
    assert message.startswith("<stdin>:3: invalid TOML"), message


def test_errors_in_json_name_the_line(tmp_path: Path) -> None:
    text = json.dumps(
        {
            "defaults": {"agent": "command", "timeout": "soon"},
            "tasks": [{"id": "a", "command": ["true"]}, {"id": "b", "promt": "x"}],
        },
        indent=2,
    )
    lines = text.splitlines()
    message = error(text, tmp_path, source=STDIN, fmt="json")
    at = 1 + next(i for i, line in enumerate(lines) if '"promt"' in line)
    assert message == f"<stdin>:{at}: tasks[1].promt: unknown field"
    text = text.replace('"promt": "x"', '"command": ["x"]')
    at = 1 + next(i for i, line in enumerate(lines) if '"timeout"' in line)
    assert error(text, tmp_path, source=STDIN, fmt="json").startswith(
        f"<stdin>:{at}: defaults.timeout: invalid duration"
    )
    # a field that is missing is on the line of its object
    message = error('{"tasks": [\n {"agent": "command"}]}', tmp_path, fmt="json")
    assert message == "<plan>:2: tasks[0].id: required field is missing"


def test_json_lines_of_keys_items_and_odd_documents() -> None:
    text = '{"a": 1,\n "b": [\n  {"c": "x\\ny"},\n  [true, null]\n ],\n "d": {}}'
    assert _json_lines(text) == {"a": 1, "b": 2, "b[0]": 3, "b[0].c": 3, "b[1]": 4, "b[1][0]": 4,
                                 "b[1][1]": 4, "d": 6}  # fmt: skip
    assert _json_lines("[" * 100_000 + "]" * 100_000) == {}  # too deep to scan: no line, no crash
    assert _json_lines("{") == {}
