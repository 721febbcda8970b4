"""Where a plan comes from: its format (said once, by its suffix or by the user), stdin, and the
lines that errors name in JSON as in TOML."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from orchd.errors import PlanError
from orchd.plan import MAX_PROMPT_BYTES, STDIN, _json_lines, format_of, load_plan, load_plan_file

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


PROMPT = 'Review {path} ({stem}, {name} in {dir}); keep {braces} and {"json": 1} as written.\n'


def test_prompt_file_is_filled_like_prompt_and_allowed_in_defaults(tmp_path: Path) -> None:
    (tmp_path / "prompts").mkdir()
    (tmp_path / "prompts" / "review.md").write_text(PROMPT)
    (tmp_path / "src").mkdir()
    for name in ("a.py", "b.py"):
        (tmp_path / "src" / name).write_text("")
    plan = tmp_path / "plan.toml"
    plan.write_text(
        '[defaults]\nagent = "claude"\nprompt_file = "prompts/review.md"\n'
        '[[tasks]]\nid = "r-{stem}"\nfor_each = "src/*.py"\n'
        '[[tasks]]\nid = "own"\nprompt = "Just this."\n'
    )
    spec = load_plan_file(plan)
    assert [t.prompt for t in spec.tasks] == [
        'Review src/a.py (a, a.py in src); keep {braces} and {"json": 1} as written.\n',
        'Review src/b.py (b, b.py in src); keep {braces} and {"json": 1} as written.\n',
        "Just this.",  # a task's own prompt wins over the defaults' prompt_file
    ]


def test_a_task_s_prompt_file_wins_over_the_defaults_prompt(tmp_path: Path) -> None:
    (tmp_path / "ask.md").write_text("Ask {name}.")
    (tmp_path / "x.txt").write_text("")
    text = '[defaults]\nprompt = "x"\n[[tasks]]\nid = "t-{stem}"\nfor_each = "*.txt"\nprompt_file = "ask.md"\n'
    assert load_plan(text, base_dir=tmp_path, fmt="toml").tasks[0].prompt == "Ask x.txt."


def test_prompt_file_is_relative_to_the_plan_not_to_where_orchd_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "plans").mkdir()
    (tmp_path / "plans" / "ask.md").write_text("Do it.")
    plan = tmp_path / "plans" / "p.json"
    plan.write_text(
        json.dumps(
            {"workdir": "..", "tasks": [{"id": "a", "agent": "codex", "prompt_file": "ask.md"}]}
        )
    )
    monkeypatch.chdir("/")
    assert load_plan_file(plan).tasks[0].prompt == "Do it."


@pytest.mark.parametrize(
    ("body", "make", "needle"),
    [
        ('prompt_file = "nope.md"', None, "tasks[0].prompt_file: cannot read 'nope.md'"),
        ('prompt_file = "dir"', "dir", "tasks[0].prompt_file: 'dir' ("),
        ('prompt_file = "empty.md"', "empty.md", "tasks[0].prompt_file: 'empty.md' is empty"),
        ('prompt_file = "bin.md"', "bin.md", "tasks[0].prompt_file: 'bin.md' is not UTF-8 text"),
        ('prompt_file = "big.md"', "big.md", "tasks[0].prompt_file: 'big.md' is larger than"),
        ('prompt_file = "fifo"', "fifo", "tasks[0].prompt_file: 'fifo' ("),
        ('prompt_file = "p.md/x"', "p.md", "cannot read 'p.md/x' ("),  # not a directory
        ('prompt = "x"\nprompt_file = "p.md"', "p.md", "prompt or prompt_file, not both"),
        ("", None, "tasks[0].prompt: agent 'claude' needs a prompt (prompt or prompt_file)"),
    ],
)
def test_prompt_file_mistakes_name_the_field_and_line(
    tmp_path: Path, body: str, make: str | None, needle: str
) -> None:
    if make == "dir":
        (tmp_path / "dir").mkdir()
    elif make == "fifo":
        os.mkfifo(tmp_path / "fifo")  # reading it would block orchd: refused unread
    elif make is not None:
        content = {"empty.md": b"  \n", "bin.md": b"\xff\xfe", "big.md": b"x" * (MAX_PROMPT_BYTES + 1)}  # fmt: skip
        (tmp_path / make).write_bytes(content.get(make, b"Ask."))
    plan = tmp_path / "plan.toml"
    plan.write_text(f'name = "p"\n\n[[tasks]]\nid = "a"\n{body}\n')
    with pytest.raises(PlanError) as info:
        load_plan_file(plan)
    message = str(info.value)
    assert needle in message, message
    assert make not in ("dir", "fifo") or "is not a regular file" in message
    line = 6 if "not both" in message else 5 if body else 3  # the field's, else its task's header
    assert message.startswith(f"{plan}:{line}: "), message


def test_both_prompts_in_defaults_are_refused_too(tmp_path: Path) -> None:
    (tmp_path / "p.md").write_text("x")
    text = '[defaults]\nprompt = "x"\nprompt_file = "p.md"\n[[tasks]]\nid = "a"\n'
    message = error(text, tmp_path, source="plan.toml")
    assert message == "plan.toml:3: defaults.prompt_file: set prompt or prompt_file, not both"


def test_a_missing_prompt_file_in_a_json_plan_on_stdin_names_stdin_and_its_line(
    tmp_path: Path,
) -> None:
    plan = {"tasks": [{"id": "a", "agent": "codex", "prompt_file": "gone.md"}]}
    message = error(json.dumps(plan, indent=1), tmp_path, source=STDIN, fmt="json")
    assert message.startswith("<stdin>:6: tasks[0].prompt_file: cannot read 'gone.md'"), message
    assert str(tmp_path / "gone.md") in message
