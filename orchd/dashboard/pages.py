"""What each page of the dashboard shows, computed from the fold alone, and what changed since.

Pure, like `views.py`, whose views the pages carry unchanged (a task row is the `TaskView` that
`status --json` prints, a run's header its `RunSummary`): when a view gains a field, the page
receives it with no change here. A page is one of three documents:

- `RunsDoc`: the runs, newest first, a page at a time;
- `RunDoc`: one run's summary and a page of its tasks (in plan order, or of one state);
- `TaskDoc`: one task with its attempts (the conversation of one of them comes from `live`).

A page object makes the first document (`snapshot`) and then only what changed (`delta`), given
which runs and tasks the log touched since: a run of 10,000 tasks sends its 200 rows once, then
the rows that changed. Call both with the journal's lock held, and encode the document before
letting go of it (attempts are the fold's own, changed in place).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

import msgspec

from orchd import state as st
from orchd import views

PAGE = 200  # rows of a page, unless it asks for another number
MAX_PAGE = 1000


@dataclass
class Touched:
    """What the log touched since a page was last sent: runs, tasks, every task of some runs (an
    event of the run that names tasks in its payload, such as a retry), or everything (a gap too
    large to read row by row: every page starts again from a snapshot)."""

    runs: set[str] = field(default_factory=set)
    tasks: set[tuple[str, str]] = field(default_factory=set)
    whole: set[str] = field(default_factory=set)
    everything: bool = False

    def note(self, run_id: str, task_id: str | None, kind: str = "") -> None:
        """One event of the log, by the run and task it belongs to (and its kind)."""
        if kind.startswith("Provider"):  # a provider's hold or limit shows in every run using it
            self.everything = True
        self.runs.add(run_id)
        if task_id is None:
            self.whole.add(run_id)
        else:
            self.tasks.add((run_id, task_id))

    def add(self, other: Touched) -> None:
        self.runs |= other.runs
        self.tasks |= other.tasks
        self.whole |= other.whole
        self.everything |= other.everything

    def of(self, run_id: str, task_id: str) -> bool:
        """Whether the task may have changed."""
        return self.everything or run_id in self.whole or (run_id, task_id) in self.tasks

    def __bool__(self) -> bool:
        return bool(self.runs or self.everything)


class RunsDoc(msgspec.Struct, kw_only=True, tag_field="view", tag="runs"):
    """The runs list: `order` is the page's run ids, newest first (None: as last sent); `runs` the
    summaries that are new or changed."""

    seq: int
    snapshot: bool
    offset: int
    total: int
    order: list[str] | None
    runs: list[views.RunSummary]


class RunDoc(msgspec.Struct, kw_only=True, tag_field="view", tag="run"):
    """A run: its summary (None: unchanged), and a page of its tasks (`only`: of that state)."""

    seq: int
    snapshot: bool
    run_id: str
    summary: views.RunSummary | None
    only: str | None
    offset: int
    total: int  # tasks of the run (of state `only`)
    order: list[str] | None  # the page's task ids, in plan order (None: as last sent)
    tasks: list[views.TaskView]  # rows that are new or changed
    parked: list[str]  # of `tasks`: retrying when their provider said, without spending a retry


class TaskDoc(msgspec.Struct, kw_only=True, tag_field="view", tag="task"):
    """A task and its attempts, with its run's summary."""

    seq: int
    snapshot: bool
    run_id: str
    summary: views.RunSummary | None
    task: views.TaskView
    attempts: list[st.AttemptState] | None  # None: unchanged (another task of the run changed)
    parked: bool


Doc = RunsDoc | RunDoc | TaskDoc


class NotFound(LookupError):
    """The page names a run or task the log does not hold."""


class Summaries:
    """Each run's summary, kept while the run stays the same (its last event's seq): every open
    page of a run shares one computation per change, however many pages are open."""

    def __init__(self, keep: int = 256) -> None:
        self.keep = keep
        self._cache: OrderedDict[str, tuple[tuple[int, int], views.RunSummary]] = OrderedDict()

    def of(self, run: st.RunState, state: st.State) -> views.RunSummary:
        key = (run.seq, state.providers_seq)  # the providers' holds show in the summary too
        hit = self._cache.get(run.run_id)
        if hit is not None and hit[0] == key:
            self._cache.move_to_end(run.run_id)
            return hit[1]
        summary = views.run_summary(run, providers=state.providers)
        self._cache[run.run_id] = (key, summary)
        self._cache.move_to_end(run.run_id)
        while len(self._cache) > self.keep:
            self._cache.popitem(last=False)
        return summary


def _window(offset: int, limit: int) -> tuple[int, int]:
    return max(0, offset), max(1, min(limit, MAX_PAGE))


def _parked(task: st.TaskState) -> bool:
    return task.state == "retrying" and bool(task.attempts) and task.attempts[-1].outcome == "park"


def _run(state: st.State, run_id: str) -> st.RunState:
    run = state.runs.get(run_id)
    if run is None:
        raise NotFound(f"no run {run_id!r}")
    return run


class RunsPage:
    """The runs, newest first, `limit` from `offset`."""

    def __init__(self, summaries: Summaries, offset: int = 0, limit: int = PAGE) -> None:
        self.summaries = summaries
        self.offset, self.limit = _window(offset, limit)
        self._shown: list[str] = []

    def _order(self, state: st.State) -> list[str]:
        newest_first = list(reversed(state.runs))  # the fold keeps runs in the order submitted
        return newest_first[self.offset : self.offset + self.limit]

    def snapshot(self, state: st.State) -> RunsDoc:
        self._shown = self._order(state)
        return self._doc(state, self._shown, self._shown, snapshot=True)

    def delta(self, state: st.State, touched: Touched) -> RunsDoc | None:
        if touched.everything:
            return self.snapshot(state)
        order = self._order(state)
        changed = [r for r in order if r in touched.runs or r not in self._shown]
        if order == self._shown and not changed:
            return None
        moved = order != self._shown
        self._shown = order
        return self._doc(state, order if moved else None, changed, snapshot=False)

    def _doc(
        self, state: st.State, order: list[str] | None, ids: list[str], snapshot: bool
    ) -> RunsDoc:
        return RunsDoc(
            seq=state.seq,
            snapshot=snapshot,
            offset=self.offset,
            total=len(state.runs),
            order=order,
            runs=[self.summaries.of(state.runs[r], state) for r in ids],
        )


class RunPage:
    """One run: its summary and its tasks in plan order (of one state, with `only`), a page of them."""

    def __init__(
        self,
        summaries: Summaries,
        run_id: str,
        only: str | None = None,
        offset: int = 0,
        limit: int = PAGE,
    ) -> None:
        if only is not None and only not in st.TASK_STATES:
            raise ValueError(f"state must be one of {', '.join(st.TASK_STATES)}, not {only!r}")
        self.summaries, self.run_id, self.only = summaries, run_id, only
        self.offset, self.limit = _window(offset, limit)
        self._shown: list[str] = []
        self._total = 0

    def _order(self, run: st.RunState) -> tuple[list[str], int]:
        if self.only is None:
            ids = list(run.tasks)
        else:
            ids = [tid for tid, task in run.tasks.items() if task.state == self.only]
        return ids[self.offset : self.offset + self.limit], len(ids)

    def snapshot(self, state: st.State) -> RunDoc:
        run = _run(state, self.run_id)
        self._shown, self._total = self._order(run)
        return self._doc(state, run, self._shown, self._shown, snapshot=True)

    def delta(self, state: st.State, touched: Touched) -> RunDoc | None:
        if touched.everything:
            return self.snapshot(state)
        if self.run_id not in touched.runs:
            return None
        run = _run(state, self.run_id)
        order, total = self._order(run)
        changed = [t for t in order if touched.of(self.run_id, t) or t not in self._shown]
        moved = order != self._shown or total != self._total
        self._shown, self._total = order, total
        return self._doc(state, run, order if moved else None, changed, snapshot=False)

    def _doc(
        self,
        state: st.State,
        run: st.RunState,
        order: list[str] | None,
        ids: list[str],
        snapshot: bool,
    ) -> RunDoc:
        tasks = [run.tasks[t] for t in ids]
        return RunDoc(
            seq=state.seq,
            snapshot=snapshot,
            run_id=run.run_id,
            summary=self.summaries.of(run, state),
            only=self.only,
            offset=self.offset,
            total=self._total,
            order=order,
            tasks=[views.task_view(t, run, state.providers) for t in tasks],
            parked=[t.spec.id for t in tasks if _parked(t)],
        )


class TaskPage:
    """One task: its view and every attempt, with its run's summary; the conversation shown is of
    attempt `attempt`, or of the latest one (which follows the task to its next attempt)."""

    def __init__(
        self, summaries: Summaries, run_id: str, task_id: str, attempt: int | None = None
    ) -> None:
        self.summaries, self.run_id, self.task_id = summaries, run_id, task_id
        self.attempt = attempt

    def chosen(self, state: st.State) -> st.AttemptState | None:
        """The attempt whose conversation the page shows (None before the first starts)."""
        attempts = self.task(state).attempts
        if self.attempt is None:
            return attempts[-1] if attempts else None
        return next((a for a in attempts if a.n == self.attempt), None)

    def task(self, state: st.State) -> st.TaskState:
        task = _run(state, self.run_id).tasks.get(self.task_id)
        if task is None:
            raise NotFound(f"run {self.run_id} has no task {self.task_id!r}")
        return task

    def snapshot(self, state: st.State) -> TaskDoc:
        run = _run(state, self.run_id)
        task = self.task(state)
        return TaskDoc(
            seq=state.seq,
            snapshot=True,
            run_id=run.run_id,
            summary=self.summaries.of(run, state),
            task=views.task_view(task, run, state.providers),
            attempts=list(task.attempts),
            parked=_parked(task),
        )

    def delta(self, state: st.State, touched: Touched) -> TaskDoc | None:
        if touched.of(self.run_id, self.task_id):
            doc = self.snapshot(state)
            doc.snapshot = touched.everything
            return doc
        if self.run_id in touched.runs:  # another task of the run: the header's counts
            run = _run(state, self.run_id)
            task = self.task(state)
            return TaskDoc(
                seq=state.seq,
                snapshot=False,
                run_id=run.run_id,
                summary=self.summaries.of(run, state),
                task=views.task_view(task, run, state.providers),
                attempts=None,
                parked=_parked(task),
            )
        return None


Page = RunsPage | RunPage | TaskPage
