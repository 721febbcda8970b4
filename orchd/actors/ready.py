"""A run's tasks that wait for a slot: in order, one queue per provider, counted by the supervisor."""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterable
from typing import Any

from orchd import state as st
from orchd.actors.context import Context
from orchd.actors.messages import Enqueue, Release, Withdraw


class Ready:
    """The ready tasks of one run; every change the supervisor must count is told to it here."""

    def __init__(self, ctx: Context, run_id: str) -> None:
        self.ctx, self.run_id = ctx, run_id
        self.queues: dict[str, deque[str]] = {}  # provider ("" for none) -> task ids, in order
        self.waiting: set[str] = set()

    def __contains__(self, task_id: str) -> bool:
        return task_id in self.waiting

    def __bool__(self) -> bool:
        return bool(self.waiting)

    def add(
        self,
        tasks: Iterable[tuple[str, str]],
        cap: int,
        ref: Any,
        occupied: Counter[str] | None = None,
        unclocked: set[str] | None = None,
    ) -> None:
        """Queue (task id, provider) pairs, and tell the supervisor (with the slots that sessions
        taken over hold, after a restart, and the providers whose agents' streams do not say
        when the provider answers)."""
        counts: Counter[str] = Counter()
        for task_id, provider in tasks:
            if task_id in self.waiting:
                continue
            self.waiting.add(task_id)
            self.queues.setdefault(provider, deque()).append(task_id)
            counts[provider] += 1
        if counts or occupied:
            self.ctx.supervisor.tell(
                Enqueue(
                    self.run_id, cap, dict(counts), ref, dict(occupied or {}), set(unclocked or ())
                )
            )

    def pop(self, provider: str) -> str | None:
        queue = self.queues.get(provider)
        if not queue:
            return None
        task_id = queue.popleft()
        self.waiting.discard(task_id)
        return task_id

    def has(self, provider: str) -> bool:
        return bool(self.queues.get(provider))

    def first(self, provider: str) -> str | None:
        queue = self.queues.get(provider)
        return queue[0] if queue else None

    def remove(self, task_ids: set[str]) -> None:
        """Take tasks out (cancelled, failed): the supervisor stops counting them."""
        for provider, queue in self.queues.items():
            kept = deque(t for t in queue if t not in task_ids)
            self.withdraw(provider, len(queue) - len(kept))
            self.queues[provider] = kept
        self.waiting -= task_ids

    def withdraw(self, provider: str, count: int) -> None:
        if count:
            self.ctx.supervisor.tell(Withdraw(self.run_id, provider, count))

    def release(self, provider: str) -> None:
        self.ctx.supervisor.tell(Release(self.run_id, provider))


def provider_of(task: st.TaskState) -> str:
    """The provider a task's sessions count against ("" for none)."""
    return task.spec.provider or ""
