"""Worktree isolation: where each task works, and the checks at submit.

A task with `isolation = "worktree"` runs in `state/worktrees/RUN/TASK`, a git
worktree of the plan's repository on the branch `orch/RUN/TASK`, made from the
run's base commit. At submit, each task's directory must be in a repository and
the base must exist there. The worktree itself is prepared inside the attempt's
own process (orchd/attempt.py); the branches are reviewed and merged by
orchd/branches.py.
"""

from __future__ import annotations

import os
from pathlib import Path

import msgspec

from orchd.errors import PlanError
from orchd.git import git
from orchd.plan import RunSpec, TaskSpec


class Workspace(msgspec.Struct, frozen=True):
    """Where one task of one run works."""

    repo: str  # the top level of the user's repository
    path: str  # the task's worktree
    branch: str  # orch/RUN/TASK
    base: str  # the commit the branch starts from
    subdir: str = ""  # the plan's workdir, relative to the repository's top level

    @property
    def cwd(self) -> str:
        """The agent's working directory: the workdir's place inside the worktree."""
        return str(Path(self.path) / self.subdir) if self.subdir else self.path

    def top(self, names: list[str]) -> list[str]:
        """Paths relative to the workdir (such as `copy`'s), relative to the worktree's top."""
        return [str(Path(self.subdir, name)) for name in names]


def check_repo(spec: RunSpec, source: str) -> tuple[RunSpec, list[str]]:
    """At submit: the repository and base commit of each worktree task, and warnings.

    Raises:
        PlanError: a task's directory is not in a git repository, or the base does not exist there.
    """
    found: dict[str, tuple[str, str]] = {}  # cwd -> (repo, base commit)
    warnings: list[str] = []
    tasks = []
    for task in spec.tasks:
        if task.isolation == "worktree":
            if task.cwd not in found:
                found[task.cwd] = _repo_of(task.cwd, spec.base, source, warnings)
            repo, commit = found[task.cwd]
            task = msgspec.structs.replace(task, repo=repo, base_commit=commit)
        tasks.append(task)
    return (msgspec.structs.replace(spec, tasks=tasks) if found else spec), warnings


def _repo_of(cwd: str, base: str | None, source: str, warnings: list[str]) -> tuple[str, str]:
    isolated = 'tasks run in git worktrees (isolation = "worktree", the default for agents)'
    top = git("rev-parse", "--show-toplevel", cwd=cwd, check=False)
    if top.returncode != 0:
        raise PlanError(
            f"{source}: workdir {cwd} is not in a git repository, but {isolated}: "
            'run `git init` and commit, or set isolation = "none"'
        )
    repo = top.stdout.strip()
    named = base or "HEAD"
    resolved = git("rev-parse", "--verify", "--quiet", f"{named}^{{commit}}", cwd=repo, check=False)
    if resolved.returncode != 0:
        why = (
            "the repository has no commit yet"
            if named == "HEAD"
            else f"no branch, tag or commit {named!r}"
        )
        raise PlanError(f"{source}: base: {why} in {repo}")
    commit = resolved.stdout.strip()
    dirty = git(
        "status", "--porcelain", "--untracked-files=no", cwd=repo, check=False
    ).stdout.strip()
    if dirty and named == "HEAD":
        warnings.append(
            f"{repo} has uncommitted changes; tasks start from HEAD ({commit[:12]}) and do not "
            "see them (commit them first if they should)"
        )
    return repo, commit


def workspace_of(worktrees: Path, run_id: str, task: TaskSpec) -> Workspace | None:
    """The workspace of a task, or None when it runs in its directory itself."""
    if task.isolation != "worktree" or task.repo is None or task.base_commit is None:
        return None
    subdir = os.path.relpath(task.cwd, task.repo)
    return Workspace(
        repo=task.repo,
        path=str(worktrees / run_id / task.id),
        branch=f"orch/{run_id}/{task.id}",
        base=task.base_commit,
        subdir="" if subdir == "." else subdir,
    )
