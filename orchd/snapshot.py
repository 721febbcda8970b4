"""Snapshots of the folded state, so that a start replays only the log's tail.

The log stays the truth: a snapshot is the fold of its first `seq` events,
written by this very version of orch (it is discarded otherwise), and it is
used only if the log still holds an event `seq` with the same chain hash, which
pins the whole prefix it was folded from. A missing, stale or unreadable
snapshot just means a full replay. Written atomically (a temporary file, fsync,
rename), at a clean stop and after a start that had a long tail to fold.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from pathlib import Path

import msgspec

from orchd import __version__
from orchd import state as st

log = logging.getLogger(__name__)

FORMAT = 1
WORTH_SAVING = 100_000  # events folded at a start past which the start saves a new snapshot


class Snapshot(msgspec.Struct, gc=False):
    format: int
    orch: str  # the version that folded it: another version may fold differently
    seq: int
    hash: bytes  # the chain hash of event `seq`
    state: st.State


def encode(state: st.State, hash: bytes) -> bytes:
    """The snapshot of `state` (folded up to `state.seq`, whose event has `hash`)."""
    return msgspec.msgpack.encode(Snapshot(FORMAT, __version__, state.seq, hash, state))


def write(path: Path, data: bytes) -> None:
    """Put the encoded snapshot `data` at `path`, atomically and durably."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def load(path: Path, conn: sqlite3.Connection) -> st.State | None:
    """The snapshot's state if it is this version's and the log still agrees with it, else None."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        log.warning("cannot read the snapshot %s (%s): replaying the whole log", path, exc)
        return None
    try:
        snap = msgspec.msgpack.decode(data, type=Snapshot)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        log.warning("the snapshot %s is unreadable (%s): replaying the whole log", path, exc)
        return None
    if snap.format != FORMAT or snap.orch != __version__:
        log.info("the snapshot was written by orch %s: replaying the whole log", snap.orch)
        return None
    row = conn.execute("SELECT hash FROM events WHERE seq = ?", (snap.seq,)).fetchone()
    if row is None or row[0] != snap.hash or snap.state.seq != snap.seq:
        log.warning("the snapshot %s does not match the log at event %d: replaying the whole log", path, snap.seq)
        return None
    return snap.state
