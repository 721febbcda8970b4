"""The journal's group commit with lazy appends, on a real SQLite file and the journal's own thread."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from orchd import events as ev
from orchd import state as st
from orchd import store
from orchd.actors import journal as journal_module
from orchd.actors.journal import Journal
from orchd.plan import RunSpec, TaskSpec


def _journal(tmp_path: Path) -> Journal:
    conn = store.connect(tmp_path / "events.db")
    store.migrate(conn)
    return Journal(conn, st.State()).start()


def _append(journal: Journal, events: list[ev.Event], lazy: bool = False) -> tuple[threading.Event, list]:
    done, out = threading.Event(), []
    journal.append(events, lambda records, error: (out.append((records, error)), done.set()), lazy)
    return done, out


def _submitted() -> ev.RunSubmitted:
    return ev.RunSubmitted("r1", RunSpec(name="r", concurrency=1, workdir="/w", tasks=[
        TaskSpec(id="t0", agent="command", cwd="/w", command=["true"])]))


def test_a_lazy_append_alone_is_written_all_the_same(tmp_path: Path) -> None:
    journal = _journal(tmp_path)
    try:
        done, out = _append(journal, [_submitted()], lazy=True)
        assert done.wait(30), "a lazy append was never written"
        (records, error), = out
        assert error is None and [r.seq for r in records] == [1]
        assert journal.state.runs["r1"].tasks["t0"].state == "pending"
    finally:
        journal.stop()


def test_a_lazy_append_goes_with_the_next_commit_in_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(journal_module, "LAZY", 60.0)  # however slow this machine, it waits for company
    journal = _journal(tmp_path)
    try:
        first, _ = _append(journal, [_submitted()])
        assert first.wait(30)
        # a lazy append waits for company: the launch that follows it is written in the same transaction
        lazy, lazy_out = _append(journal, [ev.AttemptLaunching("r1", "t0", 1, ["true"], "/w", "/l")], lazy=True)
        eager, eager_out = _append(journal, [ev.AttemptStarted("r1", "t0", 1, pid=7, pgid=7, start_ticks=1)])
        assert lazy.wait(30) and eager.wait(30)
        (a,), (b,) = lazy_out[0][0], eager_out[0][0]
        assert (a.seq, b.seq) == (2, 3)
        assert a.ts == b.ts  # one transaction: store.append stamps its events with one time
    finally:
        journal.stop()


def test_stopping_writes_what_lazy_appends_hold(tmp_path: Path) -> None:
    journal = _journal(tmp_path)
    done, out = _append(journal, [_submitted()], lazy=True)
    journal.stop()
    assert done.is_set() and out[0][1] is None
    assert store.last_seq(store.connect(tmp_path / "events.db", readonly=True)) == 1
