"""What a task's branch holds: the agent's change, never what `copy` and `setup` left (issue 22).

diff, results' files, merge and conflict prediction share that one definition; a real orchd.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import Daemon, agent
from tests.integration.test_worktree import git, make_repo, run_plan

# setup as real ones behave: build output in new directories, a file beside the sources
MAKE_FILES = [
    "python3",
    "-c",
    "import pathlib; pathlib.Path('build/lib').mkdir(parents=True, exist_ok=True); "
    "pathlib.Path('build/lib/app.pyc').write_text('compiled'); "
    "pathlib.Path('pkg.egg-info').mkdir(exist_ok=True); "
    "pathlib.Path('pkg.egg-info/PKG-INFO').write_text('Name: pkg'); "
    "pathlib.Path('SETUP_RAN').write_text('yes')",
]


def test_setup_that_creates_files_and_directories_is_not_the_change(
    orchd: Daemon, tmp_path: Path
) -> None:
    repo = make_repo(tmp_path / "repo")
    view = run_plan(
        orchd,
        tmp_path,
        repo,
        [{"id": "look", "command": agent("edit", "result.txt=found it"), "setup": [MAKE_FILES]}],
    )
    run_id = view["summary"]["run_id"]
    task = view["tasks"][0]
    assert task["state"] == "completed" and task["files"] == ["result.txt"], task
    diff = orchd.orchctl("diff", run_id, "look", check=True).stdout
    assert "result.txt" in diff
    assert "SETUP_RAN" not in diff and "build/" not in diff and "egg-info" not in diff
    forecast = json.loads(orchd.orchctl("results", run_id, "--json", check=True).stdout)
    assert forecast["conflicts"][0]["branches"] == ["look"]
    orchd.orchctl("merge", run_id, check=True)
    assert git(repo, "ls-tree", "-r", "--name-only", "main").split() == [
        "README.md",
        "app.py",
        "result.txt",
    ]
    assert not (repo / "SETUP_RAN").exists() and not (repo / "build").exists()


def test_setup_that_changes_a_tracked_file_leaves_it_out_of_the_change(
    orchd: Daemon, tmp_path: Path
) -> None:
    """A tracked file that setup changes is part of the starting point: unless the agent changes
    it too, the branch keeps the base's version. One the agent changes again is taken whole."""
    repo = make_repo(tmp_path / "repo")
    (repo / "config.ini").write_text("[app]\ndebug = false\n")
    git(repo, "add", "config.ini")
    git(repo, "commit", "--quiet", "-m", "config")
    configure = ["sh", "-c", "echo 'local = yes' >> config.ini && echo '# setup' >> README.md"]
    view = run_plan(
        orchd,
        tmp_path,
        repo,
        [
            {"id": "leaves", "command": agent("edit", "other.txt=1"), "setup": [configure]},
            {
                "id": "edits",
                "command": agent("edit", "README.md=# app, by the agent"),
                "setup": [configure],
            },
        ],
    )
    run_id = view["summary"]["run_id"]
    tasks = {t["id"]: t for t in view["tasks"]}
    assert tasks["leaves"]["files"] == ["other.txt"], tasks
    assert tasks["edits"]["files"] == ["README.md"], tasks
    assert "local = yes" not in orchd.orchctl("diff", run_id, "leaves", check=True).stdout
    orchd.orchctl("merge", run_id, check=True)
    assert (repo / "config.ini").read_text() == "[app]\ndebug = false\n"
    assert (repo / "README.md").read_text() == "# app, by the agent\n"


def test_a_retry_reuses_the_worktree_where_setup_ran(orchd: Daemon, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    (repo / ".gitignore").write_text("cache/\n")
    git(repo, "add", ".gitignore")
    git(repo, "commit", "--quiet", "-m", "ignore the cache")
    # setup appends to a tracked file (not idempotent) and fills an ignored cache it reuses
    setup = [
        "sh",
        "-c",
        "mkdir -p cache && echo run >> cache/runs && echo step >> README.md && echo yes > SETUP_RAN",
    ]
    script = (
        "import os, pathlib, sys; n = os.environ['ORCH_ATTEMPT']; "
        "print('setup ran', pathlib.Path('cache/runs').read_text().count('run'), 'times'); "
        "pathlib.Path(f'attempt{n}.txt').write_text(n); sys.exit(0 if n == '2' else 4)"
    )
    view = run_plan(
        orchd,
        tmp_path,
        repo,
        [
            {
                "id": "t",
                "command": ["python3", "-c", script],
                "setup": [setup],
                "max_retries": 1,
                "backoff": {"initial": "10ms", "jitter": "none"},
            }
        ],
    )
    run_id = view["summary"]["run_id"]
    task = view["tasks"][0]
    assert task["state"] == "completed" and task["attempts"] == 2, task
    assert task["files"] == ["attempt2.txt"]  # not the first attempt's work, nor setup's
    log = orchd.orchctl("logs", run_id, "t", "--attempt", "2", check=True).stdout
    assert "worktree reset" in log and "setup ran 2 times" in log
    assert "step" not in orchd.orchctl("diff", run_id, "t", check=True).stdout
