"""The attempt's own process, when there is more to do than start the agent: prepare, run the agent,
then verify its work.

`python -m orchd.attempt SPEC -- ARGV...` is what orchd starts for an attempt of a task that has a
worktree or verify commands (any other task's agent is started directly). Everything it does is
part of the attempt: logged to its log, stopped by its timeout and by cancel, and, with the keeper
as its parent, carried on through a crash of orchd.

1. Prepare (a worktree task): create the worktree (or reset it for a fresh attempt), copy the
   plan's `copy` files in, run the `setup` steps, and record what the worktree then holds as the
   task's starting point (orchd/git.py): none of it is part of the task's change. A resumed
   attempt finds its worktree prepared and keeps it as the previous attempt left it.
2. Without verify commands, exec the agent: the attempt's process becomes the agent.
3. With them, run the agent as a child in the same process group (a stop signals the whole
   group), and only if it exits 0 run each check in turn, each with `verify_timeout`, its output
   between marker lines (orchd/verify.py). What the checks change in a worktree is put back as
   the agent left it, and the log says so: a check checks, it never adds to the task's change.

Exit status: the agent's own when it failed (or the signal that ended it), 0 when every check
passed, VERIFY_FAILED when one did not; SETUP_FAILED, CANNOT_RUN or NOT_FOUND (with a last line
`orch: ...`) when the attempt could not get as far as the agent.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType
from typing import IO

import msgspec

from orchd import git, verify
from orchd.git import GitError
from orchd.workspace import Workspace

# Exit codes of the attempt's process; its last output line starts with "orch: ".
VERIFY_FAILED, SETUP_FAILED, CANNOT_RUN, NOT_FOUND = 122, 125, 126, 127
STOPS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


class Prep(msgspec.Struct, frozen=True):
    """How to prepare a task's worktree before its agent starts."""

    workspace: Workspace
    workdir: str  # files to copy are taken from here
    copy: list[str] = []
    setup: list[list[str]] = []
    fresh: bool = False  # reset an existing worktree to the base (a retry that does not resume)


class Wrapper(msgspec.Struct, frozen=True):
    """What the attempt's process does around its agent."""

    cwd: str  # where the agent and its checks run
    prep: Prep | None = None
    verify: list[list[str]] = []
    verify_timeout: float = 600.0
    grace: float = 5.0  # seconds between TERM and KILL for a check that outlives its timeout


def wrap(wrapper: Wrapper, argv: list[str]) -> list[str]:
    """The argv of the attempt's process, which runs `argv` as its agent."""
    spec = msgspec.json.encode(wrapper).decode()
    return [sys.executable, "-m", "orchd.attempt", spec, "--", *argv]


def start_dir(wrapper: Wrapper) -> str:
    """Where the attempt's process starts: the worktree does not exist before it makes it."""
    return wrapper.prep.workdir if wrapper.prep is not None else wrapper.cwd


# ------------------------------------------------------------ 1. prepare


class SetupFailed(Exception):
    """A file to copy is missing or a setup step failed."""


def prepare(prep: Prep) -> None:
    """Create (or reset) the worktree, copy files in, run the setup steps, record the start.

    Raises:
        GitError: the worktree cannot be made.
        SetupFailed: a file to copy is missing or a setup step failed.
    """
    ws = prep.workspace
    path = Path(ws.path)
    common = git.git("rev-parse", "--git-common-dir", cwd=ws.repo).stdout.strip()
    # git worktree add is not safe in parallel
    with open(Path(ws.repo, common, "orch.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (path / ".git").exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            git.git("worktree", "prune", cwd=ws.repo)
            if git.has_ref(f"refs/heads/{ws.branch}", ws.repo):
                git.git("worktree", "add", "--quiet", str(path), ws.branch, cwd=ws.repo)
            else:
                git.git(
                    "worktree", "add", "--quiet", "-b", ws.branch, str(path), ws.base, cwd=ws.repo
                )
            print(f"orch: worktree {path} on branch {ws.branch}", flush=True)
        elif prep.fresh:
            git.forget_start(str(path))
            git.git("reset", "--quiet", "--hard", ws.base, cwd=str(path))
            git.git("clean", "-fdq", cwd=str(path))
            print(f"orch: worktree reset to {ws.base[:12]} for a fresh attempt", flush=True)
        elif git.started(str(path)):
            print("orch: worktree kept as the previous attempt left it", flush=True)
            return
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
    git.record_start(str(path))
    if prep.copy or prep.setup:
        print(
            "orch: what copy and setup left is the task's starting point, not its change",
            flush=True,
        )


# ------------------------------------------------------------ 2. the agent


class Stop:
    """Remembers a stop signal (TERM, INT, HUP) instead of dying of it: the agent and the check in
    the same process group got it too, and the attempt's process ends once they have."""

    def __init__(self) -> None:
        self.signum: int | None = None
        for sig in STOPS:
            signal.signal(sig, self._caught)

    def _caught(self, signum: int, frame: FrameType | None) -> None:
        self.signum = self.signum or signum


def die_as(code: int) -> int:
    """End this process as a child that ended with `code` did (a negative code: by that signal)."""
    if code < 0:
        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    return code if code >= 0 else 128 - code


def cannot_start(argv: list[str], exc: OSError) -> int:
    """Say why the agent cannot start; the exit code that tells it."""
    if isinstance(exc, FileNotFoundError):
        print(
            f"orch: cannot start {argv[0]!r}: not found (is it installed, and on orchd's PATH?)",
            flush=True,
        )
        return NOT_FOUND
    print(f"orch: cannot start {argv[0]!r}: {exc.strerror or exc}", flush=True)
    return CANNOT_RUN


def run_checked(wrapper: Wrapper, argv: list[str]) -> int:
    """Run the agent as a child, then, if it exited 0, its checks; the attempt's exit status."""
    stop = Stop()
    try:
        agent = subprocess.Popen(argv)
    except OSError as exc:
        return cannot_start(argv, exc)
    code = agent.wait()
    if stop.signum is not None:
        return die_as(-stop.signum)
    if code != 0:
        return die_as(code)
    return run_checks(wrapper, stop)


# ------------------------------------------------------------ 3. verify


def run_checks(wrapper: Wrapper, stop: Stop) -> int:
    """Run the checks in turn until one does not pass; then put back what they changed."""
    n = len(wrapper.verify)
    print(f"{_own_line()}{verify.start(n)}", flush=True)
    worktree = wrapper.prep.workspace.path if wrapper.prep is not None else None
    before = None
    if worktree is not None:
        try:
            before = git.snapshot(worktree)
        except GitError as exc:  # the checks still run; what they change then stays
            print(f"orch: cannot record the worktree before the checks: {exc.message}", flush=True)
    failure = None
    for i, argv in enumerate(wrapper.verify, 1):
        print(verify.check(i, n, argv), flush=True)
        began = time.monotonic()
        how = run_check(argv, wrapper.cwd, wrapper.verify_timeout, wrapper.grace)
        if stop.signum is not None:
            break
        if how is not None:
            print(verify.check_failed(i, n, how), flush=True)
            failure = (argv, how)
            break
        print(verify.check_passed(i, n, time.monotonic() - began), flush=True)
    if worktree is not None and before is not None:
        put_back(worktree, before)
    if stop.signum is not None:
        return die_as(-stop.signum)
    if failure is not None:
        print(verify.failed(*failure), flush=True)
        return VERIFY_FAILED
    print(verify.passed(n), flush=True)
    return 0


def _own_line() -> str:
    """A newline when the log does not end with one (the agent's last line had none): the checks'
    first marker must start a line of its own to be read back."""
    try:  # the log is this process's stdout, opened write-only: read it through /proc
        if not stat.S_ISREG(os.fstat(1).st_mode):  # a pipe (Ray): nothing to read back
            return ""
        fd = os.open("/proc/self/fd/1", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return ""
    try:
        size = os.fstat(fd).st_size
        return "\n" if size and os.pread(fd, 1, size - 1) != b"\n" else ""
    except OSError:
        return ""
    finally:
        os.close(fd)


def run_check(
    argv: list[str],
    cwd: str,
    timeout: float,
    grace: float = 5.0,
    *,
    own_group: bool = False,
    env: dict[str, str] | None = None,
    output: IO[bytes] | None = None,
) -> str | None:
    """Run one check (or setup step) in `cwd`; None when it exited 0, else how it ended (`exit 1`,
    `killed by SIGSEGV`, `timed out after 600s`, `not found`, `cannot start: WHY`).

    Inside an attempt, it runs in the attempt's process group (a stop reaches it); `own_group`
    (orchd's merge) gives it a group of its own, so that its timeout ends all it started.
    `output`: where its output goes (default: this process's, the attempt's log).
    """
    try:
        check = subprocess.Popen(
            argv,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT if output is not None else None,
            env=None if env is None else {**os.environ, **env},
            start_new_session=own_group,
        )
    except FileNotFoundError:
        return "not found"
    except OSError as exc:
        return f"cannot start: {exc.strerror or exc}"
    try:
        code = check.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        end_check(check, grace, own_group)
        return f"timed out after {timeout:g}s"
    if code < 0:
        name = signal.Signals(-code).name if -code in signal.valid_signals() else -code
        return f"killed by {name}"
    return None if code == 0 else f"exit {code}"


def end_check(check: subprocess.Popen, grace: float, own_group: bool) -> None:
    """TERM a check that outlived its timeout, with what it started: its own group, or this
    attempt's group while this process ignores the signal; then KILL it after `grace` seconds."""
    if own_group:
        _signal_group(check.pid, signal.SIGTERM)
    elif os.getpgrp() == os.getpid():
        handler = signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            os.killpg(os.getpgrp(), signal.SIGTERM)
        finally:
            signal.signal(signal.SIGTERM, handler)
    else:
        check.terminate()
    try:
        check.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        if own_group:
            _signal_group(check.pid, signal.SIGKILL)
        check.kill()
        check.wait()


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def put_back(worktree: str, before: str) -> None:
    """Undo what the checks changed in the worktree, and say so."""
    try:
        changed = git.restore(worktree, before)
    except GitError as exc:
        print(f"orch: could not put back what the checks changed: {exc.message}", flush=True)
        return
    if changed:
        shown = ", ".join(changed[:10]) + (
            f" and {len(changed) - 10} more" if len(changed) > 10 else ""
        )
        print(
            f"orch: the checks changed {len(changed)} file{'s' * (len(changed) != 1)} ({shown}); "
            "put back as the agent left them",
            flush=True,
        )


def main(args: list[str]) -> int:
    """`python -m orchd.attempt SPEC -- ARGV...`."""
    wrapper = msgspec.json.decode(args[0], type=Wrapper)
    argv = args[2:]
    if wrapper.prep is not None:
        try:
            prepare(wrapper.prep)
        except (GitError, SetupFailed) as exc:
            print(f"orch: {exc}", flush=True)
            return SETUP_FAILED
    sys.stdout.flush()
    os.chdir(wrapper.cwd)
    if wrapper.verify:
        return run_checked(wrapper, argv)
    try:
        os.execvp(argv[0], argv)
    except OSError as exc:
        return cannot_start(argv, exc)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
