"""How full a disk is, in words: what orch says when it cannot write."""

from __future__ import annotations

import os

from orchd.errors import OrchError


def free_bytes(path: str) -> int | None:
    """Bytes free for this user on the filesystem of `path`, None when it cannot be told."""
    try:
        stat = os.statvfs(path)
    except OSError:
        return None
    return stat.f_bavail * stat.f_frsize


def is_full(path: str) -> bool:
    """Whether the filesystem of `path` has (almost) no room left."""
    free = free_bytes(path)
    return free is not None and free < FULL


def full_reason(path: str) -> str:
    """`disk full (0 B free on /home)`."""
    return f"disk full ({_size(free_bytes(path) or 0)} free on {_mount(path)})"


def held_by(failed: OrchError | None, state_dir: str) -> str | None:
    """Why no session starts now: the log cannot be written, or the state directory's disk is
    full (with the free space), or None."""
    if failed is None:
        return f"held: {full_reason(state_dir)}" if is_full(state_dir) else None
    free = free_bytes(state_dir)
    if free is None:
        return f"held: {failed.message}"
    if free < FULL or "full" in failed.message.lower():
        return f"held: {full_reason(state_dir)}"
    return f"held: {failed.message}"


FULL = 1 << 20  # bytes free under which a disk counts as full


def _size(n: int) -> str:
    """`0 B`, `12.5 KiB`, `3.0 GiB`."""
    if n < 1024:
        return f"{n} B"
    value, units = n / 1024, ["KiB", "MiB", "GiB"]
    while value >= 1024 and len(units) > 1:
        value, units = value / 1024, units[1:]
    return f"{value:.1f} {units[0]}"


def _mount(path: str) -> str:
    path = os.path.realpath(path)
    while not os.path.ismount(path) and path != os.path.dirname(path):
        path = os.path.dirname(path)
    return path
