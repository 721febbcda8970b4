"""Run an attempt as a local process: argv only, own process group, output to a file."""

from __future__ import annotations

import os
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol

from orchd.reactor import Reactor


# The keeper: every attempt runs under `sh -c KEEPER EXIT_FILE ARGV...`, which runs ARGV (as argv, never
# parsed by the shell), writes its exit status to EXIT_FILE and exits with it. The status so outlives
# orchd: a restarted daemon reads what an attempt that ended while it was down left behind. A program
# that cannot be found ends with 127 and an `orch: ` line, as the worktree wrapper does.
KEEPER = ('command -v "$1" >/dev/null || { echo "orch: cannot start \'$1\': not found (is it installed, and on '
          'orchd\'s PATH?)"; exit 127; }; "$@"; s=$?; echo $s > "$0"; exit $s')
NOT_FOUND, CANNOT_RUN = 127, 126


def exit_file(log_path: Path) -> Path:
    """Where the keeper of the attempt logging to `log_path` writes its exit status."""
    return log_path.with_suffix(".exit")


def read_exit_file(log_path: Path) -> tuple[int | None, int | None] | None:
    """The (exit_code, signal) an attempt's keeper left behind, or None when it left nothing."""
    try:
        text = exit_file(log_path).read_text().strip()
    except OSError:
        return None
    return _status(int(text)) if text.isdigit() else None


def _status(code: int) -> tuple[int | None, int | None]:
    """(exit_code, signal) from a wait status (negative: killed) or a shell's 128+N."""
    if code < 0:
        return None, -code
    if code > 128 and code - 128 in SIGNALS:
        return None, code - 128
    return code, None


@dataclass
class Process:
    """A spawned attempt, as its executor knows it.

    `pid`, `pgid` and `start_ticks` identify it in the log (on its node, for a remote
    executor); `handle` is the executor's own (a Popen; None for a process adopted
    after a restart).
    """

    pid: int
    pgid: int
    start_ticks: int
    handle: Any = None
    log_path: Path | None = None
    ended: bool = False  # found after a restart already ended, with its exit status left behind


class Executor(Protocol):
    """The seam between sessions and where processes run (this machine, or a cluster)."""

    def spawn(self, argv: list[str], env: dict[str, str], cwd: str, log_path: Path,
              stdin: str | None = None) -> Process:
        """Start an attempt (argv, never a shell) with its output appended to `log_path`, `stdin` as its input.

        Raises:
            OSError: it cannot be started.
        """
        ...

    def watch(self, process: Process, on_exit: Callable[[], None]) -> None:
        """Call `on_exit` once, from any thread, when the process has exited (at once if it has)."""
        ...

    def reap(self, process: Process) -> tuple[int | None, int | None]:
        """After exit: (exit_code, signal), or (None, None) when the status is lost."""
        ...

    def signal(self, process: Process, sig: int) -> None:
        """Signal the attempt's whole process group; a gone group is fine."""
        ...

    def find(self, run_id: str, task_id: str, attempt: int, known: Process | None, log_path: Path) -> Process | None:
        """After a restart: the attempt's process if it still runs or left an exit status, else None.

        `known` is what the log recorded of it (None when orchd died before recording its pid).
        """
        ...


def start_ticks(pid: int) -> int | None:
    """The start time of a process in clock ticks since boot (/proc/PID/stat field 22)."""
    # os.open/os.read, not open(): three syscalls instead of seven, on the dispatch path where
    # every syscall is a GIL hand-off between busy threads
    try:
        fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        stat = os.read(fd, 4096)
    except OSError:
        return None
    finally:
        os.close(fd)
    if not stat:
        return None
    # the command name (field 2) may hold spaces and parentheses: split after the last ')'
    return int(stat[stat.rindex(b")") + 2:].split()[19])


class LocalExecutor:
    """Spawns processes on this machine, each the leader of its own process group."""

    def __init__(self, reactor: Reactor) -> None:
        self._reactor = reactor
        self._devnull = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)

    def spawn(self, argv: list[str], env: dict[str, str], cwd: str, log_path: Path,
              stdin: str | None = None) -> Process:
        """Start `argv` (never through a shell) with stdout and stderr appended to `log_path`.

        `stdin` is written to a file beside the log (0600) that the process reads as its input.

        Raises:
            OSError: the program cannot be started (not found, not executable, bad cwd).
        """
        fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        source = self._devnull
        try:
            if stdin is not None:
                path = log_path.with_suffix(".stdin")
                with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600), "w") as f:
                    f.write(stdin)
                source = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            popen = subprocess.Popen(
                ["/bin/sh", "-c", KEEPER, str(exit_file(log_path)), *argv], cwd=cwd, env=env,
                stdin=source, stdout=fd, stderr=fd, process_group=0, close_fds=True,
            )
        finally:
            os.close(fd)
            if source != self._devnull:
                os.close(source)
        return Process(popen.pid, popen.pid, start_ticks(popen.pid) or 0, popen, log_path)

    def watch(self, process: Process, on_exit: Callable[[], None]) -> None:
        if process.ended or not self._reactor.on_exit(process.pid, on_exit):
            on_exit()

    def reap(self, process: Process) -> tuple[int | None, int | None]:
        if process.handle is not None:
            return _status(process.handle.wait())
        found = read_exit_file(process.log_path) if process.log_path is not None else None
        return found if found is not None else (None, None)

    def signal(self, process: Process, sig: int) -> None:
        if process.pgid <= 0:
            return
        try:
            os.killpg(process.pgid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def find(self, run_id: str, task_id: str, attempt: int, known: Process | None, log_path: Path) -> Process | None:
        if known is not None and alive(known.pid, known.start_ticks):
            return Process(known.pid, known.pgid, known.start_ticks, log_path=log_path)
        if known is None and (found := find_attempt(run_id, task_id, attempt)) is not None:
            return Process(found.pid, found.pgid, found.start_ticks, log_path=log_path)
        if read_exit_file(log_path) is not None:  # it ended while orchd was down: its group is gone
            return Process(known.pid if known else 0, 0, 0, log_path=log_path, ended=True)
        return None


def alive(pid: int, ticks: int) -> bool:
    """Whether the process `pid` still runs and is the one that started at `ticks`."""
    return ticks != 0 and start_ticks(pid) == ticks


def find_attempt(run_id: str, task_id: str, attempt: int) -> Process | None:
    """The keeper of an attempt that started but whose pid never reached the log (orchd died in between).

    Every attempt's environment names it (ORCH_RUN_ID, ORCH_TASK_ID, ORCH_ATTEMPT); its keeper is
    the leader of its process group.
    """
    wanted = {f"ORCH_RUN_ID={run_id}".encode(), f"ORCH_TASK_ID={task_id}".encode(),
              f"ORCH_ATTEMPT={attempt}".encode()}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        pid = int(name)
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                environ = set(f.read().split(b"\0"))
            pgid = os.getpgid(pid)
        except OSError:
            continue
        if wanted <= environ and pgid == pid:
            ticks = start_ticks(pid)
            if ticks:
                return Process(pid, pgid, ticks)
    return None


SIGNALS = {sig.value: sig.name for sig in signal.Signals}
