"""The git operations on a run's branches: commit an attempt's change, diff, the merge queue,
conflict prediction, clean.

Every one of them sees a task's change the same way (orchd/git.py): its branch against the base,
where the branch holds what the task changed after its starting point, never what `copy` and
`setup` left; a task that has not completed is seen through the same definition applied to its
worktree as it is.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from orchd import attempt, git, verify
from orchd.errors import ErrorCode
from orchd.events import VerifyResult
from orchd.git import GitError
from orchd.reports import ConflictForecast, MergeResult, PredictedConflict, Skipped
from orchd.workspace import Workspace

MERGE_TREE = (2, 38)  # `git merge-tree --write-tree`: a merge computed without a checkout


def commit(ws: Workspace, message: str, leave_out: list[str]) -> list[str]:
    """Commit the task's change to its branch; the files it changed since the base.

    Args:
        leave_out: paths (relative to the workdir) never committed: the files copied in, such as `.env`.

    Raises:
        GitError: the commit failed.
    """
    tree = git.change_tree(ws.path, ws.base, ws.top(leave_out))
    tip = git.rev(f"refs/heads/{ws.branch}", ws.path)
    if tree != git.rev(f"{tip}^{{tree}}", ws.path):
        new = git.write("commit-tree", tree, "-p", tip, "-m", message, cwd=ws.path).stdout.strip()
        git.git("update-ref", f"refs/heads/{ws.branch}", new, tip, cwd=ws.path)
        git.git("reset", "--quiet", cwd=ws.path)  # the index follows; the files stay as they are
    return changed_files(ws)


def changed_files(ws: Workspace) -> list[str]:
    """Files that differ between the base and the task's branch."""
    out = git.git(
        "diff", "--name-only", "--no-renames", ws.base, ws.branch, cwd=ws.repo, check=False
    )
    return [line for line in out.stdout.splitlines() if line]


def diff(ws: Workspace, worktree: bool, leave_out: list[str]) -> str:
    """The task's change against the base: of its worktree as it is (`worktree`, while it exists),
    else of its branch. Files in `leave_out` (those copied in) are never shown."""
    if worktree and (Path(ws.path) / ".git").exists():
        tree = git.change_tree(ws.path, ws.base, ws.top(leave_out))
        return git.git("diff", ws.base, tree, cwd=ws.path).stdout
    if not git.has_ref(f"refs/heads/{ws.branch}", ws.repo):
        return ""
    return git.git("diff", ws.base, ws.branch, cwd=ws.repo).stdout


def remove(ws: Workspace, branch: bool) -> bool:
    """Remove a task's worktree (and its branch); whether anything was there."""
    found = False
    if Path(ws.path).exists():
        found = True
        if git.git("worktree", "remove", "--force", ws.path, cwd=ws.repo, check=False).returncode:
            shutil.rmtree(ws.path, ignore_errors=True)
            git.git("worktree", "prune", cwd=ws.repo, check=False)
    if branch and git.git("branch", "-D", ws.branch, cwd=ws.repo, check=False).returncode == 0:
        found = True
    return found


# ------------------------------------------------------------ the merge queue


@dataclass(frozen=True)
class Mergeable:
    """A completed task's branch, with what `merge --verify` checks after merging it."""

    task: str
    ws: Workspace
    files: list[str]
    checks: list[list[str]] = field(default_factory=list)
    timeout: float = 600.0
    env: dict[str, str] = field(default_factory=dict)
    copy: list[str] = field(default_factory=list)  # for a temporary worktree's checks
    setup: list[list[str]] = field(default_factory=list)
    workdir: str = ""


def target(repo: str, into: str | None) -> str:
    """The branch to merge into: `into`, else the branch checked out in `repo`.

    Raises:
        GitError: `repo` is on a detached HEAD and no branch was named, or there is no such branch.
    """
    if into is None:
        head = git.git("symbolic-ref", "--quiet", "--short", "HEAD", cwd=repo, check=False)
        if head.returncode != 0:
            raise GitError(
                f"{repo} is on a detached HEAD: name the branch to merge into with --into"
            )
        into = head.stdout.strip()
    if not git.has_ref(f"refs/heads/{into}", repo):
        raise GitError(f"no branch {into!r} in {repo}", ErrorCode.NOT_FOUND)
    return into


def merge(repo: str, into: str | None, tasks: list[Mergeable], checked: bool) -> MergeResult:
    """Merge completed tasks' branches into `into` (default: the branch checked out in `repo`), one
    by one, in order: a merge queue.

    The merges happen where `into` is checked out (which must be clean), or in a temporary worktree
    when it is checked out nowhere. A branch that conflicts (or that git refuses for any other
    reason) is left out, its merge aborted, and the queue goes on. With `checked`, each task's
    verify commands run on the integrated tree after its merge, and a merge that fails them is
    backed out.

    Raises:
        GitError: no branch to merge into, or its checkout has uncommitted changes.
    """
    into = target(repo, into)
    where = _checkout_of(repo, into)
    temporary = where is None
    if where is None:
        common = git.git("rev-parse", "--git-common-dir", cwd=repo).stdout.strip()
        where = str(Path(repo, common, f"orch-merge-{os.getpid()}"))
        git.git("worktree", "add", "--quiet", where, into, cwd=repo)
    elif git.git("status", "--porcelain", "--untracked-files=no", cwd=where).stdout.strip():
        raise GitError(
            f"{where} has uncommitted changes on {into}: commit or stash them, then merge again"
        )
    result = MergeResult(repo, into, [], [], [], [])
    touched: dict[str, list[str]] = {}
    prepared = not temporary  # a temporary worktree gets the plan's copy and setup before a check
    try:
        for task in tasks:
            new = git.git(
                "rev-list", "--count", f"{into}..{task.ws.branch}", cwd=where, check=False
            )
            if new.returncode != 0 or new.stdout.strip() == "0":
                result.unchanged.append(task.task)
                continue
            before = git.rev("HEAD", where)
            message = f"orch: merge {task.task} ({task.ws.branch})"
            done = git.write(
                "merge",
                "--no-ff",
                "--no-edit",
                "-m",
                message,
                task.ws.branch,
                cwd=where,
                check=False,
            )
            if done.returncode != 0:
                result.skipped.append(_refused(where, task.task, done, touched))
                continue
            if checked and task.checks:
                if not prepared:
                    _prepare_temporary(where, task)
                    prepared = True
                outcome = check_tree(where, task)
                if not outcome.passed:
                    git.git("reset", "--quiet", "--hard", before, cwd=where)
                    result.skipped.append(
                        Skipped(task.task, "verify", message=outcome.reason, verify=outcome)
                    )
                    continue
                result.verified.append(task.task)
            result.merged.append(task.task)
            for name in task.files:
                touched.setdefault(name, []).append(task.task)
    finally:
        if temporary:
            git.git("worktree", "remove", "--force", where, cwd=repo, check=False)
    return result


def _refused(
    where: str, task: str, done: subprocess.CompletedProcess[str], touched: dict[str, list[str]]
) -> Skipped:
    """A merge git did not make: a conflict (the files, and the tasks merged before that touched
    them), or any other refusal (git's own words). Either way it is aborted."""
    out = git.git("diff", "--name-only", "-z", "--diff-filter=U", cwd=where, check=False).stdout
    files = [name for name in out.split("\0") if name]
    if git.has_ref("MERGE_HEAD", where):
        git.git("merge", "--abort", cwd=where, check=False)
    if files:
        others = sorted({t for f in files for t in touched.get(f, [])})
        return Skipped(task, "conflict", files=files, with_tasks=others)
    return Skipped(task, "git", message=f"git merge failed: {git.said(done)}")


def _prepare_temporary(where: str, task: Mergeable) -> None:
    """What a task's worktree gets before its agent (`copy`, `setup`), for checks in a temporary one."""
    cwd = str(Path(where, task.ws.subdir))
    for name in task.copy:
        source = Path(task.workdir, name)
        if source.is_dir():
            shutil.copytree(source, Path(cwd, name), dirs_exist_ok=True)
        elif source.exists():
            shutil.copy2(source, Path(cwd, name))
    for argv in task.setup:
        attempt.run_check(argv, cwd, task.timeout, own_group=True, env=task.env)


def check_tree(where: str, task: Mergeable) -> VerifyResult:
    """Run a task's verify commands on the tree checked out at `where`; what they change there is
    put back as it was."""
    cwd = str(Path(where, task.ws.subdir))
    before = git.snapshot(where)
    try:
        for i, argv in enumerate(task.checks, 1):
            with tempfile.TemporaryFile() as out:
                how = attempt.run_check(
                    argv, cwd, task.timeout, own_group=True, env=task.env, output=out
                )
                if how is not None:
                    out.seek(max(0, out.seek(0, os.SEEK_END) - (64 << 10)))
                    lines = out.read().decode("utf-8", "replace").rstrip().splitlines()
                    text = "\n".join(lines[-verify.OUTPUT_LINES :])[-verify.OUTPUT_CHARS :]
                    return VerifyResult(
                        verify.kind_of(how), checks=i, argv=argv, detail=how, output=text
                    )
        return VerifyResult("passed", checks=len(task.checks))
    finally:
        git.restore(where, before)


def _checkout_of(repo: str, branch: str) -> str | None:
    """The worktree where `branch` is checked out, if any."""
    path = None
    for line in git.git("worktree", "list", "--porcelain", cwd=repo).stdout.splitlines():
        if line.startswith("worktree "):
            path = line[len("worktree ") :]
        elif line == f"branch refs/heads/{branch}":
            return path
    return None


# ------------------------------------------------------------ conflict prediction


def git_version(cwd: str) -> tuple[int, ...]:
    """git's version, as numbers (`git version 2.39.5` -> (2, 39, 5))."""
    match = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", git.git("version", cwd=cwd).stdout)
    return tuple(int(n) for n in match.groups() if n) if match else (0,)


def forecast(repo: str, into: str | None, tasks: list[Mergeable]) -> ConflictForecast:
    """Which completed branches would conflict with the target or with each other, computed with
    `git merge-tree --write-tree` (no checkout is touched). Two branches are compared only when
    they changed a file (or directory) in common: others cannot conflict.
    """
    into = target(repo, into)
    branches = [t.task for t in tasks]
    version = git_version(repo)
    if version < MERGE_TREE:
        shown = ".".join(map(str, version))
        note = f"conflict prediction needs git 2.38 or later (merge-tree --write-tree); this is git {shown}"
        return ConflictForecast(repo, into, branches, [], note)
    conflicts = []
    for task in tasks:
        files = _conflicts(repo, into, task.ws.branch)
        if files:
            conflicts.append(PredictedConflict(task.task, into, True, files))
    for i, one in enumerate(tasks):
        for other in tasks[i + 1 :]:
            if _overlap(one.files, other.files):
                files = _conflicts(repo, one.ws.branch, other.ws.branch)
                if files:
                    conflicts.append(PredictedConflict(other.task, one.task, False, files))
    return ConflictForecast(repo, into, branches, conflicts)


def _conflicts(repo: str, ours: str, theirs: str) -> list[str]:
    """The files that merging `theirs` into `ours` would leave in conflict.

    Raises:
        GitError: git could not compute the merge (its own message).
    """
    done = git.git(
        "merge-tree", "--write-tree", "--name-only", "--no-messages", "-z", ours, theirs,
        cwd=repo, check=False,
    )  # fmt: skip
    parts = done.stdout.split("\0")
    if done.returncode not in (0, 1) or not re.fullmatch(r"[0-9a-f]{40,64}", parts[0]):
        raise GitError(f"git merge-tree {ours} {theirs} failed: {git.said(done)}")
    return list(dict.fromkeys(p for p in parts[1:] if p)) if done.returncode == 1 else []


def _overlap(one: list[str], other: list[str]) -> bool:
    """Whether two lists of changed files share a file, or one's file is a directory of the other's."""

    def prefixes(files: list[str]) -> set[str]:
        return {str(parent) for f in files for parent in Path(f).parents if str(parent) != "."}

    a, b = set(one), set(other)
    return bool(a & b or a & prefixes(other) or b & prefixes(one))
