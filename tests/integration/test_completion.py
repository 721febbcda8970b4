"""Shell completion: run and task ids come from a real orchd; no daemon means no candidates, never an error."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import Daemon, write_plan


def complete(shell: str, words: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    """Ask orchctl for completions the way the shell scripts click generates do."""
    cword = str(len(words.split()) - (0 if words.endswith(" ") else 1))
    if shell == "fish":  # fish passes the word being completed, not its index
        cword = "" if words.endswith(" ") else words.split()[-1]
    return subprocess.run(
        [sys.executable, "-m", "orchctl.main"],
        capture_output=True,
        text=True,
        timeout=30,
        env={
            **env,
            "_ORCHCTL_COMPLETE": f"{shell}_complete",
            "COMP_WORDS": words,
            "COMP_CWORD": cword,
        },
    )


def values(result: subprocess.CompletedProcess) -> list[str]:
    assert result.returncode == 0, result.stderr
    return [line.split(",", 1)[1] for line in result.stdout.splitlines() if line]


@pytest.fixture
def run_id(orchd: Daemon, tmp_path: Path) -> str:
    plan = write_plan(
        tmp_path / "plan.json",
        {
            "name": "completed",
            "workdir": str(tmp_path),
            "defaults": {"agent": "command"},
            "tasks": [
                {"id": "alpha", "command": ["true"]},
                {"id": "beta", "command": ["true"]},
                {"id": "alps", "command": ["true"]},
            ],
        },
    )
    return json.loads(orchd.orchctl("submit", str(plan), "--wait", "--json").stdout)["summary"][
        "run_id"
    ]


def test_run_and_task_ids_complete_from_the_daemon(orchd: Daemon, run_id: str) -> None:
    assert values(complete("bash", "orchctl status ", orchd.env)) == [run_id, "last"]
    assert values(complete("bash", f"orchctl watch {run_id[:4]}", orchd.env)) == [run_id]
    assert values(complete("bash", f"orchctl logs {run_id} ", orchd.env)) == [
        "alpha",
        "beta",
        "alps",
    ]
    assert values(complete("bash", f"orchctl why {run_id} al", orchd.env)) == ["alpha", "alps"]
    assert values(complete("bash", f"orchctl events --run {run_id} --task b", orchd.env)) == [
        "beta"
    ]
    assert (
        values(complete("bash", "orchctl logs nope ", orchd.env)) == []
    )  # an unknown run: nothing
    zsh = complete("zsh", f"orchctl results {run_id[:3]}", orchd.env)
    assert zsh.stdout.splitlines()[:3] == ["plain", run_id, "completed: completed, 3 tasks"]
    fish = complete("fish", f"orchctl cancel {run_id} a", orchd.env)
    assert fish.stdout.splitlines() == ["plain,alpha\tcompleted", "plain,alps\tcompleted"]


def test_commands_and_options_complete_without_a_daemon(orch_home: Path) -> None:
    env = {**os.environ}
    assert "submit" in values(complete("bash", "orchctl su", env))
    assert values(complete("bash", "orchctl logs last --r", env)) == ["--raw"]
    result = complete("bash", "orchctl status ", env)
    assert values(result) == [] and result.stderr == ""
    assert not (orch_home / "run" / "orchd.sock").exists()  # completion never starts orchd


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_prints_the_script(shell: str, orch_home: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "orchctl.main", "completion", shell],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert "_ORCHCTL_COMPLETE" in result.stdout and f"{shell}_complete" in result.stdout


def test_bash_completes_through_the_script(orchd: Daemon, run_id: str) -> None:
    bindir = Path(sys.executable).parent
    if shutil.which("orchctl", path=str(bindir)) is None:
        pytest.skip(f"no orchctl script beside {sys.executable} (pip install -e .)")
    script = subprocess.run(
        [sys.executable, "-m", "orchctl.main", "completion", "bash"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    probe = (
        f"{script}\nCOMP_WORDS=(orchctl logs {run_id} b); COMP_CWORD=3; _orchctl_completion orchctl\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    result = subprocess.run(
        ["bash", "-c", probe],
        capture_output=True,
        text=True,
        timeout=30,
        env={**orchd.env, "PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}"},
    )
    assert result.stdout.split() == ["beta"], result.stderr
