"""Run an attempt as a local process: argv only, own process group, output to a file."""

from __future__ import annotations

import os
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


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
    """A spawned attempt. `popen` is None for a process adopted after a restart."""

    pid: int
    pgid: int
    start_ticks: int
    popen: subprocess.Popen | None = None
    log_path: Path | None = None

    def reap(self) -> tuple[int | None, int | None]:
        """Collect the exit status of an exited process: (exit_code, signal); (None, None) when unknown."""
        if self.popen is not None:
            return _status(self.popen.wait())
        found = read_exit_file(self.log_path) if self.log_path is not None else None
        return found if found is not None else (None, None)


class Executor(Protocol):
    """The seam between sessions and where processes run."""

    def spawn(self, argv: list[str], env: dict[str, str], cwd: str, log_path: Path) -> Process: ...

    def signal(self, process: Process, sig: int) -> None: ...


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

    def __init__(self) -> None:
        self._devnull = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)

    def spawn(self, argv: list[str], env: dict[str, str], cwd: str, log_path: Path) -> Process:
        """Start `argv` (never through a shell) with stdout and stderr appended to `log_path`.

        Raises:
            OSError: the program cannot be started (not found, not executable, bad cwd).
        """
        fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        try:
            popen = subprocess.Popen(
                ["/bin/sh", "-c", KEEPER, str(exit_file(log_path)), *argv], cwd=cwd, env=env,
                stdin=self._devnull, stdout=fd, stderr=fd, process_group=0, close_fds=True,
            )
        finally:
            os.close(fd)
        return Process(popen.pid, popen.pid, start_ticks(popen.pid) or 0, popen, log_path)

    def signal(self, process: Process, sig: int) -> None:
        """Send `sig` to the whole process group of an attempt; a gone group is fine."""
        try:
            os.killpg(process.pgid, sig)
        except (ProcessLookupError, PermissionError):
            pass


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
