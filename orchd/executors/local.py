"""Run an attempt as a local process: argv only, own process group, output to a file."""

from __future__ import annotations

import os
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


@dataclass
class Process:
    """A spawned attempt. `popen` is None for a process adopted after a restart."""

    pid: int
    pgid: int
    start_ticks: int
    popen: subprocess.Popen | None = None

    def reap(self) -> tuple[int | None, int | None]:
        """Collect the exit status of an exited process: (exit_code, signal)."""
        if self.popen is None:
            return None, None
        code = self.popen.wait()
        return (None, -code) if code < 0 else (code, None)


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
                argv, cwd=cwd, env=env, stdin=self._devnull, stdout=fd, stderr=fd,
                process_group=0, close_fds=True,
            )
        finally:
            os.close(fd)
        return Process(popen.pid, popen.pid, start_ticks(popen.pid) or 0, popen)

    def signal(self, process: Process, sig: int) -> None:
        """Send `sig` to the whole process group of an attempt; a gone group is fine."""
        try:
            os.killpg(process.pgid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def alive(pid: int, ticks: int) -> bool:
    """Whether the process `pid` still runs and is the one that started at `ticks`."""
    return ticks != 0 and start_ticks(pid) == ticks


SIGNALS = {sig.value: sig.name for sig in signal.Signals}
