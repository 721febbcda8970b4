"""orchd/git.py on real repositories: the identity of git writes, the one definition of a task's
change, and putting back what a check changed."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from orchd import git
from tests.conftest import no_git_identity


def run(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout


@pytest.fixture
def nobody(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No git identity anywhere: an empty HOME, no system config, nothing in the environment."""
    no_git_identity(tmp_path, monkeypatch)


@pytest.fixture
def repo(tmp_path: Path, nobody: None) -> Path:
    path = tmp_path / "repo"
    path.mkdir()
    run(path, "init", "-q", "-b", "main")
    (path / "app.py").write_text("app\n")
    (path / "config.ini").write_text("debug = false\n")
    run(path, "add", ".")
    run(path, "-c", "user.name=Dev", "-c", "user.email=dev@example.com", "commit", "-qm", "init")
    return path


def test_an_identity_only_where_git_has_none(repo: Path) -> None:
    assert git.identity(str(repo)) == ["-c", "user.name=orch", "-c", "user.email=orch@localhost"]
    run(repo, "config", "user.email", "me@example.com")
    run(repo, "config", "user.name", "Me")
    assert git.identity(str(repo)) == []  # the repository's own
    run(repo, "config", "--unset", "user.name")
    (Path.home() / ".gitconfig").write_text("[user]\n\tname = Home User\n")
    assert git.identity(str(repo)) == []  # the user's, with the repository's email


def test_write_commits_with_orchs_identity_when_there_is_none(repo: Path) -> None:
    tree = run(repo, "rev-parse", "HEAD^{tree}").strip()
    done = git.write("commit-tree", tree, "-p", "HEAD", "-m", "x", cwd=str(repo))
    assert run(repo, "log", "-1", "--format=%an <%ae>", done.stdout.strip()).strip() == (
        "orch <orch@localhost>"
    )


def test_the_change_leaves_out_the_starting_point(repo: Path) -> None:
    base = run(repo, "rev-parse", "HEAD").strip()
    run(repo, "config", "user.email", "dev@example.com")  # the worktree's git needs no identity
    # what setup leaves: new files and directories, a change to a tracked file
    (repo / "build").mkdir()
    (repo / "build" / "out.o").write_text("binary")
    (repo / "config.ini").write_text("debug = true\n")
    (repo / ".env").write_text("copied in")
    index_before = (repo / ".git" / "index").read_bytes()
    start = git.record_start(str(repo))
    assert git.started(str(repo)) and (repo / ".git" / "index").read_bytes() == index_before
    # what the agent does after it
    (repo / "app.py").write_text("app, changed\n")
    (repo / "new.py").write_text("new\n")
    (repo / ".env").write_text("changed by the agent, still never committed")
    tree = git.change_tree(str(repo), base, leave_out=[".env"])
    files = run(repo, "diff", "--name-only", base, tree).split()
    assert files == ["app.py", "new.py"]
    assert run(repo, "show", f"{tree}:config.ini") == "debug = false\n"
    # a file setup changed and the agent changed again is taken as the agent left it
    (repo / "config.ini").write_text("debug = true\nagent = yes\n")
    tree = git.change_tree(str(repo), base, leave_out=[".env"])
    assert run(repo, "show", f"{tree}:config.ini") == "debug = true\nagent = yes\n"
    # a file the agent removed is removed; one setup made and the agent removed is not there anyway
    (repo / "app.py").unlink()
    (repo / "build" / "out.o").unlink()
    tree = git.change_tree(str(repo), base, leave_out=[".env"])
    assert run(repo, "diff", "--name-status", base, tree).split() == [
        "D", "app.py", "M", "config.ini", "A", "new.py"
    ]  # fmt: skip
    git.forget_start(str(repo))
    assert not git.started(str(repo)) and start


def test_restore_puts_back_what_changed_since_a_snapshot(repo: Path) -> None:
    (repo / "work.txt").write_text("the agent's work\n")
    (repo / ".gitignore").write_text("*.cache\n")
    before = git.snapshot(str(repo))
    (repo / "app.py").write_text("reformatted\n")
    (repo / "work.txt").unlink()
    (repo / "report.xml").write_text("<r/>")
    (repo / "sub").mkdir()
    (repo / "sub" / "x.txt").write_text("x")
    (repo / "pytest.cache").write_text("ignored: left alone")
    assert sorted(git.restore(str(repo), before)) == [
        "app.py",
        "report.xml",
        "sub/x.txt",
        "work.txt",
    ]
    assert (repo / "app.py").read_text() == "app\n"
    assert (repo / "work.txt").read_text() == "the agent's work\n"
    assert not (repo / "report.xml").exists() and not (repo / "sub" / "x.txt").exists()
    assert (repo / "pytest.cache").exists()
    assert git.restore(str(repo), before) == []


def test_a_failed_git_command_says_what_git_said(repo: Path) -> None:
    with pytest.raises(git.GitError, match=r"failed: fatal: Needed a single revision"):
        git.git("rev-parse", "--verify", "nope", cwd=str(repo))
