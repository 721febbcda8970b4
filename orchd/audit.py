"""The rules a log must keep (`orchctl audit`), checked event by event."""

from __future__ import annotations

from orchd import events as ev


class ExactlyOnce:
    """The rules a log must keep, checked event by event (`orchctl audit`): attempts of a task are
    launched 1, 2, 3…; each finishes at most once, and only after it was launched; a task completes
    at most once, and nothing is launched for it after that."""

    def __init__(self) -> None:
        self.launched: dict[tuple[str, str], int] = {}  # (run, task) -> the latest attempt launched
        self.finished: set[tuple[str, str, int]] = set()
        self.completed: set[tuple[str, str]] = set()

    def check(self, event: ev.Event | None) -> str | None:
        """What `event` breaks, or None."""
        if not isinstance(event, (ev.AttemptLaunching, ev.AttemptFinished, ev.TaskCompleted)):
            return None
        task = (event.run_id, event.task_id)
        if isinstance(event, ev.AttemptLaunching):
            if task in self.completed:
                return (
                    f"attempt {event.attempt} of {event.task_id} launched after the task completed"
                )
            if event.attempt != self.launched.get(task, 0) + 1:
                return f"attempt {event.attempt} of {event.task_id} launched after attempt {self.launched.get(task, 0)}"
            self.launched[task] = event.attempt
        elif isinstance(event, ev.AttemptFinished):
            attempt = (*task, event.attempt)
            if attempt in self.finished:
                return f"attempt {event.attempt} of {event.task_id} finished twice"
            if event.attempt > self.launched.get(task, 0):
                return f"attempt {event.attempt} of {event.task_id} finished but was never launched"
            self.finished.add(attempt)
        else:
            if task in self.completed:
                return f"task {event.task_id} completed twice"
            self.completed.add(task)
        return None
