"""What `orchctl submit` reads: a plan piped on stdin (JSON, or TOML with --format), a file whose
suffix says nothing, and prompts kept in files — through the real CLI and a real orchd."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import Daemon


def submit(
    orchd: Daemon, *args: str, cwd: Path, stdin: str | None = None
) -> subprocess.CompletedProcess:
    """`orchctl submit ARGS` run from `cwd`, with `stdin` piped in."""
    return subprocess.run(
        [sys.executable, "-m", "orchctl.main", "submit", *args],
        env=orchd.env,
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


def runs(orchd: Daemon) -> list[dict]:
    return json.loads(orchd.orchctl("runs", "--json", check=True).stdout)["runs"]


def test_a_plan_piped_on_stdin_runs_in_a_workdir_relative_to_the_current_directory(
    orchd: Daemon, tmp_path: Path
) -> None:
    (tmp_path / "repo").mkdir()
    plan = {
        "workdir": "repo",
        "defaults": {"agent": "command"},
        "tasks": [
            {"id": "where", "command": [sys.executable, "-c", "import os; print(os.getcwd())"]}
        ],
    }
    result = submit(orchd, "-", "--wait", "--json", cwd=tmp_path, stdin=json.dumps(plan))
    assert result.returncode == 0, result
    view = json.loads(result.stdout)
    assert view["summary"]["name"] == "stdin"
    assert view["summary"]["workdir"] == str(tmp_path / "repo")
    assert view["tasks"][0]["result"] == str(tmp_path / "repo")


def test_toml_on_stdin_needs_format_toml(orchd: Daemon, tmp_path: Path) -> None:
    toml = (
        'name = "piped"\n[defaults]\nagent = "command"\n[[tasks]]\nid = "a"\ncommand = ["true"]\n'
    )
    refused = submit(orchd, "-", cwd=tmp_path, stdin=toml)
    assert refused.returncode == 2, refused
    assert refused.stderr.startswith("orchctl: <stdin>:1: invalid JSON"), refused.stderr
    assert "say so with --format toml" in refused.stderr
    assert runs(orchd) == []
    result = submit(orchd, "-", "--format", "toml", "--wait", cwd=tmp_path, stdin=toml)
    assert result.returncode == 0, result
    assert [r["name"] for r in runs(orchd)] == ["piped"]


def test_a_mistake_in_a_plan_on_stdin_names_stdin_and_its_line(
    orchd: Daemon, tmp_path: Path
) -> None:
    plan = {"defaults": {"agent": "command"}, "tasks": [{"id": "a", "command": ["true"]}, {"id": "b", "promt": "x"}]}  # fmt: skip
    text = json.dumps(plan, indent=2)
    line = 1 + text.splitlines().index('      "promt": "x"')
    result = submit(orchd, "-", cwd=tmp_path, stdin=text)
    assert result.returncode == 2, result
    assert result.stderr == f"orchctl: <stdin>:{line}: tasks[1].promt: unknown field\n"
    toml = '[[tasks]]\nid = "a"\nagent = "command"\n\ncommand = "true"\n'
    result = submit(orchd, "-", "--format", "toml", cwd=tmp_path, stdin=toml)
    assert result.returncode == 2, result
    assert result.stderr.startswith("orchctl: <stdin>:5: tasks[0].command: expected `array`")
    assert runs(orchd) == []


def test_format_names_the_format_of_a_file_whose_suffix_says_nothing_or_says_wrong(
    orchd: Daemon, tmp_path: Path
) -> None:
    toml = '[defaults]\nagent = "command"\n[[tasks]]\nid = "a"\ncommand = ["true"]\n'
    (tmp_path / "plan.in").write_text(toml)
    (tmp_path / "toml.json").write_text(toml)
    wrong = submit(orchd, "plan.in", "--format", "json", cwd=tmp_path)
    assert wrong.returncode == 2 and "plan.in:1: invalid JSON" in wrong.stderr, wrong
    for name in ("plan.in", "toml.json"):
        result = submit(orchd, name, "--format", "toml", "--wait", cwd=tmp_path)
        assert result.returncode == 0, (name, result)
    assert submit(orchd, "toml.json", cwd=tmp_path).returncode == 2  # the suffix, unless told
    assert [r["name"] for r in runs(orchd)] == ["plan", "toml"]


# A stand-in for Claude Code on orchd's PATH: its answer is the prompt it was given.
FAKE_CLAUDE = """#!{python}
import json, sys
prompt = sys.argv[sys.argv.index("--") + 1]
print(json.dumps({{"type": "result", "subtype": "success", "is_error": False,
                  "result": prompt, "session_id": "s-1"}}))
"""


@pytest.fixture
def claude_on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    fake = bindir / "claude"
    fake.write_text(FAKE_CLAUDE.format(python=sys.executable))
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")


def test_prompt_files_fill_placeholders_and_the_log_keeps_what_each_agent_was_asked(
    claude_on_path: None, make_daemon: Callable[..., Daemon], tmp_path: Path
) -> None:
    orchd = make_daemon()
    (tmp_path / "plans" / "prompts").mkdir(parents=True)
    (tmp_path / "plans" / "prompts" / "review.md").write_text("Review {path} ({stem}).\nBe brief.")
    (tmp_path / "src").mkdir()
    for name in ("a.py", "b.py"):
        (tmp_path / "src" / name).write_text("")
    plan = tmp_path / "plans" / "review.toml"
    plan.write_text(
        'workdir = ".."\nisolation = "none"\n[defaults]\nagent = "claude"\n'
        'prompt_file = "prompts/review.md"\n[[tasks]]\nid = "r-{stem}"\nfor_each = "src/*.py"\n'
    )
    result = orchd.orchctl("submit", str(plan), "--wait", "--json")
    assert result.returncode == 0, result
    asked = {
        "r-a": "Review src/a.py (a).\nBe brief.",
        "r-b": "Review src/b.py (b).\nBe brief.",
    }
    assert {t["id"]: t["result"] for t in json.loads(result.stdout)["tasks"]} == asked
    # the log keeps the text, not the file's name: a replay shows what each agent was asked
    (tmp_path / "plans" / "prompts" / "review.md").write_text("Something else.")
    events = orchd.orchctl("events", "--json", check=True).stdout.splitlines()
    submitted = next(json.loads(e) for e in events if '"RunSubmitted"' in e)
    assert {t["id"]: t["prompt"] for t in submitted["event"]["spec"]["tasks"]} == asked


def test_a_prompt_file_that_cannot_be_read_is_refused_with_its_field_and_line(
    orchd: Daemon, tmp_path: Path
) -> None:
    plan = tmp_path / "plan.toml"
    plan.write_text('name = "x"\n\n[[tasks]]\nid = "a"\nagent = "codex"\nprompt_file = "gone.md"\n')
    result = orchd.orchctl("submit", str(plan))
    assert result.returncode == 2, result
    assert result.stderr.startswith(
        f"orchctl: {plan}:6: tasks[0].prompt_file: cannot read 'gone.md' ({tmp_path / 'gone.md'}): "
    ), result.stderr
    # on stdin, a prompt file is relative to the current directory
    (tmp_path / "here").mkdir()
    text = json.dumps({"tasks": [{"id": "a", "agent": "codex", "prompt_file": "ask.md"}]}, indent=1)
    result = submit(orchd, "-", cwd=tmp_path / "here", stdin=text)
    assert result.returncode == 2, result
    assert result.stderr.startswith(
        f"orchctl: <stdin>:6: tasks[0].prompt_file: cannot read 'ask.md' ({tmp_path / 'here' / 'ask.md'})"
    ), result.stderr
    assert runs(orchd) == []
