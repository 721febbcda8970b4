"""The journal: the one writer of the event log, with group commit.

Actors hand it events with a callback; the journal thread takes every append
waiting, writes them in one transaction (one fsync), folds the records into the
daemon's state, calls the callbacks (which `tell` actors, or start a process),
then wakes the long-polling readers that wait for what was written. Persist,
then act: a callback runs only once its events are durable.

An append `now` (a run's launch, when the run has nothing else to do) is written
on the caller's thread when no commit is under way, with everything waiting
before it: one thread hand-off less between an attempt's exit and the next
spawn. Whichever thread writes, appends are written in the order they came.

A commit that fails (a full disk, an I/O error) loses nothing: its whole batch
goes back to the front of the queue, in order, and the journal's thread tries
again with backoff (RETRY_FIRST doubling to RETRY_MAX) until it is written; the
callers simply wait for durability, so nothing acts on what is not in the log.
`failed` says why meanwhile (status shows it). Only an append that asked to be
refused (`refuse`: a new run) is answered with the error instead.

An append may be `lazy`: nothing waits for it (an attempt's pid, recorded once
it started), so it goes with the next commit, or LAZY seconds later when none
comes. An fsync of its own would delay the commits that something does wait for
(the next attempt's launch) by up to a whole fsync.
"""

from __future__ import annotations

import collections
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from orchd import events as ev
from orchd import state as st
from orchd import store
from orchd.errors import ErrorCode, OrchError
from orchd.fold import replay
from orchd.quiet import Quiet

log = logging.getLogger(__name__)

Done = Callable[[list[ev.Record] | None, OrchError | None], None]

_STOP = object()
MAX_BATCH = 4096
LAZY = 0.05  # seconds a lazy append waits for a commit to go with
RETRY_FIRST, RETRY_MAX = 0.1, 5.0  # seconds before a failed commit is tried again


class _Reader:
    """A reader waiting for a commit: after which seq, of which kinds (any when empty), what wakes it.
    Compared by identity."""

    __slots__ = ("kinds", "seq", "wake")

    def __init__(self, seq: int, kinds: frozenset[str], wake: Callable[[], None]) -> None:
        self.seq, self.kinds, self.wake = seq, kinds, wake


class Journal:
    """Single writer of events.db; owns the daemon's folded state."""

    def __init__(self, conn: sqlite3.Connection, state: st.State, db: Path | None = None) -> None:
        """`db`: `conn` only reads the log (store.open_log, on a full disk): the journal opens
        this file for writing before its first commit, holding every append until it can."""
        self._conn = conn
        self._reopen = db
        self._reopened = False  # the journal opened its own connection (closed when it stops)
        self._tail = store.tail(conn)
        self.state = state
        self.lock = threading.RLock()  # guards `state` for readers on other threads
        # readers waiting for a commit: (after seq, of these kinds or any, what wakes them); and the
        # seq of each kind's latest event, so that a reader waiting for one kind sleeps through the others
        self._readers: list[_Reader] = []
        self._readers_lock = threading.Lock()
        self._latest: dict[str, int] = {}
        # appends wait in `_pending`, oldest first; only a holder of `_writing` takes them, so they
        # are written in the order they came, whichever thread writes them
        self._pending: collections.deque = collections.deque()
        self._writing = threading.Lock()
        self._adding = threading.Lock()  # an append, or the taking of every pending one
        self._lazy_rung = False  # a lazy append rang since the pending ones were last all taken
        self._doorbell: queue.SimpleQueue = queue.SimpleQueue()  # wakes the journal's thread
        self._thread = threading.Thread(target=self._loop, name="journal", daemon=True)
        self.failed: OrchError | None = None  # the last write error, until a write succeeds
        self._retry_in = 0.0  # the backoff of a failed commit (0: none failed)
        self._retry_at = 0.0  # when it is tried again (monotonic)
        self.failed_at = -1.0  # when a commit last failed (monotonic)
        self._quiet = Quiet(log)

    def start(self) -> Journal:
        self._thread.start()
        return self

    def append(
        self,
        events: Sequence[ev.Event],
        done: Done | None = None,
        lazy: bool = False,
        now: bool = False,
        refuse: bool = False,
    ) -> None:
        """Persist `events` together; then call `done(records, None)`.
        `lazy`: no hurry, it may wait for the next commit (at most LAZY seconds).
        `now`: when no commit is under way, commit on the caller's thread (with whatever else
        waits), and call the callbacks there: one thread hand-off less before `done`.
        `refuse`: if the log cannot be written now, call `done(None, error)` instead of waiting."""
        if refuse and self.failed is not None:
            _call(done, None, self.failed)
            return
        with self._adding:
            self._pending.append((events, done, lazy, refuse))
            ring = (
                not lazy or not self._lazy_rung
            )  # the journal's thread has a timer for the first lazy one
            self._lazy_rung |= lazy
        if now and not self._retry_in and self._writing.acquire(blocking=False):
            try:
                self._drain()
            finally:
                self._writing.release()
            if not self._retry_in:
                return
            ring = True  # it failed: the journal's thread tries again
        if ring:
            self._doorbell.put(lazy)  # what it rings with: whether the append may wait

    def stop(self) -> None:
        """Write what is queued, then stop the thread."""
        self._doorbell.put(_STOP)
        self._thread.join()
        if self._reopened:
            self._conn.close()

    def _drain(self) -> None:
        """Commit everything pending (holding `_writing`), until a commit fails."""
        while self._pending:
            if not self._commit(self._take()):
                return

    def _take(self) -> list:
        batch: list = []
        with self._adding:
            while self._pending and len(batch) < MAX_BATCH:
                batch.append(self._pending.popleft())
            if not self._pending:
                self._lazy_rung = False
        return batch

    def _loop(self) -> None:
        stopping, due = False, None  # due: when the lazy appends waiting alone must be written
        while not stopping:
            if self._retry_in:  # a commit failed: nothing is tried again before its time
                due = self._retry_at
            try:
                rings = [
                    self._doorbell.get(
                        timeout=None if due is None else max(0.0, due - time.monotonic())
                    )
                ]
            except queue.Empty:
                rings = []  # lazy appends, or a retry, are due
            while True:
                try:
                    rings.append(self._doorbell.get_nowait())
                except queue.Empty:
                    break
            stopping = _STOP in rings
            if self._retry_in and rings and not stopping and due and time.monotonic() < due:
                continue  # rung while waiting to try again: it still waits
            with self._writing:
                if not self._pending:  # another thread wrote them
                    due = None
                elif stopping or not rings or not all(rings):  # something waits, or all are due
                    self._drain()
                    due = None
                elif due is None:
                    due = time.monotonic() + LAZY

    def _commit(self, batch: list) -> bool:
        """Write one batch; True once durable. A batch that fails goes back to the front of the
        queue (but for its appends that asked to be refused), and waits for its retry."""
        flat = [e for events, _, _, _ in batch for e in events]
        try:
            recs: list[ev.Record] = []
            if flat and self._reopen is not None:  # the log was read-only: open it for writing
                reading, self._conn, self._reopen = self._conn, store.connect(self._reopen), None
                self._reopened = True
                reading.close()
            if (
                flat
            ):  # an empty append is a barrier: its callback runs once all before it are durable
                recs, self._tail = store.append(self._conn, flat, self._tail)
        except (sqlite3.Error, OSError) as exc:
            self._failed(batch, exc)
            return False
        if self.failed is not None:
            self._quiet.over(
                "write", "the event log can be written again: %d events waited", len(flat)
            )
        self._retry_in = 0.0
        self.failed = None
        with self.lock:
            replay(recs, self.state)
        for rec in recs:
            self._latest[rec.kind] = rec.seq
        i = 0
        for events, done, _, _ in batch:
            mine = recs[i : i + len(events)]
            i += len(events)
            _call(done, mine, None)
        with self._readers_lock:  # readers last: the callbacks start processes, readers only look
            waiting: list[_Reader] = []
            woken: list[_Reader] = []
            for reader in self._readers:
                (woken if self._holds(reader.seq, reader.kinds) else waiting).append(reader)
            self._readers = waiting
        for reader in woken:
            _call_wake(reader.wake)
        return True

    def _failed(self, batch: list, exc: BaseException) -> None:
        self.failed = OrchError(f"cannot write the event log: {exc}", ErrorCode.STORAGE)
        self.failed_at = time.monotonic()
        self._retry_in = min(RETRY_MAX, self._retry_in * 2) if self._retry_in else RETRY_FIRST
        self._retry_at = time.monotonic() + self._retry_in
        self._quiet.log("write", logging.ERROR, "%s; trying again (nothing is lost)", self.failed)
        kept = [b for b in batch if not b[3]]
        with self._adding:
            self._pending.extendleft(reversed(kept))
        for _, done, _, refuse in batch:
            if refuse:
                _call(done, None, self.failed)
        with self._readers_lock:  # long-polls answer with why nothing moves
            woken, self._readers = self._readers, []
        for reader in woken:
            _call_wake(reader.wake)

    def _holds(self, seq: int, kinds: frozenset[str]) -> bool:
        if not kinds:
            return self.state.seq > seq
        return any(self._latest.get(kind, 0) > seq for kind in kinds)

    def wait_for(self, seq: int, timeout: float, kinds: Sequence[str] = ()) -> bool:
        """Block until the log holds events after `seq` (one of `kinds`, when given), or `timeout` passes.
        A reader is woken only by the commits it waits for."""
        woken = threading.Event()
        reader = self.on_commit(seq, woken.set, kinds)
        if reader is None:
            return True
        try:
            return woken.wait(timeout)
        finally:
            self.forget(reader)

    def on_commit(
        self, seq: int, wake: Callable[[], None], kinds: Sequence[str] = ()
    ) -> _Reader | None:
        """Call `wake()` once, on the committing thread, when the log holds events after `seq` (one
        of `kinds`, when given): for readers that must not block a thread (the dashboard's loop).
        `wake` must be quick and must not block. Returns None when such events are there already
        (`wake` is not called), else a handle for `forget`."""
        reader = _Reader(seq, frozenset(kinds), wake)
        with self._readers_lock:
            if self._holds(seq, reader.kinds):
                return None
            self._readers.append(reader)
        return reader

    def forget(self, reader: _Reader) -> None:
        """Stop waiting: `wake` of an `on_commit` handle will not be called (unless it was already)."""
        with self._readers_lock:
            if reader in self._readers:
                self._readers.remove(reader)


def _call(done: Done | None, records: list[ev.Record] | None, error: OrchError | None) -> None:
    if done is not None:
        try:
            done(records, error)
        except Exception:  # a callback must not kill the writer
            log.exception("journal callback failed")


def _call_wake(wake: Callable[[], None]) -> None:
    try:
        wake()
    except Exception:  # a reader must not kill the writer
        log.exception("journal reader's wake failed")
