"""The dashboard's pages from the fold alone: paging 10,000 tasks, and deltas that carry only
what changed (no daemon, no browser)."""

from __future__ import annotations

import msgspec

from orchd import events as ev
from orchd import state as st
from orchd.dashboard import pages
from orchd.fold import apply
from orchd.plan import RunSpec, TaskSpec


class Log:
    """A fold fed event by event, with what each event touched (as the hub reads it)."""

    def __init__(self) -> None:
        self.state = st.State()
        self.seq = 0

    def add(self, *events: ev.Event) -> pages.Touched:
        touched = pages.Touched()
        for event in events:
            self.seq += 1
            apply(self.state, ev.Record(self.seq, 1000.0 + self.seq, ev.kind_of(event), event))
            touched.note(event.run_id, getattr(event, "task_id", None), ev.kind_of(event))
        return touched


def submit(log: Log, run_id: str, tasks: int) -> None:
    spec = RunSpec(
        name=run_id,
        concurrency=4,
        workdir="/w",
        tasks=[
            TaskSpec(id=f"t{i:05d}", agent="command", cwd="/w", command=["true"])
            for i in range(tasks)
        ],
    )
    log.add(ev.RunSubmitted(run_id, spec))


def launch(log: Log, run_id: str, task_id: str, n: int = 1) -> pages.Touched:
    return log.add(
        ev.AttemptLaunching(run_id, task_id, n, ["true"], "/w", f"/logs/{task_id}.{n}.log")
    )


def test_a_run_of_ten_thousand_tasks_is_sent_a_page_at_a_time() -> None:
    log = Log()
    submit(log, "big", 10_000)
    page = pages.RunPage(pages.Summaries(), "big", offset=9_900, limit=200)
    doc = page.snapshot(log.state)
    assert doc.total == 10_000 and len(doc.tasks) == 100 and doc.order is not None
    assert doc.order[0] == "t09900" and doc.order[-1] == "t09999"
    assert len(msgspec.json.encode(doc)) < 100_000

    # a task on the page changes: its row and the summary, not the order
    delta = page.delta(log.state, launch(log, "big", "t09950"))
    assert delta is not None and delta.order is None
    assert [t.id for t in delta.tasks] == ["t09950"] and delta.tasks[0].state == "running"
    assert delta.summary is not None and delta.summary.counts["running"] == 1
    # a task off the page: the summary only
    delta = page.delta(log.state, launch(log, "big", "t00001"))
    assert delta is not None and delta.tasks == [] and delta.summary.counts["running"] == 2
    # another run: nothing at all
    submit(log, "other", 3)
    assert page.delta(log.state, launch(log, "other", "t00000")) is None


def test_a_page_of_one_state_follows_its_tasks_in_and_out() -> None:
    log = Log()
    submit(log, "r", 500)
    page = pages.RunPage(pages.Summaries(), "r", only="running")
    assert page.snapshot(log.state).total == 0
    delta = page.delta(log.state, launch(log, "r", "t00007"))
    assert delta is not None and delta.order == ["t00007"] and delta.total == 1
    assert [t.id for t in delta.tasks] == ["t00007"]
    touched = log.add(
        ev.AttemptFinished("r", "t00007", 1, "success", exit_code=0),
        ev.TaskCompleted("r", "t00007"),
    )
    delta = page.delta(log.state, touched)
    assert delta is not None and delta.order == [] and delta.total == 0


def test_an_event_of_the_run_touches_each_of_its_tasks() -> None:
    log = Log()
    submit(log, "r", 3)
    log.add(
        ev.AttemptLaunching("r", "t00001", 1, ["false"], "/w", "/l"),
        ev.AttemptFinished("r", "t00001", 1, "permanent", exit_code=1),
        ev.TaskFailed("r", "t00001", reason="no"),
    )
    page = pages.RunPage(pages.Summaries(), "r")
    assert page.snapshot(log.state).tasks[1].state == "failed"
    delta = page.delta(log.state, log.add(ev.RetryRequested("r", task_ids=["t00001"])))
    assert delta is not None and [t.state for t in delta.tasks] == ["pending"] * 3


def test_a_retrying_task_says_whether_its_provider_parked_it() -> None:
    log = Log()
    submit(log, "r", 2)
    for task_id, outcome in (("t00000", "park"), ("t00001", "retry")):
        launch(log, "r", task_id)
        log.add(
            ev.AttemptFinished("r", task_id, 1, outcome, exit_code=1),
            ev.TaskRetrying(
                "r", task_id, due_at=5000.0, delay=10.0, spends_retry=outcome != "park"
            ),
        )
    doc = pages.RunPage(pages.Summaries(), "r").snapshot(log.state)
    assert [t.due_at for t in doc.tasks] == [5000.0, 5000.0] and doc.parked == ["t00000"]
    task_doc = pages.TaskPage(pages.Summaries(), "r", "t00000").snapshot(log.state)
    assert task_doc.parked and task_doc.attempts is not None and len(task_doc.attempts) == 1


def test_the_runs_page_is_newest_first_and_moves_with_new_runs() -> None:
    log = Log()
    for i in range(5):
        submit(log, f"run{i}", 1)
    page = pages.RunsPage(pages.Summaries(), offset=0, limit=2)
    assert page.snapshot(log.state).order == ["run4", "run3"]
    assert page.delta(log.state, launch(log, "run0", "t00000")) is None  # not on the page
    delta = page.delta(log.state, launch(log, "run3", "t00000"))
    assert delta is not None and delta.order is None and [r.run_id for r in delta.runs] == ["run3"]
    submit(log, "run5", 1)
    delta = page.delta(log.state, pages.Touched(runs={"run5"}))
    assert delta is not None and delta.order == ["run5", "run4"] and delta.total == 6


def test_a_task_page_follows_the_latest_attempt_unless_one_is_chosen() -> None:
    log = Log()
    submit(log, "r", 1)
    latest = pages.TaskPage(pages.Summaries(), "r", "t00000")
    first = pages.TaskPage(pages.Summaries(), "r", "t00000", attempt=1)
    assert latest.chosen(log.state) is None
    launch(log, "r", "t00000", 1)
    log.add(ev.AttemptFinished("r", "t00000", 1, "retry", exit_code=1))
    launch(log, "r", "t00000", 2)
    assert latest.chosen(log.state).n == 2  # type: ignore[union-attr]
    assert first.chosen(log.state).n == 1  # type: ignore[union-attr]
    submit(log, "other", 1)
    delta = latest.delta(log.state, launch(log, "other", "t00000"))
    assert delta is None


def test_a_provider_event_starts_every_page_again() -> None:
    log = Log()
    submit(log, "r", 2)
    page = pages.RunPage(pages.Summaries(), "r")
    page.snapshot(log.state)
    touched = log.add(ev.ProviderHeld("r", provider="claude:x", cause="auth", reason="bad key"))
    assert touched.everything  # its hold shows in every run whose tasks spend it
    delta = page.delta(log.state, touched)
    assert delta is not None and delta.snapshot and len(delta.tasks) == 2
