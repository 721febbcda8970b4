"""Live pages: the log's commits carried to every open page, on the dashboard's event loop.

One `Hub` per dashboard waits for commits through `Journal.on_commit` (no thread blocks for it),
reads the rows after the last seq it read ("everything after seq N": no update is dropped), and
hands what they touched to each open page's `Feed`. Each page then sends a delta of its own
document (`pages.py`) as a server-sent event. The hub takes one batch at most every
MIN_INTERVAL: a busy log costs a page a few small deltas a second, never one per event.

A task page also follows the conversation of the attempt it shows: the attempt's log is not in
the event log, so the page reads what the agent appended, once a LOG_TICK while it runs.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import msgspec

from orchd import protocol as p
from orchd import state as st
from orchd import store
from orchd.activity import Conversation
from orchd.dashboard import pages
from orchd.journal import Journal

MIN_INTERVAL = 0.2  # seconds between two batches of the hub
HEARTBEAT = 15.0  # seconds of silence before a comment line keeps a stream open
LOG_TICK = 1.0  # seconds between two reads of a running attempt's log
GAP = 50_000  # events behind: past this, pages start again from a snapshot instead
TAIL = 256 << 10  # bytes of a log a page shows at first (the rest: `orchctl logs`)
RETRY = b"retry: 2000\n\n"  # how long a browser waits before it reconnects a broken stream


class Feed:
    """What the log touched for one open page since it last looked."""

    def __init__(self) -> None:
        self.touched = pages.Touched()
        self.closed = False
        self._ready = asyncio.Event()

    def add(self, touched: pages.Touched) -> None:
        self.touched.add(touched)
        self._ready.set()

    def close(self) -> None:
        self.closed = True
        self._ready.set()

    async def next(self, timeout: float) -> pages.Touched | None:
        """What was touched since the last call, once something was; None after `timeout`."""
        try:
            await asyncio.wait_for(self._ready.wait(), timeout)
        except TimeoutError:
            return None
        self._ready.clear()
        touched, self.touched = self.touched, pages.Touched()
        return touched


class Hub:
    """Reads the log's new rows once for every open page. Lives on the dashboard's loop."""

    def __init__(self, journal: Journal, db: Path, loop: asyncio.AbstractEventLoop) -> None:
        self.journal, self.loop = journal, loop
        self.summaries = pages.Summaries()
        self.feeds: set[Feed] = set()
        self.seq = 0  # the rows up to here are read
        self.closed = False
        self._conn = store.connect(db, readonly=True)  # used on the loop's thread only
        self._waiting = False  # a wake is registered with the journal, or scheduled
        self._resting = False  # within MIN_INTERVAL of the last batch

    def subscribe(self) -> Feed:
        """A feed for a new page; take its snapshot right after (before any await)."""
        if not self.feeds and not self._waiting:
            with self.journal.lock:  # nobody needs what went before
                self.seq = self.journal.state.seq
        feed = Feed()
        self.feeds.add(feed)
        self._arm()
        return feed

    def unsubscribe(self, feed: Feed) -> None:
        self.feeds.discard(feed)

    def close(self) -> None:
        """End every page's stream (the dashboard is stopping)."""
        self.closed = True
        for feed in self.feeds:
            feed.close()
        self._conn.close()

    def _arm(self) -> None:
        if self._waiting or self._resting or self.closed or not self.feeds:
            return
        self._waiting = True
        if self.journal.on_commit(self.seq, self._wake) is None:
            self.loop.call_soon(self._committed)

    def _wake(self) -> None:
        """On the journal's thread: only schedule the batch on the loop."""
        try:
            self.loop.call_soon_threadsafe(self._committed)
        except RuntimeError:  # the loop is closed: the dashboard stopped
            pass

    def _committed(self) -> None:
        self._waiting = False
        if self.closed:
            return
        touched = self._read()
        for feed in self.feeds:
            feed.add(touched)
        self._resting = True
        self.loop.call_later(MIN_INTERVAL, self._rested)

    def _rested(self) -> None:
        self._resting = False
        self._arm()

    def _read(self) -> pages.Touched:
        with self.journal.lock:
            upto = self.journal.state.seq
        touched = pages.Touched()
        if upto - self.seq > GAP:
            touched.everything = True
        elif self.feeds:
            for row in store.rows(self._conn, after=self.seq, upto=upto):
                touched.note(row.run_id, row.task_id, row.kind)
        self.seq = upto
        return touched


class LogText(msgspec.Struct, kw_only=True):
    """A piece of an attempt's conversation for the page: `reset` starts it over (another attempt,
    or the page fell behind), `cut` bytes of the log before it are not shown."""

    attempt: int
    reset: bool
    cut: int
    text: str
    live: bool  # the attempt still runs: more may come


class LogTail:
    """The conversation of one attempt, rendered as `orchctl logs` does, read as it grows."""

    def __init__(self, attempt: st.AttemptState) -> None:
        self.n, self.path = attempt.n, attempt.log_path
        self.offset = 0
        self.cut = 0
        self.conversation = Conversation()
        self.done = False

    def first(self, live: bool) -> LogText:
        """The last TAIL bytes of the log, from their first whole line (all of it once it ended)."""
        try:
            size = os.path.getsize(self.path)
        except OSError:
            size = 0
        self.conversation, self.done = Conversation(), False
        self.offset = self.cut = max(0, size - TAIL)
        text = self._read(skip_partial=self.cut > 0) + self._end(live)
        if self.cut:
            text = f"[orch: the first {self.cut} bytes are not shown: orchctl logs]\n" + text
        return LogText(attempt=self.n, reset=True, cut=self.cut, text=text, live=live)

    def more(self, live: bool) -> LogText | None:
        """What the agent wrote since (None: nothing); once it ended, the unfinished last line too."""
        if self.done:
            return None
        try:
            behind = os.path.getsize(self.path) - self.offset
        except OSError:
            behind = 0
        if behind > 4 * TAIL:  # the page fell far behind a fast writer: show the tail again
            return self.first(live)
        text = self._read() + self._end(live)
        return (
            LogText(attempt=self.n, reset=False, cut=self.cut, text=text, live=live)
            if text
            else None
        )

    def _end(self, live: bool) -> str:
        if live:
            return ""
        self.done = True
        return self.conversation.flush().decode("utf-8", "replace")

    def _read(self, skip_partial: bool = False) -> str:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read(4 * TAIL)
        except OSError:
            return ""
        self.offset += len(data)
        if skip_partial:
            _, _, data = data.partition(b"\n")
        return self.conversation.feed(data).decode("utf-8", "replace")


def sse(event: str, data: bytes) -> bytes:
    """One server-sent event (the JSON is on one line: msgspec writes no newlines)."""
    return b"event: " + event.encode() + b"\ndata: " + data + b"\n\n"


class Stream:
    """One open page: its snapshot, then its deltas, as server-sent events."""

    def __init__(self, hub: Hub, page: pages.Page) -> None:
        self.hub, self.page = hub, page
        self.log: LogTail | None = None

    def _render(self, touched: pages.Touched | None) -> tuple[bytes | None, st.AttemptState | None]:
        """The page's document (None: nothing changed), encoded while the fold holds still, and the
        attempt whose conversation a task page shows (a copy)."""
        with self.hub.journal.lock:
            state = self.hub.journal.state
            doc = self.page.snapshot(state) if touched is None else self.page.delta(state, touched)
            return (None, None) if doc is None else (p.encode(doc), self._chosen())

    def _conversation(self, chosen: st.AttemptState | None) -> bytes:
        """The conversation's news after a document: from the start for another attempt."""
        if chosen is None:
            return b""
        live = chosen.outcome is None
        if self.log is None or self.log.n != chosen.n:
            self.log = LogTail(chosen)
            piece: LogText | None = self.log.first(live)
        else:
            piece = self.log.more(live)
        return b"" if piece is None else sse("log", p.encode(piece))

    def _chosen(self) -> st.AttemptState | None:
        """A copy of the attempt whose conversation the page shows (None: not a task page)."""
        if not isinstance(self.page, pages.TaskPage):
            return None
        with self.hub.journal.lock:
            chosen = self.page.chosen(self.hub.journal.state)
            return None if chosen is None else msgspec.structs.replace(chosen)

    async def events(self, clock: Callable[[], float] = time.monotonic) -> AsyncIterator[bytes]:
        """The stream's bytes, until the page goes away or the dashboard stops."""
        feed = self.hub.subscribe()
        try:
            data, chosen = self._render(None)  # right after subscribing: nothing falls between
            assert data is not None
            yield RETRY + sse("snapshot", data) + self._conversation(chosen)
            last_write = clock()
            while not feed.closed:
                following = self.log is not None and not self.log.done
                touched = await feed.next(LOG_TICK if following else HEARTBEAT)
                out = b""
                if touched:
                    data, chosen = self._render(touched)
                    if data is not None:
                        out = sse("delta", data) + self._conversation(chosen)
                elif following:
                    out = self._conversation(self._chosen())
                if not out and clock() - last_write >= HEARTBEAT:
                    out = b": ping\n\n"
                if out:
                    yield out
                    last_write = clock()
        finally:
            self.hub.unsubscribe(feed)
