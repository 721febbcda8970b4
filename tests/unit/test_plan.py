"""Plan loading: defaults, overrides, for_each, durations, and an error that names the field for every mistake."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from orchd.errors import PlanError
from orchd.plan import load_plan, load_plan_file, parse_duration


def toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "plan.toml"
    path.write_text(text)
    return path


def error_of(tmp_path: Path, text: str) -> str:
    with pytest.raises(PlanError) as info:
        load_plan_file(toml(tmp_path, text))
    return str(info.value)


BASIC = """
name = "demo"
concurrency = 2
[defaults]
agent = "command"
max_retries = 1
timeout = "90s"
backoff = { initial = "2s", max = "1m", jitter = "none" }
env = { A = "1" }

[[tasks]]
id = "one"
command = ["echo", "one"]

[[tasks]]
id = "two"
command = ["echo", "two"]
max_retries = 5
timeout = "1h30m"
backoff = { factor = 3.0 }
"""


def test_defaults_and_overrides(tmp_path: Path) -> None:
    spec = load_plan_file(toml(tmp_path, BASIC))
    assert spec.name == "demo" and spec.concurrency == 2 and spec.workdir == str(tmp_path.resolve())
    one, two = spec.tasks
    assert (one.max_retries, one.timeout, one.env) == (1, 90.0, {"A": "1"})
    assert (one.backoff.initial, one.backoff.max, one.backoff.factor, one.backoff.jitter) == (
        2.0,
        60.0,
        2.0,
        "none",
    )
    assert (two.max_retries, two.timeout, two.backoff.factor, two.backoff.initial) == (
        5,
        5400.0,
        3.0,
        2.0,
    )
    assert one.isolation == "none" and one.cwd == spec.workdir


def test_json_equals_toml(tmp_path: Path) -> None:
    import tomllib

    from_toml = load_plan_file(toml(tmp_path, BASIC))
    (tmp_path / "plan.json").write_text(json.dumps(tomllib.loads(BASIC)))
    assert load_plan_file(tmp_path / "plan.json") == from_toml


def test_for_each_expands_placeholders(tmp_path: Path) -> None:
    (tmp_path / "src" / "pkg").mkdir(parents=True)
    for name in ("src/a.py", "src/pkg/b.py", "src/pkg/c.txt"):
        (tmp_path / name).write_text("x")
    spec = load_plan(
        json.dumps(
            {
                "defaults": {"agent": "claude"},
                "tasks": [
                    {
                        "id": "hints-{stem}",
                        "for_each": "src/**/*.py",
                        "prompt": "Add hints to {path} ({name} in {dir}). Keep {braces}.",
                    }
                ],
            }
        ),
        base_dir=tmp_path,
    )
    assert [t.id for t in spec.tasks] == ["hints-a", "hints-b"]
    assert spec.tasks[1].prompt == "Add hints to src/pkg/b.py (b.py in src/pkg). Keep {braces}."
    assert spec.tasks[0].isolation == "worktree"


@pytest.mark.parametrize(
    "text, expected",
    [
        ("90s", 90.0),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("1h30m", 5400.0),
        ("250ms", 0.25),
        ("2.5s", 2.5),
        (7, 7.0),
    ],
)
def test_durations(text: object, expected: float) -> None:
    assert parse_duration(text) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize("text", ["", "ten minutes", "5", "-1s", "1x", "s", True])
def test_bad_durations(text: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "text, needle",
    [
        (
            '[[tasks]]\nid = "a"\nagent = "command"\ncommand = ["x"]\n\n[[tasks]]\nid = "b"\npromt = "typo"\n',
            "plan.toml:8: tasks[1].promt: unknown field",
        ),
        ('nmae = "x"\n[[tasks]]\nid = "a"\nprompt = "p"\n', "plan.toml:1: nmae: unknown field"),
        (
            '[defaults]\nagent = "command"\ntimout = "1s"\n[[tasks]]\nid = "a"\ncommand = ["x"]\n',
            "plan.toml:3: defaults.timout: unknown field",
        ),
        (
            '[defaults]\nagent = "command"\ntimeout = "soon"\n[[tasks]]\nid = "a"\ncommand = ["x"]\n',
            "plan.toml:3: defaults.timeout: invalid duration",
        ),
        (
            '[[tasks]]\nid = "a"\nagent = "command"\ncommand = ["x"]\nmax_retries = "3"\n',
            "tasks[0].max_retries: expected `int`, got `str`",
        ),
        (
            '[[tasks]]\nid = "a"\nagent = "command"\ncommand = ["x"]\n[[tasks]]\nid = "a"\nagent = "command"\ncommand = ["y"]\n',
            "tasks[1].id: duplicate id 'a' (first at tasks[0])",
        ),
        ('name = "x"\n', "plan has no tasks"),
        ('[[tasks]]\nid = "Bad Id"\nprompt = "p"\n', "tasks[0].id: invalid id 'Bad Id'"),
        (
            '[[tasks]]\nid = "a"\nagent = "gpt"\nprompt = "p"\n',
            "tasks[0].agent: unknown agent 'gpt'",
        ),
        (
            '[[tasks]]\nid = "a"\nagent = "claude"\n',
            "tasks[0].prompt: agent 'claude' needs a prompt",
        ),
        (
            '[[tasks]]\nid = "a"\nagent = "command"\n',
            'tasks[0].command: agent "command" needs a non-empty command',
        ),
        (
            '[[tasks]]\nid = "a"\nagent = "claude"\nprompt = "p"\ncommand = ["x"]\n',
            'only agent "command" takes a command',
        ),
        (
            '[[tasks]]\nid = "a-{stem}"\nfor_each = "*.nothing"\nprompt = "p"\n',
            "tasks[0].for_each: '*.nothing' matches no file",
        ),
        (
            '[[tasks]]\nid = "a-{stem}"\nprompt = "p"\n',
            "uses a placeholder but the task has no for_each",
        ),
        (
            'concurrency = 0\n[[tasks]]\nid = "a"\nprompt = "p"\n',
            "plan.toml:1: concurrency: must be at least 1",
        ),
        ('workdir = "nowhere"\n[[tasks]]\nid = "a"\nprompt = "p"\n', "workdir: "),
        (
            '[defaults]\nbackoff = { factor = 0.5 }\n[[tasks]]\nid = "a"\nprompt = "p"\n',
            "defaults.backoff.factor: must be at least 1",
        ),
        (
            '[defaults]\nbackoff = { jitter = "some" }\n[[tasks]]\nid = "a"\nprompt = "p"\n',
            "defaults.backoff.jitter",
        ),
        ('[[tasks]\nid = "a"\n', "invalid TOML"),
    ],
)
def test_errors_name_the_field(tmp_path: Path, text: str, needle: str) -> None:
    message = error_of(tmp_path, text)
    assert needle in message, message
    assert message.startswith(str(tmp_path / "plan.toml"))


def test_json_errors_and_non_objects(tmp_path: Path) -> None:
    for text, needle in [
        ('{"tasks": [', "invalid JSON"),
        ("[1, 2]", "a plan is a table/object"),
        (b"\xff\xfe", "not valid UTF-8"),
    ]:
        with pytest.raises(PlanError, match=needle.replace("(", r"\(")):
            load_plan(text, fmt="json" if isinstance(text, str) else None, base_dir=tmp_path)


def test_limits(tmp_path: Path) -> None:
    with pytest.raises(PlanError, match="larger than"):
        load_plan(
            json.dumps({"tasks": [{"id": "a", "prompt": "x" * (2 << 20)}]}), base_dir=tmp_path
        )


def test_fuzzed_plans_raise_only_plan_errors(tmp_path: Path) -> None:
    rng = random.Random(1234)
    seeds = [
        BASIC,
        json.dumps({"defaults": {"agent": "command"}, "tasks": [{"id": "a", "command": ["x"]}]}),
    ]
    alphabet = "[]{}\"=\n,.:#-_ abcdefghijklmnopqrstuvwxyz0123456789\\'\x00\xff"
    documents = []
    for _ in range(400):
        doc = list(rng.choice(seeds))
        for _ in range(rng.randint(1, 8)):
            i = rng.randrange(len(doc))
            op = rng.random()
            if op < 0.4:
                doc[i] = rng.choice(alphabet)
            elif op < 0.7:
                del doc[i]
            else:
                doc.insert(i, rng.choice(alphabet))
        documents.append("".join(doc))
    documents += [
        "[" * 100_000,
        "{" * 100_000,
        '{"tasks": ' + "[" * 5000 + "]" * 5000 + "}",
        'name = "' + "x" * 1_000_000 + '"\n',
    ]
    for text in documents:
        try:
            load_plan(text, base_dir=tmp_path)
        except PlanError:
            pass


def test_secrets_in_plan_env_are_refused_without_echoing_them(tmp_path: Path) -> None:
    for name in ("OPENAI_API_KEY", "GH_TOKEN", "db_password", "MY_SECRET_THING"):
        message = error_of(
            tmp_path,
            f'[defaults]\nagent = "command"\nenv = {{ {name} = "hunter2" }}\n'
            '[[tasks]]\nid = "a"\ncommand = ["x"]\n',
        )
        assert f"defaults.env.{name}: looks like a secret" in message
        assert "hunter2" not in message
    assert (
        load_plan_file(
            toml(
                tmp_path,
                '[[tasks]]\nid = "a"\nagent = "command"\ncommand = ["x"]\n'
                'env = { KEYBOARD = "us", TOKENIZER = "x" }\n',
            )
        )
        .tasks[0]
        .env
    )


def test_example_plans_load(tmp_path: Path) -> None:
    """Every plan in examples/ is valid (the multi-repository one names repositories that are not here)."""
    from orchd.plan import load_plan_file

    examples = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.toml"))
    assert len(examples) >= 5
    for path in examples:
        if path.name == "multi-repo.toml":
            with pytest.raises(PlanError, match=r"workdir: .* is not a directory"):
                load_plan_file(path)
            continue
        spec = load_plan_file(path)
        assert spec.tasks and all(t.prompt or t.command for t in spec.tasks), path.name


def test_a_prompt_in_defaults_is_every_task_s_prompt(tmp_path: Path) -> None:
    from orchd.plan import load_plan

    (tmp_path / "a").mkdir()
    spec = load_plan(
        '[defaults]\nagent = "claude"\nprompt = "Do X in {name}."\n[[tasks]]\nid = "a"\nworkdir = "a"\n'
        '[[tasks]]\nid = "b"\nprompt = "Do Y."\n',
        base_dir=tmp_path,
    )
    assert [(t.prompt, t.cwd) for t in spec.tasks] == [
        ("Do X in {name}.", str(tmp_path / "a")),
        ("Do Y.", str(tmp_path)),
    ]


def test_verify_from_the_plan_the_defaults_or_the_task(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("")
    spec = load_plan_file(
        toml(
            tmp_path,
            """
verify = [["pytest", "-q"]]
verify_timeout = "2m"
[defaults]
agent = "command"
[[tasks]]
id = "plan"
command = ["true"]
[[tasks]]
id = "own-{stem}"
for_each = "*.py"
command = ["true"]
verify = [["ruff", "check", "{path}"], ["mypy", "{path}"]]
verify_timeout = "30s"
[[tasks]]
id = "none"
command = ["true"]
verify = []
""",
        )
    )
    tasks = {t.id: t for t in spec.tasks}
    assert (tasks["plan"].verify, tasks["plan"].verify_timeout) == ([["pytest", "-q"]], 120.0)
    assert tasks["own-a"].verify == [["ruff", "check", "a.py"], ["mypy", "a.py"]]
    assert tasks["own-a"].verify_timeout == 30.0 and tasks["none"].verify == []
    default = load_plan('[[tasks]]\nid = "t"\nagent = "command"\ncommand = ["x"]\n')
    assert default.tasks[0].verify == [] and default.tasks[0].verify_timeout == 600.0


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        (
            'verify = [[]]\n[[tasks]]\nid = "t"\nagent = "command"\ncommand = ["x"]\n',
            ":1: verify[0]: is empty",
        ),
        (
            'verify_timeout = "soon"\n[[tasks]]\nid = "t"\nagent = "command"\ncommand = ["x"]\n',
            ":1: verify_timeout: invalid duration",
        ),
        (
            '[defaults]\nverify = [["a"], []]\n[[tasks]]\nid = "t"\nagent = "command"\ncommand = ["x"]\n',
            ":2: defaults.verify[1]: is empty",
        ),
        (
            '[[tasks]]\nid = "t"\nagent = "command"\ncommand = ["x"]\nverify = "pytest"\n',
            ":5: tasks[0].verify: expected `array`",
        ),
    ],
)
def test_verify_mistakes_name_the_field(tmp_path: Path, text: str, needle: str) -> None:
    assert needle in error_of(tmp_path, text)
