"""`orchctl audit` beyond the hash chain: a log whose chain verifies but where something ran twice fails."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchd import events as ev
from orchd import store
from orchd.plan import RunSpec, TaskSpec

SPEC = RunSpec(
    name="r",
    concurrency=1,
    workdir="/w",
    tasks=[TaskSpec(id="t", agent="command", cwd="/w", command=["true"])],
)


def launch(n: int) -> ev.AttemptLaunching:
    return ev.AttemptLaunching("r", "t", n, ["true"], "/w", f"/l/t.{n}.log")


def finish(n: int, outcome: str = "retry") -> ev.AttemptFinished:
    return ev.AttemptFinished("r", "t", n, outcome)


@pytest.mark.parametrize(
    "events, problem",
    [
        ([launch(1), finish(1), finish(1)], "attempt 1 of t finished twice"),
        ([launch(1), launch(3)], "attempt 3 of t launched after attempt 1"),
        ([finish(1)], "attempt 1 of t finished but was never launched"),
        (
            [
                launch(1),
                finish(1, "success"),
                ev.TaskCompleted("r", "t"),
                ev.TaskCompleted("r", "t"),
            ],
            "completed twice",
        ),
        (
            [launch(1), finish(1, "success"), ev.TaskCompleted("r", "t"), launch(2)],
            "launched after the task completed",
        ),
    ],
)
def test_a_log_where_something_ran_twice_does_not_audit(
    tmp_path: Path, events: list, problem: str
) -> None:
    conn = store.connect(tmp_path / "events.db")
    store.migrate(conn)
    store.append(conn, [ev.RunSubmitted("r", SPEC), *events], store.Tail())
    result = store.audit(conn)
    assert result.first_bad == len(events) + 1 and problem in result.problem, result
    assert "breaks exactly-once" in result.problem


def test_a_clean_history_audits(tmp_path: Path) -> None:
    conn = store.connect(tmp_path / "events.db")
    store.migrate(conn)
    store.append(
        conn,
        [
            ev.RunSubmitted("r", SPEC),
            launch(1),
            finish(1, "lost"),
            launch(2),
            finish(2, "success"),
            ev.TaskCompleted("r", "t"),
        ],
        store.Tail(),
    )
    assert store.audit(conn).first_bad is None
