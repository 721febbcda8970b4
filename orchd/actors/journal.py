"""The journal: the one writer of the event log, with group commit.

Actors hand it events with a callback; the journal thread takes every append
waiting in its mailbox, writes them in one transaction (one fsync), folds the
records into the daemon's state, wakes long-polling readers, then calls the
callbacks (which only `tell` actors). Persist, then act: a callback runs only
once its events are durable.
"""

from __future__ import annotations

import logging
import queue
import sqlite3
import threading
from typing import Callable, Sequence

from orchd import events as ev
from orchd import state as st
from orchd import store
from orchd.errors import ErrorCode, OrchError

log = logging.getLogger(__name__)

Done = Callable[[list[ev.Record] | None, OrchError | None], None]

_STOP = object()
MAX_BATCH = 4096


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

    def append(self, events: Sequence[ev.Event], done: Done | None = None) -> None:
        """Persist `events` together; then call `done(records, None)` (or `done(None, error)`)."""
        self._mailbox.put((events, done))

    def stop(self) -> None:
        """Write what is queued, then stop the thread."""
        self._mailbox.put(_STOP)
        self._thread.join()

    def _loop(self) -> None:
        stopping = False
        while not stopping:
            batch = [self._mailbox.get()]
            while len(batch) < MAX_BATCH:
                try:
                    batch.append(self._mailbox.get_nowait())
                except queue.Empty:
                    break
            if _STOP in batch:
                stopping = True
                batch = [item for item in batch if item is not _STOP]
            if batch:
                self._commit(batch)

    def _commit(self, batch: list) -> None:
        flat = [e for events, _ in batch for e in events]
        try:
            recs, self._tail = store.append(self._conn, flat, self._tail)
        except (sqlite3.Error, OSError) as exc:
            error = OrchError(f"cannot write the event log: {exc}", ErrorCode.STORAGE)
            self.failed = error
            log.error("%s", error)
            for _, done in batch:
                if done is not None:
                    done(None, error)
            return
        self.failed = None
        with self.lock:
            st.replay(recs, self.state)
        with self.committed:
            self.committed.notify_all()
        i = 0
        for events, done in batch:
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
