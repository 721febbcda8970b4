"""What the kernel tells of a process (its start time, which tells a pid reused from the one
recorded; whether it still runs), and which file a program name runs. The standard library only: the keeper uses it."""

from __future__ import annotations

import errno
import os
import shutil


def start_ticks(pid: int) -> int | None:
    """The start time of a process in clock ticks since boot (/proc/PID/stat field 22)."""
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
    return int(stat[stat.rindex(b")") + 2 :].split()[19])


def program(argv0: str, search: str) -> str:
    """The file to execute for `argv0`: searched on `search` (the attempt's own PATH), as execvpe would.

    Raises:
        FileNotFoundError: nothing on that PATH is called so.
    """
    if os.sep in argv0:
        return argv0
    found = shutil.which(argv0, path=search)
    if found is None:
        raise FileNotFoundError(
            errno.ENOENT, "not found (is it installed, and on orchd's PATH?)", argv0
        )
    return found


def alive(pid: int, ticks: int) -> bool:
    """Whether the process `pid` still runs (not a zombie) and is the one that started at `ticks`."""
    if ticks == 0 or start_ticks(pid) != ticks:
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rpartition(b")")[2].split()[0]
    except (OSError, IndexError):
        return False
    return state not in (b"Z", b"X")
