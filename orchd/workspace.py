"""Worktree isolation: each task works in its own git worktree and branch, for review and merge.

A task with `isolation = "worktree"` runs in `state/worktrees/RUN/TASK`, a git
worktree of the plan's repository on the branch `orch/RUN/TASK`, made from the
run's base commit. The worktree is prepared inside the attempt's own process
(`python -m orchd.workspace PREP -- ARGV...`, which then execs the agent), so
creating it, copying files in and running setup steps are part of the attempt:
logged to its log, stopped by its timeout and by cancel, never blocking an actor.
When an attempt succeeds, its changes are committed to the task's branch; the
branch is what `orchctl diff` shows and `orchctl merge` merges.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
from pathlib import Path

import msgspec

from orchd.errors import ErrorCode, OrchError, PlanError
from orchd.plan import RunSpec, TaskSpec

GIT_TIMEOUT = 300.0  # seconds for one git command
# Exit codes of the preparing wrapper; its last output line starts with "orch: ".
SETUP_FAILED, CANNOT_RUN, NOT_FOUND = 125, 126, 127


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


class Prep(msgspec.Struct, frozen=True):
    """What the wrapper does before it execs the agent."""

    workspace: Workspace
    workdir: str  # files to copy are taken from here
    copy: list[str] = []
    setup: list[list[str]] = []
    fresh: bool = False  # reset an existing worktree to the base (a retry that does not resume)


class GitError(OrchError):
    """A git command failed."""


def git(*args: str, cwd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run `git ARGS` in `cwd` (argv, never a shell).

    Raises:
        GitError: git or `cwd` is missing, git timed out, or (with `check`) exited non-zero; the
            message has its stderr.
    """
    try:
        result = subprocess.run(
            ["git", *args],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "GIT_TERMINAL_PROMPT": "0"},
        )
    except (FileNotFoundError, NotADirectoryError):
        if not os.path.isdir(cwd):  # subprocess raises the same error for a missing cwd as for git
            raise GitError(
                f"cannot run git in {cwd}: no such directory (moved or removed?)",
                ErrorCode.NOT_FOUND,
            ) from None
        raise GitError(
            "git is not installed (worktree isolation needs it)", ErrorCode.INTERNAL
        ) from None
    except subprocess.TimeoutExpired:
        raise GitError(
            f"git {args[0]} did not finish in {GIT_TIMEOUT:g}s", ErrorCode.INTERNAL
        ) from None
    if check and result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()
        raise GitError(
            f"git {' '.join(args[:2])} failed: {detail[-1] if detail else f'exit {result.returncode}'}",
            ErrorCode.CONFLICT,
        )
    return result


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


def wrap(prep: Prep, argv: list[str]) -> list[str]:
    """The argv that prepares the workspace, then execs `argv` in it."""
    return [
        sys.executable,
        "-m",
        "orchd.workspace",
        msgspec.json.encode(prep).decode(),
        "--",
        *argv,
    ]


# ------------------------------------------------------------ inside the attempt's process


def prepare(prep: Prep) -> None:
    """Create (or reset) the worktree, copy files in, run the setup steps.

    Raises:
        GitError: the worktree cannot be made.
        SetupFailed: a file to copy is missing or a setup step failed.
    """
    ws = prep.workspace
    path = Path(ws.path)
    common = git("rev-parse", "--git-common-dir", cwd=ws.repo).stdout.strip()
    with open(
        Path(ws.repo, common, "orch.lock"), "a"
    ) as lock:  # git worktree add is not safe in parallel
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (path / ".git").exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            git("worktree", "prune", cwd=ws.repo)
            has_branch = (
                git(
                    "rev-parse",
                    "--verify",
                    "--quiet",
                    f"refs/heads/{ws.branch}",
                    cwd=ws.repo,
                    check=False,
                ).returncode
                == 0
            )
            if has_branch:
                git("worktree", "add", "--quiet", str(path), ws.branch, cwd=ws.repo)
            else:
                git("worktree", "add", "--quiet", "-b", ws.branch, str(path), ws.base, cwd=ws.repo)
            print(f"orch: worktree {path} on branch {ws.branch}", flush=True)
        elif prep.fresh:
            git("reset", "--quiet", "--hard", ws.base, cwd=str(path))
            git("clean", "-fdq", cwd=str(path))
            print(f"orch: worktree reset to {ws.base[:12]} for a fresh attempt", flush=True)
    for name in prep.copy:
        source, target = Path(prep.workdir, name), Path(ws.cwd, name)
        if not source.exists():
            raise SetupFailed(f"copy: {source} does not exist")
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, dirs_exist_ok=True)
        else:
            shutil.copy2(source, target)
    for argv in prep.setup:
        print(f"orch: setup: {' '.join(argv)}", flush=True)
        try:
            code = subprocess.call(argv, cwd=ws.cwd, stdin=subprocess.DEVNULL)
        except OSError as exc:
            raise SetupFailed(
                f"setup step {argv[0]!r} cannot start: {exc.strerror or exc}"
            ) from None
        if code != 0:
            raise SetupFailed(f"setup step {' '.join(argv)} failed with exit code {code}")


class SetupFailed(Exception):
    """A setup step of the workspace failed."""


def main(args: list[str]) -> int:
    """`python -m orchd.workspace PREP -- ARGV...`: prepare, then exec the agent (never returns on success)."""
    prep = msgspec.json.decode(args[0], type=Prep)
    argv = args[2:]
    try:
        prepare(prep)
    except (GitError, SetupFailed) as exc:
        print(f"orch: {exc}", flush=True)
        return SETUP_FAILED
    os.chdir(prep.workspace.cwd)
    try:
        os.execvp(argv[0], argv)
    except FileNotFoundError:
        print(
            f"orch: cannot start {argv[0]!r}: not found (is it installed, and on orchd's PATH?)",
            flush=True,
        )
        return NOT_FOUND
    except OSError as exc:
        print(f"orch: cannot start {argv[0]!r}: {exc.strerror or exc}", flush=True)
        return CANNOT_RUN


# ------------------------------------------------------------ after an attempt, and for review


def commit(ws: Workspace, message: str, leave_out: list[str] = ()) -> list[str]:  # type: ignore[assignment]
    """Commit everything the agent changed to the task's branch; the files changed since the base.

    Args:
        leave_out: paths (relative to the workdir) never committed: the files copied in, such as `.env`.

    Raises:
        GitError: the commit failed.
    """
    git("add", "-A", cwd=ws.path)
    if leave_out:
        git(
            "reset",
            "--quiet",
            "--",
            *[str(Path(ws.subdir, name)) for name in leave_out],
            cwd=ws.path,
            check=False,
        )
    if git("diff", "--cached", "--quiet", cwd=ws.path, check=False).returncode != 0:
        identity = (
            []
            if git("config", "user.email", cwd=ws.path, check=False).stdout.strip()
            else ["-c", "user.name=orch", "-c", "user.email=orch@localhost"]
        )
        git(*identity, "commit", "--quiet", "--no-verify", "-m", message, cwd=ws.path)
    return changed_files(ws)


def changed_files(ws: Workspace) -> list[str]:
    """Files that differ between the base and the task's branch."""
    out = git("diff", "--name-only", ws.base, ws.branch, cwd=ws.repo, check=False).stdout
    return [line for line in out.splitlines() if line]


def diff(ws: Workspace, worktree: bool, leave_out: list[str] = ()) -> str:  # type: ignore[assignment]
    """The task's changes against the base: of its worktree as it is (`worktree`, when it still exists), else
    of its branch. Files in `leave_out` (those copied in) are not shown."""
    if worktree and (Path(ws.path) / ".git").exists():
        spec = [":(top)", *[f":(top,exclude){Path(ws.subdir, name)}" for name in leave_out]]
        git(
            "add", "-A", "--intent-to-add", "--", *spec, cwd=ws.path, check=False
        )  # show new files too
        return git("diff", ws.base, "--", *spec, cwd=ws.path).stdout
    if git(
        "rev-parse", "--verify", "--quiet", f"refs/heads/{ws.branch}", cwd=ws.repo, check=False
    ).returncode:
        return ""
    return git("diff", ws.base, ws.branch, cwd=ws.repo).stdout


class Conflict(msgspec.Struct, frozen=True):
    """Where a merge stopped: the task whose branch conflicts, the files, and the merged tasks that touched them."""

    task: str
    files: list[str]
    with_tasks: list[str]


class MergeResult(msgspec.Struct, frozen=True):
    """What `orchctl merge` did in one repository."""

    repo: str
    into: str
    merged: list[str]  # task ids merged, in order
    unchanged: list[str]  # completed tasks whose branch had nothing new
    conflict: Conflict | None = None


def merge(
    repo: str, into: str | None, tasks: list[tuple[str, Workspace, list[str]]]
) -> MergeResult:
    """Merge completed tasks' branches into `into` (default: the branch checked out in `repo`), one by one.

    The merge happens where `into` is checked out (which must be clean), or in a
    temporary worktree when it is checked out nowhere. At a conflict the merge is
    aborted and the result names the task, the files and the tasks merged before
    that touched them; the branches merged before it stay merged.

    Args:
        tasks: (task id, workspace, files it changed) of each completed task, in plan order.

    Raises:
        GitError: no branch to merge into, or its checkout has uncommitted changes.
    """
    if into is None:
        head = git("symbolic-ref", "--quiet", "--short", "HEAD", cwd=repo, check=False)
        if head.returncode != 0:
            raise GitError(
                f"{repo} is on a detached HEAD: name the branch to merge into with --into"
            )
        into = head.stdout.strip()
    if (
        git(
            "rev-parse", "--verify", "--quiet", f"refs/heads/{into}", cwd=repo, check=False
        ).returncode
        != 0
    ):
        raise GitError(f"no branch {into!r} in {repo}", ErrorCode.NOT_FOUND)
    where = _checkout_of(repo, into)
    temporary = where is None
    if where is None:
        where = str(
            Path(
                repo,
                git("rev-parse", "--git-common-dir", cwd=repo).stdout.strip(),
                f"orch-merge-{os.getpid()}",
            )
        )
        git("worktree", "add", "--quiet", where, into, cwd=repo)
    elif git("status", "--porcelain", "--untracked-files=no", cwd=where).stdout.strip():
        raise GitError(
            f"{where} has uncommitted changes on {into}: commit or stash them, then merge again"
        )
    merged: list[str] = []
    unchanged: list[str] = []
    touched: dict[str, list[str]] = {}
    try:
        for task_id, ws, files in tasks:
            new = git("rev-list", "--count", f"{into}..{ws.branch}", cwd=where, check=False)
            if new.returncode != 0 or new.stdout.strip() == "0":
                unchanged.append(task_id)
                continue
            done = git(
                "merge",
                "--no-ff",
                "--no-edit",
                "-m",
                f"orch: merge {task_id} ({ws.branch})",
                ws.branch,
                cwd=where,
                check=False,
            )
            if done.returncode != 0:
                files_u = git(
                    "diff", "--name-only", "--diff-filter=U", cwd=where, check=False
                ).stdout.split()
                git("merge", "--abort", cwd=where, check=False)
                others = sorted({t for f in files_u for t in touched.get(f, [])})
                return MergeResult(
                    repo, into, merged, unchanged, Conflict(task_id, files_u or files, others)
                )
            merged.append(task_id)
            for name in files:
                touched.setdefault(name, []).append(task_id)
    finally:
        if temporary:
            git("worktree", "remove", "--force", where, cwd=repo, check=False)
    return MergeResult(repo, into, merged, unchanged)


def _checkout_of(repo: str, branch: str) -> str | None:
    """The worktree where `branch` is checked out, if any."""
    path = None
    for line in git("worktree", "list", "--porcelain", cwd=repo).stdout.splitlines():
        if line.startswith("worktree "):
            path = line[len("worktree ") :]
        elif line == f"branch refs/heads/{branch}":
            return path
    return None


def remove(ws: Workspace, branch: bool) -> bool:
    """Remove a task's worktree (and its branch); whether anything was there."""
    found = False
    if Path(ws.path).exists():
        found = True
        if git("worktree", "remove", "--force", ws.path, cwd=ws.repo, check=False).returncode != 0:
            shutil.rmtree(ws.path, ignore_errors=True)
            git("worktree", "prune", cwd=ws.repo, check=False)
    if branch and git("branch", "-D", ws.branch, cwd=ws.repo, check=False).returncode == 0:
        found = True
    return found


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
