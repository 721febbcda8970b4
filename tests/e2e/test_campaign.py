"""A campaign on a real third-party project, as a new user would run one (issue 19, part 5).

The project is idna, from its PyPI sdist (pure Python, 32 tests in well under a second). The real
Claude Code CLI, against the stub Anthropic API, edits one module per task in its own worktree;
the project's own test suite is every task's `verify`; the branches are merged with `merge
--verify`, all in a HOME with no git configuration. Afterwards the project's tests pass on main.
A second case breaks the project first: the check fails, the next attempt is told why (the stub
sees the failing test's output in its prompt), and then passes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Daemon, no_git_identity, write_plan
from tests.e2e import clis
from tests.e2e.stubs.anthropic import AnthropicStub
from tests.e2e.stubs.base import ReadFile, Reply, WriteFile
from tests.integration.test_worktree import git

pytestmark = pytest.mark.timeout(400)

PROJECT, VERSION = "idna", "3.10"
MODULES = ["__init__.py", "codec.py", "compat.py", "core.py", "intranges.py", "package_data.py"]
TESTS = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"]
HEADER = "# Reviewed in an orch campaign.\n"
BROKEN = "raise RuntimeError('orch-e2e: the agent broke core.py')\n"


@pytest.fixture(scope="session")
def sdist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project's sdist, downloaded once per session into the tests' tmp dir."""
    cache = tmp_path_factory.mktemp("sdist")
    done = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:"]
        + [f"{PROJECT}=={VERSION}", "--dest", str(cache), "--quiet"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    found = sorted(cache.glob(f"{PROJECT}-{VERSION}.tar.gz"))
    if done.returncode != 0 or not found:
        why = f"cannot download the {PROJECT} {VERSION} sdist from PyPI: {done.stderr[-500:]}"
        if os.environ.get("CI") == "true":
            pytest.fail(why)
        pytest.skip(why)
    return found[0]


@pytest.fixture
def campaign(
    sdist: Path,
    tmp_path: Path,
    make_daemon: Callable[..., Daemon],
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[tuple[AnthropicStub, Daemon, Path]]:
    """The unpacked project as a repository, the stub, and orchd pointed at both; no git identity."""
    cli = clis.require_cli("claude")
    no_git_identity(tmp_path, monkeypatch)
    with tarfile.open(sdist) as archive:
        archive.extractall(tmp_path / "unpacked", filter="data")
    repo = (tmp_path / "unpacked" / f"{PROJECT}-{VERSION}").rename(tmp_path / "project")
    git(repo, "init", "--quiet", "--initial-branch", "main")
    git(repo, "add", ".")
    git(repo, "-c", "user.name=Dev", "-c", "user.email=dev@example.com", "commit", "-qm", VERSION)
    with AnthropicStub() as stub:
        for name, value in clis.claude_env(stub, tmp_path / "home").items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("PATH", clis.path_with(cli))
        yield stub, make_daemon(max_sessions=8), repo


def submit(daemon: Daemon, repo: Path, tasks: list[dict[str, Any]], **defaults: Any) -> str:
    plan = write_plan(
        repo.parent / "plan.json",
        {
            "name": "campaign",
            "workdir": str(repo),
            "concurrency": 3,
            "verify": [TESTS],
            "defaults": {
                "agent": "claude",
                "max_retries": 1,
                "timeout": "120s",
                "backoff": {"initial": "0.1s", "factor": 1.0},
                **defaults,
            },
            "tasks": tasks,
        },
    )
    done = daemon.orchctl("submit", str(plan), "--wait", "--json", timeout=360)
    assert done.returncode in (0, 1), f"{done.stderr}\n{daemon.log()}"
    return str(json.loads(done.stdout)["summary"]["run_id"])


def project_tests(repo: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(TESTS, cwd=repo, capture_output=True, text=True, timeout=120)


def test_a_campaign_on_a_real_project_merges_with_verify(
    campaign: tuple[AnthropicStub, Daemon, Path],
) -> None:
    stub, daemon, repo = campaign
    for module in MODULES:
        path = f"{PROJECT}/{module}"
        original = (repo / path).read_text()
        stub.script(
            f"[hdr-{module}]",
            ReadFile(path),
            WriteFile(path, HEADER + original),
            Reply(f"Added the header to {path}."),
        )
    run_id = submit(
        daemon,
        repo,
        [
            {"id": f"hdr-{m.removesuffix('.py')}", "prompt": f"[hdr-{m}] Add the header to {m}."}
            for m in MODULES
        ],
    )
    results = json.loads(daemon.orchctl("results", run_id, "--json", check=True).stdout)
    for task, module in zip(results["tasks"], MODULES):
        assert task["state"] == "completed", (
            task,
            daemon.orchctl("logs", run_id, task["id"]).stdout[-2000:],
        )
        assert task["files"] == [f"{PROJECT}/{module}"], task
        assert task["verify"]["result"] == "passed" and task["verify"]["checks"] == 1
    assert results["conflicts"][0]["conflicts"] == []

    merged = daemon.orchctl("merge", run_id, "--into", "main", "--verify", timeout=600)
    assert merged.returncode == 0, merged.stderr
    assert merged.stdout.count("(its checks passed on the integrated tree)") == len(MODULES)
    for module in MODULES:
        assert (repo / PROJECT / module).read_text().startswith(HEADER)
    assert git(repo, "log", "-1", "--format=%an <%ae>").strip() == "orch <orch@localhost>"
    assert git(repo, "status", "--porcelain") == ""  # nothing left behind by the checks
    assert not [f for f in git(repo, "ls-files").split() if "__pycache__" in f]
    after = project_tests(repo)
    assert after.returncode == 0 and " passed" in after.stdout, after.stdout[-2000:]


@pytest.mark.parametrize("resume", [True, False], ids=["resumed", "fresh"])
def test_a_failed_check_is_fed_back_and_the_next_attempt_passes(
    campaign: tuple[AnthropicStub, Daemon, Path], resume: bool
) -> None:
    stub, daemon, repo = campaign
    path = f"{PROJECT}/core.py"
    original = (repo / path).read_text()
    stub.script(
        "[break-core]",
        ReadFile(path),
        WriteFile(path, HEADER + BROKEN + original),
        Reply("Added the header."),
        ReadFile(path),
        WriteFile(path, HEADER + original),
        Reply("Fixed core.py: the tests pass."),
    )
    run_id = submit(
        daemon,
        repo,
        [{"id": "core", "prompt": "[break-core] Add the header to core.py."}],
        resume=resume,
    )
    info = json.loads(daemon.orchctl("why", run_id, "core", "--json", check=True).stdout)
    first, second = info["attempts"]
    assert first["outcome"] == "verify_failed", first
    assert "orch-e2e: the agent broke core.py" in first["verify"]["output"]
    assert second["outcome"] == "success" and second["verify"]["result"] == "passed", second
    asked = stub.model_requests("[break-core]")
    phrase = "its check did not pass" if resume else "A previous attempt at this task was checked"
    told = [r for r in asked if phrase in json.dumps(r.body)]
    assert told, "the next attempt's prompt says that the check failed"
    # ... and quotes its output (the error pytest printed), beyond what the agent itself wrote
    assert "RuntimeError: orch-e2e: the agent broke core.py" in json.dumps(told[0].body)
    assert (told[0].session == asked[0].session) is resume  # resumed: the same conversation
    assert info["task"]["files"] == [path]
    daemon.orchctl("merge", run_id, "--verify", check=True, timeout=300)
    merged = (repo / path).read_text()
    assert merged.startswith(HEADER) and BROKEN not in merged
    assert project_tests(repo).returncode == 0
