"""The merge queue: any git identity or none, conflicts skipped, git's refusals told apart,
--verify on the integrated tree, and conflicts predicted by `results`; against a real orchd."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import Daemon, agent, no_git_identity
from tests.integration.test_worktree import git, make_repo, run_plan


def bare_repo(path: Path) -> Path:
    """A repository with one commit and no identity configured in it."""
    path.mkdir()
    git(path, "init", "--quiet", "--initial-branch", "main")
    (path / "app.py").write_text("print('hello')\n")
    git(path, "add", ".")
    git(path, "-c", "user.name=Dev", "-c", "user.email=dev@example.com", "commit", "-qm", "initial")
    return path


def test_merge_works_with_no_git_identity(
    make_daemon: Callable[..., Daemon], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    no_git_identity(tmp_path, monkeypatch)
    repo = bare_repo(tmp_path / "repo")
    assert subprocess.run(["git", "var", "GIT_COMMITTER_IDENT"], cwd=repo).returncode != 0
    orchd = make_daemon()
    view = run_plan(
        orchd,
        tmp_path,
        repo,
        [
            {"id": "one", "command": agent("edit", "one.txt=1")},
            {"id": "two", "command": agent("edit", "two.txt=2")},
        ],
    )
    assert [t["state"] for t in view["tasks"]] == ["completed", "completed"], view
    merged = orchd.orchctl("merge", view["summary"]["run_id"])
    assert merged.returncode == 0, merged.stderr
    assert "merged one into main" in merged.stdout and "merged two into main" in merged.stdout
    assert git(repo, "log", "-1", "--format=%an <%ae>").strip() == "orch <orch@localhost>"
    assert (repo / "one.txt").exists() and (repo / "two.txt").exists()


def test_a_users_own_identity_wins(orchd: Daemon, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")  # Dev <dev@example.com>, configured in the repository
    view = run_plan(orchd, tmp_path, repo, [{"id": "one", "command": agent("edit", "one.txt=1")}])
    orchd.orchctl("merge", view["summary"]["run_id"], check=True)
    assert git(repo, "log", "-2", "--format=%ae").split() == ["dev@example.com"] * 2


def test_the_queue_skips_a_conflict_and_goes_on(orchd: Daemon, tmp_path: Path) -> None:
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
    results = json.loads(orchd.orchctl("results", run_id, "--json", check=True).stdout)
    [forecast] = results["conflicts"]
    assert forecast["into"] == "main" and forecast["branches"] == ["alpha", "beta", "gamma"]
    assert forecast["conflicts"] == [
        {"task": "beta", "other": "alpha", "other_is_target": False, "files": ["app.py"]}
    ]
    table = orchd.orchctl("results", run_id, check=True).stdout
    assert (
        "conflicts predicted (merging into main):" in table and "beta with alpha: app.py" in table
    )

    out = orchd.orchctl("merge", run_id, "--json")
    assert out.returncode == 1, out.stderr
    [result] = json.loads(out.stdout)["results"]
    assert result["merged"] == ["alpha", "gamma"]
    assert result["skipped"] == [
        {"task": "beta", "why": "conflict", "files": ["app.py"], "with_tasks": ["alpha"]}
    ]
    assert git(repo, "status", "--porcelain", "--untracked-files=no") == ""
    assert (repo / "other.py").exists() and (repo / "app.py").read_text() == "print('alpha')\n"


def test_a_conflict_with_the_target_is_predicted(orchd: Daemon, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    view = run_plan(orchd, tmp_path, repo, [{"id": "t", "command": agent("edit", "app.py=x")}])
    (repo / "app.py").write_text("print('changed on main meanwhile')\n")
    git(repo, "commit", "--quiet", "-am", "meanwhile")
    [forecast] = json.loads(
        orchd.orchctl("results", view["summary"]["run_id"], "--json", check=True).stdout
    )["conflicts"]
    assert forecast["conflicts"] == [
        {"task": "t", "other": "main", "other_is_target": True, "files": ["app.py"]}
    ]


def test_a_git_refusal_is_not_called_a_conflict(orchd: Daemon, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    view = run_plan(
        orchd,
        tmp_path,
        repo,
        [
            {"id": "adds", "command": agent("edit", "notes.txt=from the task")},
            {"id": "other", "command": agent("edit", "other.txt=1")},
        ],
    )
    (repo / "notes.txt").write_text("the user's own, untracked\n")
    out = orchd.orchctl("merge", view["summary"]["run_id"])
    assert out.returncode == 1
    assert "internal error" not in out.stderr and "conflicts" not in out.stderr
    assert "task adds skipped: git merge failed:" in out.stderr
    assert "untracked working tree files would be overwritten" in out.stderr, out.stderr
    assert "merged other into main" in out.stdout
    assert (repo / "notes.txt").read_text() == "the user's own, untracked\n"


def test_merge_verify_backs_out_a_merge_that_breaks_the_integrated_tree(
    orchd: Daemon, tmp_path: Path
) -> None:
    repo = make_repo(tmp_path / "repo")
    # each branch passes alone; two features together break the check
    at_most_one = [
        sys.executable,
        "-c",
        "import glob, sys; found = glob.glob('feature*.py'); print('features:', found); "
        "sys.exit(len(found) > 1)",
    ]
    view = run_plan(
        orchd,
        tmp_path,
        repo,
        [
            {"id": "a", "command": agent("edit", "feature_a.py=a = 1")},
            {"id": "b", "command": agent("edit", "feature_b.py=b = 1")},
            {"id": "docs", "command": agent("edit", "README.md=# app, documented")},
        ],
        verify=[at_most_one],
    )
    assert [t["verify"]["result"] for t in view["tasks"]] == ["passed"] * 3
    out = orchd.orchctl("merge", view["summary"]["run_id"], "--verify")
    assert out.returncode == 1, out.stderr
    assert "merged a into main (its checks passed on the integrated tree)" in out.stdout
    assert (
        "task b merged, but verify: " in out.stderr
        and ": exit 1; the merge was backed out" in out.stderr
    )
    assert "merged docs into main" in out.stdout
    assert (repo / "feature_a.py").exists() and not (repo / "feature_b.py").exists()
    assert git(repo, "status", "--porcelain") == ""  # what the checks left was put back too
    merged = json.loads(
        orchd.orchctl("merge", view["summary"]["run_id"], "--verify", "--json").stdout
    )
    [skipped] = merged["results"][0]["skipped"]
    assert skipped["why"] == "verify" and "feature_a.py" in skipped["verify"]["output"]


def test_merge_verify_needs_checks(orchd: Daemon, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    view = run_plan(orchd, tmp_path, repo, [{"id": "t", "command": agent("edit", "a.txt=1")}])
    out = orchd.orchctl("merge", view["summary"]["run_id"], "--verify")
    assert out.returncode == 2 and "no verify commands" in out.stderr


def test_an_old_git_says_it_cannot_predict(orchd: Daemon, tmp_path: Path) -> None:
    """With git older than 2.38 (no `merge-tree --write-tree`), `results` says why it predicts nothing."""
    repo = make_repo(tmp_path / "repo")
    view = run_plan(orchd, tmp_path, repo, [{"id": "t", "command": agent("edit", "a.txt=1")}])
    old = tmp_path / "old-git"
    old.mkdir()
    real = subprocess.run(["which", "git"], capture_output=True, text=True).stdout.strip()
    (old / "git").write_text(
        f'#!/bin/sh\n[ "$1" = version ] && {{ echo "git version 2.30.2"; exit 0; }}\nexec {real} "$@"\n'
    )
    (old / "git").chmod(0o755)
    orchd.stop()
    orchd.env = {**orchd.env, "PATH": f"{old}{os.pathsep}{os.environ['PATH']}"}
    orchd.start()
    [forecast] = json.loads(
        orchd.orchctl("results", view["summary"]["run_id"], "--json", check=True).stdout
    )["conflicts"]
    assert forecast["conflicts"] == [] and "needs git 2.38 or later" in forecast["note"]
    assert "this is git 2.30.2" in orchd.orchctl("results", view["summary"]["run_id"]).stdout
