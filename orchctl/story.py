"""`orchctl why`: the story of one task, told from its events.

A headline says where the task stands and what became of each attempt before it, e.g.
"completed on attempt 3 (attempt 1 failed: exit code 1; retried after 2.0s; then attempt 2
failed: exit code 1 (gave up after 2 attempts); retried by `orchctl retry` at 19:49)"; then each
event of the task in order, with the stops and starts of orchd while one of its attempts ran
(and how the new orchd took the attempt over); then what comes next. Pure: events in, lines out.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from orchctl.render import span, when
from orchd import events as ev
from orchd import views

SHOWN = 3  # earlier attempts the headline tells of one by one; the lines below tell of them all
Told = tuple[float, ev.Event | None]  # an event of the story, with the time it was recorded


def clock(ts: float) -> str:
    return datetime.fromtimestamp(ts).strftime("%H:%M")


# how an attempt ended, by its outcome
ENDED = {
    "success": "completed",
    "retry": "failed",
    "timeout": "failed",
    "permanent": "failed",
    "park": "was parked",
    "lost": "was lost",
    "disk_full": "failed with the disk full",
    "verify_failed": "failed its checks",
    "cancelled": "was cancelled",
    "interrupted": "was interrupted",
}
DAEMON = (ev.DaemonStarted, ev.DaemonStopped)  # events of the whole daemon


@dataclass
class Attempt:
    """What became of one attempt: how it ended, and what followed."""

    n: int
    ended: str = "is running"
    then: str = ""
    restarts: int = 0  # starts of orchd while it ran (each took it over)

    def phrase(self) -> str:
        return f"attempt {self.n} {self.ended}{self.across()}" + (
            f"; {self.then}" if self.then else ""
        )

    def across(self) -> str:
        """`, across 2 restarts of orchd`, or nothing."""
        n = self.restarts
        return f", across {n} restart{'s' * (n != 1)} of orchd" if n else ""


def concerns(event: ev.Event | None, task_id: str) -> bool:
    """Whether a run's event (a cancel or a retry the user asked for) concerns the task."""
    if isinstance(event, ev.RetryRequested | ev.CancelRequested):
        return not event.task_ids or task_id in event.task_ids
    return event is not None and getattr(event, "task_id", None) == task_id


def told(events: Iterable[tuple[float, ev.Event | None]], task_id: str) -> list[Told]:
    """The events of a task's story, in order: its own, the run's cancels and retries that name
    it, and the stops and starts of orchd while one of its attempts ran."""
    out: list[Told] = []
    running = False
    for ts, event in events:
        if isinstance(event, DAEMON):
            if running:
                out.append((ts, event))
        elif concerns(event, task_id):
            out.append((ts, event))
            if isinstance(event, ev.AttemptLaunching | ev.AttemptFinished):
                running = isinstance(event, ev.AttemptLaunching)
    return out


def attempts(events: Iterable[Told]) -> list[Attempt]:
    """Each attempt of a task, from its events (with the times they were recorded), in order."""
    out: list[Attempt] = []
    for ts, event in events:
        if isinstance(event, ev.AttemptLaunching):
            out.append(Attempt(event.attempt))
        elif not out:
            continue
        elif isinstance(event, ev.DaemonStarted):
            out[-1].restarts += out[-1].ended == "is running"
        elif isinstance(event, ev.AttemptFinished):
            ended = ENDED.get(event.outcome, event.outcome)
            told = event.reason and event.outcome != "cancelled"  # "cancelled by the user"
            out[-1].ended = f"{ended}: {event.reason}" if told else ended
        elif isinstance(event, ev.TaskRetrying):
            out[-1].then = (
                f"retried after {span(event.delay)}"
                if event.spends_retry
                else f"run again at {clock(event.due_at)}, no retry spent"
            )
        elif isinstance(event, ev.TaskFailed) and event.reason:
            out[-1].ended = f"failed: {event.reason}"
        elif isinstance(event, ev.TaskCancelled) and not out[-1].ended.startswith("was"):
            out[-1].then = "then the task was cancelled"
        elif isinstance(event, ev.RetryRequested):
            out[-1].then = f"retried by `orchctl retry` at {clock(ts)}"
    return out


def headline(task: views.TaskView, tried: list[Attempt]) -> str:
    """Where the task stands, and what became of each attempt before the one that says so."""
    last = tried[-1] if tried else None
    earlier = tried[:-1]
    if last is None:
        head, earlier = (
            ("cancelled" if task.state == "cancelled" else "pending, no attempt yet"),
            [],
        )
    elif task.state == "completed":
        head = f"completed on attempt {last.n}{last.across()}"
    elif task.state == "failed":
        head = f"failed on attempt {last.n}: {task.reason}"
    elif task.state == "running":
        head = f"attempt {last.n} is running{last.across()}"
    elif task.state == "cancelled" and last.ended.startswith("was cancelled"):
        head = f"cancelled during attempt {last.n}"
    else:  # retrying, pending again after a retry, cancelled between attempts: every one is told
        head, earlier = task.state, tried
        if task.state == "retrying":
            head = f"retrying: attempt {last.n + 1} at {when(task.due_at)}"
    phrases = [a.phrase() for a in earlier[-SHOWN:]]
    if len(earlier) > SHOWN:
        phrases.insert(0, f"attempts 1-{earlier[-SHOWN - 1].n}: see below")
    return head + (f" ({'; then '.join(phrases)})" if phrases else "")


def line(ts: float, event: ev.Event | None) -> str | None:
    """One line of the story, or None for an event that tells nothing new."""
    at = when(ts)
    if isinstance(event, ev.AttemptLaunching):
        argv = shlex.join(event.argv).replace("\n", "\\n")
        shown = f"{argv[:100]}{'…' * (len(argv) > 100)}"
        return f"{at}  attempt {event.attempt} launched: {shown}  (in {event.cwd})"
    if isinstance(event, ev.AttemptStarted):
        return f"{at}    running as pid {event.pid}"
    if isinstance(event, ev.AttemptAdopted):
        if event.ended:
            return f"{at}    taken over: it had ended meanwhile, its exit status kept for orchd"
        return f"{at}    taken over: still running as pid {event.pid}"
    if isinstance(event, ev.DaemonStopped):
        kept = [f"{event.ended} ended (interrupted)"] if event.ended else []
        kept += [f"{event.left_running} kept running"] if event.left_running else []
        return f"{at}  orchd {event.version} stopped: sessions {', '.join(kept) or 'none'}"
    if isinstance(event, ev.DaemonStarted):
        after = {"stopped": "", "crashed": " after a crash"}.get(event.previous, "")
        return f"{at}  orchd {event.version} started{after}, to take over {event.running} sessions"
    if isinstance(event, ev.AttemptFinished):
        how = (
            f"exit {event.exit_code}"
            if event.exit_code is not None
            else (f"signal {event.signal}" if event.signal is not None else "no exit status")
        )
        why = f": {event.reason}" if event.reason else ""
        ended = f"{at}    ended after {span(event.duration)}, {how} -> {event.outcome}{why}"
        return ended + checks(event.verify)
    if isinstance(event, ev.TaskRetrying):
        budget = "" if event.spends_retry else ", not spending a retry"
        return f"{at}  -> next attempt in {span(event.delay)}, at {when(event.due_at)}{budget}"
    if isinstance(event, ev.TaskCompleted | ev.TaskFailed | ev.TaskCancelled):
        reason = getattr(event, "reason", "")
        name = type(event).__name__.removeprefix("Task").lower()
        return f"{at}  -> {name}{': ' + reason if reason else ''}"
    if isinstance(event, ev.RetryRequested):
        return f"{at}  -> `orchctl retry`: run again with a fresh retry budget"
    if isinstance(event, ev.CancelRequested):
        return f"{at}  -> `orchctl cancel`: cancel requested"
    return None


def checks(result: ev.VerifyResult | None, lines: int = 12) -> str:
    """What the story adds to an attempt's end about its checks: passed, or the failing one's
    output (its last `lines` lines)."""
    if result is None:
        return ""
    indent = " " * 14
    if result.passed:
        return f"\n{indent}{result.reason}"
    output = result.output.splitlines()[-lines:]
    return "".join(f"\n{indent}{line}" for line in [result.reason, *(f"| {o}" for o in output)])


def what_next(task: views.TaskView) -> str:
    """What happens next to a task, in words."""
    if task.state == "pending":
        return "waiting for a session slot"
    if task.state == "running":
        return f"attempt {task.attempts} is running" + (f" as pid {task.pid}" if task.pid else "")
    if task.state == "retrying":
        return f"attempt {task.attempts + 1} of at most {task.max_attempts} starts at {when(task.due_at)}"
    if task.state == "failed":
        return "nothing: it failed (`orchctl retry RUN TASK` runs it again with a fresh budget)"
    return f"nothing: it is {task.state}"


def story(run_id: str, task: views.TaskView, events: list[Told]) -> str:
    """The whole story of `task` of `run_id` from its events (and the run's that concern it)."""
    lines = [f"{task.id} of {run_id}: {headline(task, attempts(events))}"]
    lines += [text for ts, event in events if (text := line(ts, event)) is not None]
    lines.append(f"next: {what_next(task)}")
    return "\n".join(lines)
