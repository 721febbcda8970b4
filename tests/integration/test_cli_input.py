"""What `orchctl submit` reads: a plan piped on stdin (JSON, or TOML with --format), a file whose
suffix says nothing, and prompts kept in files — through the real CLI and a real orchd."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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
