"""`orchctl watch`: a full-screen live view of one run, folded on the client from the event stream.

A thread long-polls `Events` and wakes the main loop through a pipe, so a change
shows within a round trip of being recorded; the main loop also ticks once a
second (durations, ETA) from the folded state, without asking orchd anything.
The fold costs O(events); a frame costs one pass over the tasks plus the rows
that fit on the screen, so 10,000 tasks stay smooth.
"""

from __future__ import annotations

import os
import queue
import select
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from orchctl import render as r
from orchctl.tables import Grid
from orchd import events as ev
from orchd import protocol as p
from orchd import state as st
from orchd import views
from orchd.activity import latest_activity, one_line
from orchd.client import Client
from orchd.fold import apply

FILTERS: tuple[str | None, ...] = (
    None,
    "running",
    "retrying",
    "failed",
    "pending",
    "completed",
    "cancelled",
)
SHOWN_FIRST = ("running", "retrying", "failed", "pending", "cancelled", "completed")
CHROME = 5  # lines that are not task rows: header, bar, table header, "… more", keys
FRAME = 0.05  # at most 20 frames a second, however fast events come


class RunTracker:
    """A client-side fold of one run's events (what watch and --wait show), with running totals."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.state = st.State()

    def feed(self, rows: list[ev.Row]) -> list[tuple[ev.Row, ev.Event | None]]:
        """Fold `rows` in; return each with its decoded event (None for an unknown kind)."""
        return list(self.steps(rows))

    def steps(self, rows: list[ev.Row]) -> Iterator[tuple[ev.Row, ev.Event | None]]:
        """Fold `rows` in one by one, yielding each (with its event) right after it is folded."""
        for row in rows:
            event = ev.decode(row.kind, row.payload)
            apply(self.state, ev.Record(row.seq, row.ts, row.kind, event))
            yield row, event

    @property
    def run(self) -> st.RunState | None:
        return self.state.runs.get(self.run_id)

    @property
    def finished(self) -> bool:
        run = self.run
        return run is not None and run.state != "running"


def pick(
    run: st.RunState, limit: int, only: str | None = None
) -> tuple[dict[str, int], list[st.TaskState], int]:
    """Counts per state, the first `limit` tasks to show (running, retrying, failed first), and how many are not."""
    counts = dict.fromkeys(st.TASK_STATES, 0)
    buckets: dict[str, list[st.TaskState]] = {s: [] for s in st.TASK_STATES}
    for task in run.tasks.values():
        counts[task.state] += 1
        bucket = buckets[task.state]
        if len(bucket) < limit and only in (None, task.state):
            bucket.append(task)
    chosen = [t for s in SHOWN_FIRST for t in buckets[s]][:limit]
    shown_from = sum(counts.values()) if only is None else counts[only]
    return counts, chosen, shown_from - len(chosen)


def tokens(tokens_in: int | None, tokens_out: int | None) -> str:
    """`12.3k/4k`, or "-" when no agent reported any."""
    if tokens_in is None and tokens_out is None:
        return "-"

    def short(n: int | None) -> str:
        n = n or 0
        return f"{n / 1e6:.1f}M" if n >= 1e6 else f"{n / 1e3:.1f}k" if n >= 1e4 else str(n)

    return f"{short(tokens_in)}/{short(tokens_out)}"


def activity(task: st.TaskState, view: views.TaskView) -> str:
    """What a task is doing or why it stopped, in a few words."""
    if view.held:
        return view.held
    if task.state == "running":
        doing = latest_activity(view.log_path) or "starting…"
        return f"! {view.notice} · {doing}" if view.notice else doing
    if task.state == "retrying":
        last = task.attempts[-1] if task.attempts else None
        if last is not None and last.outcome == "park":  # the provider said when: no retry is spent
            due = time.localtime(view.due_at or 0)
            clock = (
                "%H:%M" if due[:3] == time.localtime()[:3] else "%b %d %H:%M"
            )  # the day too, when not today
            return f"waiting until {time.strftime(clock, due)} ({view.reason})"
        return f"next attempt at {r.when(view.due_at)} ({view.reason})"
    if task.state == "pending":
        return "waiting for a session slot"
    return one_line(view.result if task.state == "completed" else view.reason or task.state)


def provider_line(provider: views.ProviderView) -> str:
    """A provider that holds the run back: held (why, until when), or at a lowered limit."""
    if provider.held:
        until = (
            f" until {time.strftime('%H:%M', time.localtime(provider.until))}"
            if provider.until
            else ""
        )
        return f"provider {provider.provider} held{until}: {provider.reason}"
    return f"provider {provider.provider}: at most {provider.limit} at once (rate limited)"


class WatchView:
    """One frame of the live view, built from a RunTracker."""

    def __init__(self, tracker: RunTracker, console: Console, feed: Any = None) -> None:
        self.tracker = tracker
        self.console = console
        self.feed = feed  # the EventFeed, which knows why orchd starts nothing (a full disk)
        self.only: str | None = None
        self.keys_hint = ""

    def cycle_filter(self) -> None:
        self.only = FILTERS[(FILTERS.index(self.only) + 1) % len(FILTERS)]

    def header(self, run: st.RunState, counts: dict[str, int]) -> Group:
        done = sum(counts[s] for s in st.TERMINAL)
        total = len(run.tasks)
        now = time.time()
        elapsed = (run.finished_at or now) - run.submitted_at
        eta = (
            f"  eta {r.span(elapsed / done * (total - done))}"
            if 0 < done < total and run.state == "running"
            else ""
        )
        summary = views.run_summary(run, providers=self.tracker.state.providers)  # as status says
        money = f"  cost {r.cost(summary.cost_usd)}" if summary.cost_usd is not None else ""
        if summary.budget_usd is not None:
            money += f" of {r.cost(summary.budget_usd)}"
        used = (
            f"  tokens {tokens(summary.tokens_in, summary.tokens_out)}"
            if summary.tokens_in is not None
            else ""
        )
        title = Text.assemble(
            (run.run_id, "bold"),
            "  ",
            r.state_text(run.state),
            f"  {done}/{total} done  elapsed {r.span(elapsed)}{eta}{money}{used}",
        )
        bar = Table.grid(padding=(0, 2))
        bar.add_row(
            ProgressBar(total=max(1, total), completed=done, width=40),
            f"{100 * done // max(1, total)}%",
            r.counts_text(counts),
        )
        lines: list[RenderableType] = [title, bar]
        held = getattr(self.feed, "held", None)
        if held:
            lines.append(Text(held, style="bold yellow"))
        for provider in summary.providers:
            if provider.held or provider.limit is not None:
                lines.append(Text(provider_line(provider), style="yellow"))
        return Group(*lines)

    def rows(self, run: st.RunState, tasks: list[st.TaskState]) -> Grid:
        table = Grid(
            ["TASK", "STATE", "ATTEMPT", "AGENT", "DURATION", "COST", "TOKENS", "ACTIVITY"]
        )
        now = time.time()
        for task in tasks:
            view = views.task_view(task, run, self.tracker.state.providers)
            duration = view.duration
            if duration is None and view.started_at is not None and task.state == "running":
                duration = now - view.started_at
            table.add_row(
                view.id,
                r.state_text(view.state),
                f"{view.attempts}/{view.max_attempts}",
                view.agent,
                r.span(duration),
                r.cost(view.cost_usd),
                tokens(view.tokens_in, view.tokens_out),
                activity(task, view),
            )
        return table

    def render(self) -> Group:
        run = self.tracker.run
        if run is None:
            return Group(Text(f"waiting for run {self.tracker.run_id}…"))
        limit = max(1, self.console.size.height - CHROME)
        counts, tasks, hidden = pick(run, limit, self.only)
        parts: list[RenderableType] = [self.header(run, counts), self.rows(run, tasks)]
        if hidden:
            parts.append(Text(f"… {hidden} more", style="dim"))
        shown = "all" if self.only is None else self.only
        parts.append(Text(f"showing {shown}{self.keys_hint}", style="dim"))
        return Group(*parts)


class EventFeed(threading.Thread):
    """Long-polls one run's events on its own connection; wakes the main loop through a pipe."""

    def __init__(self, address: str, run_id: str, after: int = 0) -> None:
        super().__init__(name="orchctl-events", daemon=True)
        self.client = Client(address)
        self.run_id, self.after = run_id, after
        self.batches: queue.SimpleQueue[list[ev.Row] | BaseException] = queue.SimpleQueue()
        self.wake_r, self.wake_w = os.pipe()
        self.stopping = False
        self.stopped = threading.Event()
        self.held: str | None = None  # why orchd starts no session now (a full disk)

    def run(self) -> None:
        try:
            while not self.stopping:
                reply = self.client.call(
                    p.Events(after=self.after, run=self.run_id, wait=10.0, limit=5000),
                    p.EventsReply,
                )
                if reply.held != self.held:
                    self.held = reply.held
                    self._put([])  # redraw: the banner changed
                if reply.events:
                    self.after = reply.events[-1].seq
                    self._put(reply.events)
                elif reply.busy:  # every long-poll slot of orchd is taken: poll gently instead
                    self.stopped.wait(0.25)
        except BaseException as exc:
            if not self.stopping:
                self._put(exc)

    def _put(self, item: list[ev.Row] | BaseException) -> None:
        self.batches.put(item)
        os.write(self.wake_w, b"x")

    def drain(self) -> list[list[ev.Row]]:
        """Every batch that arrived; raises what the thread met (orchd went away)."""
        os.read(self.wake_r, 1 << 16)
        out = []
        while not self.batches.empty():
            item = self.batches.get()
            if isinstance(item, BaseException):
                raise item
            out.append(item)
        return out

    def stop(self) -> None:
        self.stopping = True
        self.stopped.set()
        self.client.close()  # ends a long-poll in flight
        self.join(timeout=2.0)
        if not self.is_alive():  # else leave the pipe open: the thread may still write to it
            os.close(self.wake_w)
            os.close(self.wake_r)


class Keys:
    """Single key presses from the terminal (cbreak mode), when stdin is one; a no-op otherwise."""

    def __init__(self) -> None:
        self.fd: int | None = (
            sys.stdin.fileno() if sys.stdin is not None and sys.stdin.isatty() else None
        )
        self._saved: list | None = None

    def __enter__(self) -> Keys:
        if self.fd is not None:
            import termios
            import tty

            self._saved = termios.tcgetattr(self.fd)
            tty.setcbreak(self.fd)  # Ctrl-C still interrupts
        return self

    def __exit__(self, *exc: object) -> None:
        if self.fd is not None and self._saved is not None:
            import termios

            termios.tcsetattr(self.fd, termios.TCSADRAIN, self._saved)

    def read(self) -> str:
        return os.read(self.fd, 64).decode("utf-8", "replace") if self.fd is not None else ""


def watch(address: str, tracker: RunTracker, console: Console) -> bool:
    """Show the live view until the run ends (True) or the user presses q (False)."""
    if (
        console.is_terminal
    ):  # as large as the terminal, whatever a stale COLUMNS/LINES (a tmux server's) says
        console = Console(
            _environ={k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
        )
    feed = EventFeed(address, tracker.run_id, tracker.state.seq)
    view = WatchView(tracker, console, feed)
    keys = Keys()
    if keys.fd is not None:
        view.keys_hint = "   f: filter by state   q: quit (the run goes on)   Ctrl-C: the same"
    feed.start()
    try:
        with (
            keys,
            Live(
                view.render(),
                console=console,
                screen=True,
                auto_refresh=False,
                redirect_stdout=False,
                redirect_stderr=False,
            ) as live,
        ):
            fds = [feed.wake_r] + ([keys.fd] if keys.fd is not None else [])
            next_tick = last_frame = time.monotonic()
            dirty = True
            while True:
                now = time.monotonic()
                if (dirty and now - last_frame >= FRAME) or now >= next_tick:
                    live.update(view.render(), refresh=True)
                    last_frame, dirty = now, False
                    next_tick = now + 1.0
                    if tracker.finished:
                        return True
                due = min(next_tick, last_frame + FRAME) if dirty else next_tick
                ready, _, _ = select.select(fds, [], [], max(0.0, due - time.monotonic()))
                if feed.wake_r in ready:
                    for rows in feed.drain():
                        tracker.feed(rows)
                    dirty = True
                if keys.fd is not None and keys.fd in ready:
                    pressed = keys.read()
                    if "q" in pressed:
                        return False
                    for _ in range(pressed.count("f")):
                        view.cycle_filter()
                    dirty = True
    finally:
        feed.stop()
