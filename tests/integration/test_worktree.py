"""Worktree isolation: each task in its own worktree and branch; diff, merge, clean; against a real orchd."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from tests.conftest import Daemon, agent, write_plan


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=repo, check=True, capture_output=True, text=True
    ).stdout


def make_repo(path: Path) -> Path:
    """A repository with one commit: app.py and README.md."""
    path.mkdir()
    git(path, "init", "--quiet", "--initial-branch", "main")
    git(path, "config", "user.email", "dev@example.com")
    git(path, "config", "user.name", "Dev")
    (path / "app.py").write_text("print('hello')\n")
    (path / "README.md").write_text("# app\n")
    git(path, "add", ".")
    git(path, "commit", "--quiet", "-m", "initial")
    return path


def run_plan(
    orchd: Daemon, tmp_path: Path, repo: Path, tasks: list[dict[str, Any]], **plan: Any
) -> dict:
    path = write_plan(
        tmp_path / "plan.json",
        {
            "name": "wt",
            "workdir": str(repo),
            "isolation": "worktree",
            "defaults": {"agent": "command", "max_retries": 0},
            "tasks": tasks,
            **plan,
        },
    )
    done = orchd.orchctl("submit", str(path), "--wait", "--json")
    assert done.returncode in (0, 1), done.stderr
    return json.loads(done.stdout)


def test_tasks_work_on_their_own_branches_and_merge(orchd: Daemon, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    (repo / ".env").write_text("TOKEN=dev-only\n")  # untracked: copied in, never committed
    view = run_plan(
        orchd,
        tmp_path,
        repo,
        [
            {
                "id": "docs",
                "command": agent("edit", "README.md=# app, documented"),
                "copy": [".env"],
                "setup": [["sh", "-c", "echo ready > setup.txt"]],
            },
            {"id": "feature", "command": agent("edit", "feature.py=print('new')")},
        ],
    )
    assert view["summary"]["state"] == "completed", view
    run_id = view["summary"]["run_id"]
    tasks = {t["id"]: t for t in view["tasks"]}
    # setup.txt is what setup left: the task's starting point, not its change
    assert tasks["docs"]["files"] == ["README.md"] and tasks["feature"]["files"] == ["feature.py"]
    assert tasks["docs"]["branch"] == f"orch/{run_id}/docs"
    assert "saw .env: TOKEN=dev-only" in orchd.orchctl("logs", run_id, "docs", check=True).stdout
    assert "saw setup.txt: ready" in orchd.orchctl("logs", run_id, "docs").stdout
    # the user's checkout is untouched until the merge
    assert (repo / "README.md").read_text() == "# app\n" and not (repo / "feature.py").exists()

    diff = orchd.orchctl("diff", run_id, "docs", check=True).stdout
    assert "+# app, documented" in diff and "-# app" in diff
    assert ".env" not in diff and "setup.txt" not in diff

    markdown = orchd.orchctl("results", run_id, "--markdown", check=True).stdout
    assert "| docs | completed |" in markdown and "`README.md`" in markdown

    merged = orchd.orchctl("merge", run_id, check=True)
    assert "merged docs into main" in merged.stdout and "merged feature into main" in merged.stdout
    assert (repo / "README.md").read_text() == "# app, documented\n" and (
        repo / "feature.py"
    ).exists()
    assert "TOKEN" not in git(repo, "log", "-p")

    runs = orchd.orchctl("runs", "--json", check=True).stdout
    assert [r["worktrees"] for r in json.loads(runs)["runs"]] == [2]
    cleaned = orchd.orchctl("clean", run_id, "--branches", check=True)
    assert "2 tasks" in cleaned.stdout
    assert git(repo, "branch", "--list", "orch/*") == ""
    assert git(repo, "worktree", "list").count("\n") == 1
    assert [r["worktrees"] for r in json.loads(orchd.orchctl("runs", "--json").stdout)["runs"]] == [
        0
    ]


def test_a_conflicting_branch_is_skipped_with_a_report(orchd: Daemon, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    view = run_plan(
        orchd,
        tmp_path,
        repo,
        [
            {"id": "alpha", "command": agent("edit", "app.py=print('alpha')")},
            {"id": "beta", "command": agent("edit", "app.py=print('beta')")},
            {"id": "gamma", "command": agent("edit", "other.py=x = 1")},
        ],
    )
    run_id = view["summary"]["run_id"]
    git(repo, "checkout", "--quiet", "-b", "integration")
    out = orchd.orchctl("merge", run_id, "--into", "integration")
    assert out.returncode == 1
    assert "merged alpha into integration" in out.stdout
    assert "task beta conflicts with alpha" in out.stderr and "app.py" in out.stderr
    assert (repo / "app.py").read_text() == "print('alpha')\n"
    assert (
        git(repo, "status", "--porcelain", "--untracked-files=no") == ""
    )  # the failed merge was aborted


def test_merge_into_a_branch_checked_out_nowhere_leaves_the_checkout_alone(
    orchd: Daemon, tmp_path: Path
) -> None:
    repo = make_repo(tmp_path / "repo")
    git(repo, "branch", "release")
    view = run_plan(orchd, tmp_path, repo, [{"id": "one", "command": agent("edit", "one.txt=1")}])
    orchd.orchctl("merge", view["summary"]["run_id"], "--into", "release", check=True)
    assert "one.txt" in git(repo, "ls-tree", "--name-only", "release")
    assert not (repo / "one.txt").exists()


def test_retry_starts_from_the_base_and_failed_tasks_keep_their_worktree(
    orchd: Daemon, tmp_path: Path
) -> None:
    repo = make_repo(tmp_path / "repo")
    script = (
        "import os,sys,pathlib; p=pathlib.Path('notes.txt'); "
        "print('dirty' if p.exists() else 'clean'); p.write_text('x'); "
        "sys.exit(0 if os.environ['ORCH_ATTEMPT'] == '2' else 3)"
    )
    view = run_plan(
        orchd,
        tmp_path,
        repo,
        [
            {
                "id": "t",
                "command": ["python3", "-c", script],
                "max_retries": 1,
                "backoff": {"initial": "10ms", "jitter": "none"},
            }
        ],
    )
    run_id = view["summary"]["run_id"]
    assert view["tasks"][0]["state"] == "completed"
    assert (
        orchd.orchctl("logs", run_id, "t", "--attempt", "2", check=True).stdout.count("clean") == 1
    )


def test_worktree_plans_need_a_repository_and_a_base(orchd: Daemon, tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    path = write_plan(
        tmp_path / "plan.json",
        {
            "workdir": str(plain),
            "isolation": "worktree",
            "tasks": [{"id": "a", "agent": "command", "command": ["true"]}],
        },
    )
    out = orchd.orchctl("submit", str(path))
    assert (
        out.returncode == 2
        and "not in a git repository" in out.stderr
        and "isolation" in out.stderr
    )
    repo = make_repo(tmp_path / "repo")
    path = write_plan(
        tmp_path / "plan2.json",
        {
            "workdir": str(repo),
            "isolation": "worktree",
            "base": "nope",
            "tasks": [{"id": "a", "agent": "command", "command": ["true"]}],
        },
    )
    out = orchd.orchctl("submit", str(path))
    assert out.returncode == 2 and "base: no branch, tag or commit 'nope'" in out.stderr
    (repo / "app.py").write_text("changed\n")
    path = write_plan(
        tmp_path / "plan3.json",
        {
            "workdir": str(repo),
            "isolation": "worktree",
            "tasks": [{"id": "a", "agent": "command", "command": ["true"]}],
        },
    )
    out = orchd.orchctl("submit", str(path))
    assert out.returncode == 0 and "uncommitted changes" in out.stderr
    assert (repo / "app.py").read_text() == "changed\n"


def test_diff_of_a_failed_task_shows_its_worktree(orchd: Daemon, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    (repo / ".env").write_text("TOKEN=dev-only\n")
    script = "import pathlib,sys; pathlib.Path('half.py').write_text('half = 1\\n'); sys.exit(5)"
    view = run_plan(
        orchd, tmp_path, repo, [{"id": "t", "command": ["python3", "-c", script], "copy": [".env"]}]
    )
    assert view["summary"]["state"] == "failed"
    diff = orchd.orchctl("diff", view["summary"]["run_id"], "t", check=True).stdout
    assert "+half = 1" in diff and "TOKEN" not in diff


def test_one_plan_changes_several_repositories(orchd: Daemon, tmp_path: Path) -> None:
    repos = [make_repo(tmp_path / name) for name in ("api", "web", "cli")]
    for repo in repos:  # each repository's own .env: copied from the task's directory
        (repo / ".env").write_text(f"REPO={repo.name}\n")
    path = write_plan(
        tmp_path / "plan.json",
        {
            "name": "batch",
            "workdir": str(tmp_path),
            "isolation": "worktree",
            "defaults": {"agent": "command", "max_retries": 0, "copy": [".env"]},
            "tasks": [
                {"id": repo.name, "workdir": repo.name, "command": agent("edit", "LICENSE=MIT")}
                for repo in repos
            ],
        },
    )
    view = json.loads(orchd.orchctl("submit", str(path), "--wait", "--json", check=True).stdout)
    assert {t["id"]: t["files"] for t in view["tasks"]} == {
        "api": ["LICENSE"],
        "web": ["LICENSE"],
        "cli": ["LICENSE"],
    }
    for repo in repos:
        log = orchd.orchctl("logs", view["summary"]["run_id"], repo.name, check=True).stdout
        assert f"saw .env: REPO={repo.name}" in log
    merged = orchd.orchctl("merge", view["summary"]["run_id"], check=True).stdout
    for repo in repos:
        assert f"merged {repo.name} into main ({repo})" in merged
        assert (repo / "LICENSE").read_text() == "MIT\n"


def test_a_repository_that_moved_away_is_named_not_taken_for_a_missing_git(
    orchd: Daemon, tmp_path: Path
) -> None:
    repo = make_repo(tmp_path / "repo")
    view = run_plan(
        orchd, tmp_path, repo, [{"id": "docs", "command": agent("edit", "README.md=# moved")}]
    )
    assert view["summary"]["state"] == "completed"
    run_id = view["summary"]["run_id"]
    repo.rename(tmp_path / "elsewhere")
    for args in (("diff", run_id, "docs"), ("merge", run_id)):
        result = orchd.orchctl(*args)
        assert result.returncode == 2, result
        assert "not installed" not in result.stderr, result.stderr
        assert f"cannot run git in {repo}: no such directory" in result.stderr, result.stderr
