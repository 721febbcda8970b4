"""The journal: the one writer of the event log, with group commit.

Actors hand it events with a callback; the journal thread takes every append
waiting in its mailbox, writes them in one transaction (one fsync), folds the
records into the daemon's state, wakes long-polling readers, then calls the
callbacks (which only `tell` actors). Persist, then act: a callback runs only
once its events are durable.

An append may be `lazy`: nothing waits for it (an attempt's pid, recorded once
it started), so it goes with the next commit, or LAZY seconds later when none
comes. An fsync of its own would delay the commits that something does wait for
(the next attempt's launch) by up to a whole fsync.
"""

from __future__ import annotations

import logging
import queue
import sqlite3
import threading
import time
from typing import Callable, Sequence

from orchd import events as ev
from orchd import state as st
from orchd import store
from orchd.errors import ErrorCode, OrchError

log = logging.getLogger(__name__)

Done = Callable[[list[ev.Record] | None, OrchError | None], None]

_STOP = object()
MAX_BATCH = 4096
LAZY = 0.05  # seconds a lazy append waits for a commit to go with


class Journal:
    """Single writer of events.db; owns the daemon's folded state."""

    def __init__(self, conn: sqlite3.Connection, state: st.State) -> None:
        self._conn = conn
        self._tail = store.tail(conn)
        self.state = state
        self.lock = threading.RLock()  # guards `state` for readers on other threads
        self.committed = threading.Condition(threading.Lock())  # notified after each commit
        self._mailbox: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name="journal", daemon=True)
        self.failed: OrchError | None = None  # the last write error, until a write succeeds

    def start(self) -> "Journal":
        self._thread.start()
        return self

    def append(self, events: Sequence[ev.Event], done: Done | None = None, lazy: bool = False) -> None:
        """Persist `events` together; then call `done(records, None)` (or `done(None, error)`).
        `lazy`: no hurry, it may wait for the next commit (at most LAZY seconds)."""
        self._mailbox.put((events, done, lazy))

    def stop(self) -> None:
        """Write what is queued, then stop the thread."""
        self._mailbox.put(_STOP)
        self._thread.join()

    def _loop(self) -> None:
        stopping, batch, due = False, [], 0.0
        while not stopping:
            try:  # wait for an append; with only lazy ones in hand, until they are due
                item = self._mailbox.get(timeout=max(0.0, due - time.monotonic())) if batch else self._mailbox.get()
            except queue.Empty:
                self._commit(batch)
                batch = []
                continue
            if not batch:
                due = time.monotonic() + LAZY
            batch.append(item)
            while len(batch) < MAX_BATCH:
                try:
                    batch.append(self._mailbox.get_nowait())
                except queue.Empty:
                    break
            if _STOP in batch:
                stopping = True
                batch = [item for item in batch if item is not _STOP]
            if batch and (stopping or len(batch) >= MAX_BATCH or not all(lazy for _, _, lazy in batch)):
                self._commit(batch)
                batch = []

    def _commit(self, batch: list) -> None:
        flat = [e for events, _, _ in batch for e in events]
        try:
            recs, self._tail = store.append(self._conn, flat, self._tail)
        except (sqlite3.Error, OSError) as exc:
            error = OrchError(f"cannot write the event log: {exc}", ErrorCode.STORAGE)
            self.failed = error
            log.error("%s", error)
            for _, done, _ in batch:
                if done is not None:
                    done(None, error)
            return
        self.failed = None
        with self.lock:
            st.replay(recs, self.state)
        with self.committed:
            self.committed.notify_all()
        i = 0
        for events, done, _ in batch:
            mine = recs[i:i + len(events)]
            i += len(events)
            if done is not None:
                try:
                    done(mine, None)
                except Exception:  # a callback must not kill the writer
                    log.exception("journal callback failed")

    def wait_for(self, seq: int, timeout: float) -> bool:
        """Block until the state holds events after `seq`, or `timeout` passes."""
        with self.committed:
            return self.committed.wait_for(lambda: self.state.seq > seq, timeout)
