"""Files that grow, told as they grow: Linux inotify on the reactor's thread.

A session whose agent streams machine-readable output asks to hear when its log
grows, then reads only what is new (from its own offset): the daemon follows
hundreds of agent streams live without polling and without reading a file twice.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import struct
import threading
from collections.abc import Callable
from pathlib import Path

from orchd.reactor import Reactor

log = logging.getLogger(__name__)

IN_MODIFY = 0x00000002
IN_IGNORED = 0x00008000
_EVENT = struct.Struct("iIII")  # wd, mask, cookie, len (then len bytes of name)

_libc = ctypes.CDLL(None, use_errno=True)


class Growth:
    """Calls a callback (on the reactor's thread) each time a watched file may have grown."""

    def __init__(self, reactor: Reactor) -> None:
        self._reactor = reactor
        self._lock = threading.Lock()
        self._callbacks: dict[int, Callable[[], None]] = {}  # watch descriptor -> callback
        self._fd = _libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self._fd < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"inotify_init1: {os.strerror(err)}")
        reactor.add_reader(self._fd, self._readable)

    def watch(self, path: Path, callback: Callable[[], None]) -> int | None:
        """Call `callback` whenever `path` is written to; the watch's id, None when it cannot be
        watched (the caller then learns of growth at its next look)."""
        wd = _libc.inotify_add_watch(self._fd, os.fsencode(path), IN_MODIFY)
        if wd < 0:
            err = ctypes.get_errno()
            if err != errno.ENOENT:
                log.warning("cannot watch %s: %s", path, os.strerror(err))
            return None
        with self._lock:
            self._callbacks[wd] = callback
        return wd

    def unwatch(self, wd: int) -> None:
        with self._lock:
            if self._callbacks.pop(wd, None) is None:
                return
        _libc.inotify_rm_watch(self._fd, wd)

    def close(self) -> None:
        self._reactor.remove_reader(self._fd)
        os.close(self._fd)

    def _readable(self) -> None:
        grown: set[int] = set()
        while True:
            try:
                data = os.read(self._fd, 1 << 16)
            except BlockingIOError:
                break
            at = 0
            while at + _EVENT.size <= len(data):
                wd, mask, _, size = _EVENT.unpack_from(data, at)
                at += _EVENT.size + size
                if mask & IN_IGNORED:  # the file is gone, or the watch was removed
                    with self._lock:
                        self._callbacks.pop(wd, None)
                else:
                    grown.add(wd)
        for wd in grown:  # many writes since the last look: one call each
            with self._lock:
                callback = self._callbacks.get(wd)
            if callback is not None:
                callback()
