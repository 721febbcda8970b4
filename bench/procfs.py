"""What /proc says about a process: memory, threads, CPU time, children, the environment it runs with.

Linux only, stdlib only; every reader returns None (or nothing) for a process that is gone.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass

TICKS = os.sysconf("SC_CLK_TCK")


def status_fields(pid: int) -> dict[str, str]:
    """/proc/PID/status as a dict ("VmRSS" -> "12345 kB"); empty when the process is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)
    except OSError:
        return {}


def _kib(value: str | None) -> float | None:
    return int(value.split()[0]) / 1024 if value else None


def rss_mib(pid: int) -> float | None:
    """Resident memory now, MiB."""
    return _kib(status_fields(pid).get("VmRSS"))


def peak_rss_mib(pid: int) -> float | None:
    """The highest resident memory the process has had, MiB (VmHWM)."""
    return _kib(status_fields(pid).get("VmHWM"))


def threads(pid: int) -> int | None:
    value = status_fields(pid).get("Threads")
    return int(value) if value else None


def cpu_seconds(pid: int) -> float | None:
    """utime + stime of the process (all its threads), seconds."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / TICKS  # fields 14 and 15 of proc(5)


@dataclass(frozen=True)
class CpuUse:
    """CPU time a process used over a wall-clock window."""

    seconds: float  # the window
    cpu: float  # CPU seconds used in it

    @property
    def percent(self) -> float:
        """Of one core."""
        return 100.0 * self.cpu / self.seconds if self.seconds else 0.0


def cpu_over(pid: int, seconds: float) -> CpuUse | None:
    """CPU the process uses over the next `seconds` (it sleeps here: this is the measurement window)."""
    before, start = cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)
    after, end = cpu_seconds(pid), time.monotonic()
    if before is None or after is None:
        return None
    return CpuUse(end - start, after - before)


def pids() -> Iterator[int]:
    for name in os.listdir("/proc"):
        if name.isdigit():
            yield int(name)


def with_env(name: str, value: str) -> list[int]:
    """Processes of this user whose environment has NAME=VALUE (e.g. ORCH_RUN_ID=RUN): a run's agents."""
    needle = f"{name}={value}".encode()
    found = []
    for pid in pids():
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                if needle in f.read().split(b"\0"):
                    found.append(pid)
        except OSError:  # gone, or another user's
            continue
    return found


def children(pid: int) -> list[int]:
    """The direct children of a process (every thread's)."""
    found: list[int] = []
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                found.extend(int(c) for c in f.read().split())
        except OSError:
            continue
    return found
