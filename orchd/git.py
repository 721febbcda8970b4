"""git, run the one way orch runs it, and the one definition of a task's change.

Every git command orch runs goes through `git()` (argv, never a shell; no prompt; a timeout), and
every command that writes a commit goes through `write()`, which supplies an identity when git has
none: the repository's, else the user's, else orch's own (`orch <orch@localhost>`).

A task's change is defined once, here, for `commit`, `diff`, `results`' files, `merge` and conflict
prediction alike: what the task's worktree holds now, against what it held when the attempt's
preparation (the files `copy` brought in and what `setup` made) was done. That starting point is
recorded as a tree in the worktree's own ref `refs/worktree/orch/start`; `change_tree` lays what
changed since then onto the branch's commit, so setup's leftovers never reach the branch.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

from orchd.errors import ErrorCode, OrchError

GIT_TIMEOUT = 300.0  # seconds for one git command
START_REF = "refs/worktree/orch/start"  # per worktree: removed with it, and keeps its tree from gc
ORCH_IDENTITY = ("orch", "orch@localhost")


class GitError(OrchError):
    """A git command failed; the message is git's own."""


def git(
    *args: str, cwd: str, check: bool = True, env: dict[str, str] | None = None, input: str = ""
) -> subprocess.CompletedProcess[str]:
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
            input=input,
            env={**os.environ, "GIT_TERMINAL_PROMPT": "0", **(env or {})},
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
        raise GitError(f"git {' '.join(args[:2])} failed: {said(result)}", ErrorCode.CONFLICT)
    return result


def said(result: subprocess.CompletedProcess[str]) -> str:
    """What a failed git command said: its last line of error (`fatal: ...`), or its exit code."""
    lines = [line for line in (result.stderr or result.stdout).strip().splitlines() if line]
    fatal = [line for line in lines if line.startswith(("fatal:", "error:"))]
    return (fatal or lines or [f"exit {result.returncode}"])[-1].strip()


def identity(cwd: str) -> list[str]:
    """`-c` options that give git an identity when it has none (none configured, none in the
    environment): the repository's or the user's own identity always wins."""
    if git("var", "GIT_COMMITTER_IDENT", cwd=cwd, check=False).returncode == 0:
        return []
    options = []
    for key, value in zip(("user.name", "user.email"), ORCH_IDENTITY):
        if not git("config", key, cwd=cwd, check=False).stdout.strip():
            options += ["-c", f"{key}={value}"]
    return options


def write(*args: str, cwd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """`git ARGS` for a command that may write a commit (commit-tree, merge): with an identity."""
    return git(*identity(cwd), *args, cwd=cwd, check=check)


def has_ref(ref: str, cwd: str) -> bool:
    """Whether `ref` names an object in the repository of `cwd`."""
    return git("rev-parse", "--verify", "--quiet", ref, cwd=cwd, check=False).returncode == 0


def rev(ref: str, cwd: str) -> str:
    """The object id `ref` names."""
    return git("rev-parse", "--verify", ref, cwd=cwd).stdout.strip()


# ------------------------------------------------------------ trees of a worktree, without its index


def snapshot(worktree: str) -> str:
    """The tree of everything in `worktree` as it is (tracked or not, .gitignore respected).

    It is built in an index of its own: the worktree's index (and so `git status`) is left alone.
    """
    with tempfile.TemporaryDirectory(prefix="orch-index-") as tmp:
        env = {"GIT_INDEX_FILE": str(Path(tmp, "index"))}
        git("read-tree", "HEAD", cwd=worktree, env=env)  # a start: only what differs is hashed
        git("add", "-A", "--", ":(top)", cwd=worktree, env=env)
        return git("write-tree", cwd=worktree, env=env).stdout.strip()


def record_start(worktree: str) -> str:
    """Record what the worktree holds now as the task's starting point; its tree."""
    tree = snapshot(worktree)
    git("update-ref", START_REF, tree, cwd=worktree)
    return tree


def forget_start(worktree: str) -> None:
    """Drop the recorded starting point (the worktree is about to be made afresh)."""
    git("update-ref", "-d", START_REF, cwd=worktree, check=False)


def started(worktree: str) -> bool:
    """Whether the worktree's starting point was recorded (its preparation finished)."""
    return has_ref(START_REF, worktree)


def changed_paths(old: str, new: str, cwd: str) -> list[tuple[str, str, str]]:
    """(status, path, `mode sha` of the new side) of each file that differs from tree `old` to `new`."""
    out = git("diff-tree", "-r", "-z", "--no-renames", old, new, cwd=cwd).stdout.split("\0")
    changes = []
    for meta, path in zip(out[0::2], out[1::2]):  # ":oldmode newmode oldsha newsha status", path
        _, new_mode, _, new_sha, status = meta.lstrip(":").split(" ")
        changes.append((status, path, f"{new_mode} {new_sha}"))
    return changes


def change_tree(worktree: str, onto: str, leave_out: Sequence[str] = ()) -> str:
    """The tree of the task's change laid onto the commit `onto` (the run's base): whatever changed
    in the worktree since its starting point (since HEAD, where none was recorded), except the
    paths in `leave_out` (relative to the worktree's top: the files `copy` brought in).

    Laid onto the base, not onto HEAD: what an agent committed by itself is part of the worktree
    as it is, and setup's leftovers stay out even if it committed them. A file that setup changed
    and the agent changed again is taken whole, as the agent left it.
    """
    start = git("rev-parse", "--verify", "--quiet", START_REF, cwd=worktree, check=False)
    base = start.stdout.strip() if start.returncode == 0 else rev("HEAD^{tree}", worktree)
    now = snapshot(worktree)
    kept = [k.rstrip("/") for k in leave_out]
    lines = [
        f"{'0 ' + '0' * 40 if status == 'D' else entry}\t{path}"
        for status, path, entry in changed_paths(base, now, worktree)
        if not any(path == k or path.startswith(f"{k}/") for k in kept)
    ]
    with tempfile.TemporaryDirectory(prefix="orch-index-") as tmp:
        env = {"GIT_INDEX_FILE": str(Path(tmp, "index"))}
        git("read-tree", onto, cwd=worktree, env=env)
        if lines:
            git(
                "update-index", "--index-info", cwd=worktree, env=env, input="\n".join(lines) + "\n"
            )
        return git("write-tree", cwd=worktree, env=env).stdout.strip()


def restore(worktree: str, tree: str) -> list[str]:
    """Put the worktree's files back as they are in `tree` (a `snapshot`): files changed or removed
    since are checked out of it, files added since are removed. The paths it put back.
    """
    changes = changed_paths(tree, snapshot(worktree), worktree)
    back = [path for status, path, _ in changes if status != "A"]
    for start in range(0, len(back), 1000):  # argv stays short
        chunk = back[start : start + 1000]
        git("restore", f"--source={tree}", "--worktree", "--", *chunk, cwd=worktree)
    for status, path, _ in changes:
        if status == "A":
            Path(worktree, path).unlink(missing_ok=True)
    return [path for _, path, _ in changes]
