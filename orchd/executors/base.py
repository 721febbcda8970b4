"""The executor seam: where an attempt's process runs (this machine, or a cluster).

Sessions see only `Executor` and `Process`; `local` (the keeper) and `ray` implement it.
"""

from __future__ import annotations

import _thread
import errno
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from orchd.decide import SIGNALS

Started = Callable[["Process | OSError"], None]


def exit_file(log_path: Path) -> Path:
    """Where the keeper writes the exit status of the attempt logging to `log_path`."""
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
    executor); `handle` is the executor's own (locally: the executor itself while the
    keeper is the process's parent; None for a process whose exit status nobody records).
    """

    pid: int
    pgid: int
    start_ticks: int
    handle: Any = None
    log_path: Path | None = None
    ended: bool = False  # found after a restart already ended, with its exit status left behind


# why a start failed when its answer was lost, not its request: the process may run (find says)
UNANSWERED = errno.ECONNABORTED


class Executor(Protocol):
    """The seam between sessions and where processes run (this machine, or a cluster)."""

    def start(
        self,
        argv: list[str],
        env: dict[str, str],
        cwd: str,
        log_path: Path,
        stdin: str | None,
        on_started: Started,
    ) -> None:
        """Start an attempt (argv, never a shell) with its output appended to `log_path`, `stdin` as its input.

        Returns at once; `on_started` is called later, from any thread, with the Process, or with
        the OSError that kept it from starting (EAGAIN and the like: worth retrying).
        """
        ...

    def watch(self, process: Process, on_exit: Callable[[], None]) -> None:
        """Call `on_exit` once, from any thread, when the process has exited (at once if it has)."""
        ...

    def forget(self, process: Process) -> None:
        """The attempt's end is durable in the log: what the executor kept of it may go."""
        ...

    def reap(self, process: Process) -> tuple[int | None, int | None]:
        """After exit: (exit_code, signal), or (None, None) when the status is lost."""
        ...

    def signal(self, process: Process, sig: int) -> None:
        """Signal the attempt's whole process group; a gone group is fine."""
        ...

    def find(
        self, run_id: str, task_id: str, attempt: int, known: Process | None, log_path: Path
    ) -> Process | None:
        """After a restart: the attempt's process if it still runs or left an exit status, else None.

        `known` is what the log recorded of it (None when orchd died before recording its pid).
        """
        ...


def start_on_thread(spawn: Callable[[], Process], on_started: Started) -> None:
    """`Executor.start` for an executor whose spawn blocks: the spawn runs on a thread of its own."""

    def run() -> None:
        try:
            result: Process | OSError = spawn()
        except OSError as exc:
            result = exc
        on_started(result)

    _thread.start_new_thread(run, ())
