"""One thread for every wait of the daemon: timers (a heap), process exits (pidfds), readable sockets.

Nothing in orchd polls. A timer or a process exit calls a callback on this
thread; callbacks only `tell` an actor, so they are quick.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import os
import select
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

Callback = Callable[[], None]
MAX_POLL = 3600.0  # seconds the loop sleeps at most, whatever the next timer


class Timer:
    """A scheduled callback; `cancel()` makes it a no-op."""

    __slots__ = ("callback", "cancelled", "when")

    def __init__(self, when: float, callback: Callback) -> None:
        self.when, self.callback, self.cancelled = when, callback, False

    def cancel(self) -> None:
        self.cancelled = True


class Reactor:
    """Timers on the monotonic clock, and one-shot callbacks on process exit."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Timer]] = []
        self._counter = itertools.count()
        self._epoll = select.epoll()
        self._exits: dict[int, tuple[int, Callback]] = {}  # pidfd -> (pid, callback)
        self._readers: dict[int, Callback] = {}  # fd -> callback, called each time it is readable
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._epoll.register(self._wake_r, select.EPOLLIN)
        self._lock = threading.Lock()
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name="reactor", daemon=True)

    def start(self) -> Reactor:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping = True
        self._wake()
        self._thread.join()

    def call_later(self, delay: float, callback: Callback) -> Timer:
        """Run `callback` on the reactor thread after `delay` seconds."""
        timer = Timer(time.monotonic() + max(0.0, delay), callback)
        with self._lock:
            heapq.heappush(self._heap, (timer.when, next(self._counter), timer))
            earliest = self._heap[0][2] is timer
        if earliest:  # the loop sleeps until the earliest timer: wake it only if that changed
            self._wake()
        return timer

    def call_at_wall(self, when: float, callback: Callback) -> Timer:
        """Run `callback` at the wall-clock instant `when` (unix seconds)."""
        return self.call_later(when - time.time(), callback)

    def on_exit(self, pid: int, callback: Callback) -> bool:
        """Call `callback` once when process `pid` exits; False when it is already gone."""
        if pid <= 0:
            return False
        try:
            pidfd = os.pidfd_open(pid)
        except OSError:  # gone already (ProcessLookupError), or not ours to watch
            return False
        with self._lock:
            self._exits[pidfd] = (pid, callback)
        self._epoll.register(pidfd, select.EPOLLIN)
        return True

    def add_reader(self, fd: int, callback: Callback) -> None:
        """Call `callback` on the reactor thread whenever `fd` is readable, until `remove_reader`."""
        with self._lock:
            self._readers[fd] = callback
        self._epoll.register(fd, select.EPOLLIN)

    def remove_reader(self, fd: int) -> None:
        with self._lock:
            if self._readers.pop(fd, None) is None:
                return
        self._epoll.unregister(fd)

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"x")
        except BlockingIOError:
            pass  # the pipe is full, so the loop is awake anyway

    def _next_timeout(self) -> float:
        with self._lock:
            while self._heap and self._heap[0][2].cancelled:
                heapq.heappop(self._heap)
            if not self._heap:
                return -1
            # epoll.poll takes at most ~24.8 days (2**31 ms): a later timer is awaited in steps
            return min(MAX_POLL, max(0.0, self._heap[0][0] - time.monotonic()))

    def _due(self) -> list[Timer]:
        now = time.monotonic()
        due = []
        with self._lock:
            while self._heap and self._heap[0][0] <= now:
                timer = heapq.heappop(self._heap)[2]
                if not timer.cancelled:
                    due.append(timer)
        return due

    def _loop(self) -> None:
        while not self._stopping:
            closing = []  # pidfds closed after the batch: no number in its events may be reused meanwhile
            for fd, _ in self._epoll.poll(self._next_timeout()):
                if fd == self._wake_r:
                    try:
                        while os.read(self._wake_r, 4096):
                            pass
                    except BlockingIOError:
                        pass
                    continue
                with self._lock:
                    reader = self._readers.get(fd)
                    exit = None if reader is not None else self._exits.pop(fd, None)
                if reader is not None:
                    self._run(reader)
                    continue
                if exit is None:  # a reader removed since this poll began
                    continue
                callback = exit[1]
                self._epoll.unregister(fd)
                closing.append(fd)
                self._run(callback)
            for fd in closing:
                os.close(fd)
            for timer in self._due():
                self._run(timer.callback)

    @staticmethod
    def _run(callback: Callback) -> None:
        try:
            callback()
        except Exception:
            log.exception("reactor callback failed")
