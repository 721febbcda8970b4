"""The journal's group commit with lazy appends, on a real SQLite file and the journal's own thread."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from orchd import events as ev
from orchd import journal as journal_module
from orchd import state as st
from orchd import store
from orchd.journal import Journal
from orchd.plan import RunSpec, TaskSpec


def _journal(tmp_path: Path) -> Journal:
    conn = store.connect(tmp_path / "events.db")
    store.migrate(conn)
    return Journal(conn, st.State()).start()


def _append(
    journal: Journal, events: list[ev.Event], lazy: bool = False
) -> tuple[threading.Event, list]:
    done, out = threading.Event(), []
    journal.append(events, lambda records, error: (out.append((records, error)), done.set()), lazy)
    return done, out


def _submitted() -> ev.RunSubmitted:
    return ev.RunSubmitted(
        "r1",
        RunSpec(
            name="r",
            concurrency=1,
            workdir="/w",
            tasks=[TaskSpec(id="t0", agent="command", cwd="/w", command=["true"])],
        ),
    )


def test_a_lazy_append_alone_is_written_all_the_same(tmp_path: Path) -> None:
    journal = _journal(tmp_path)
    try:
        done, out = _append(journal, [_submitted()], lazy=True)
        assert done.wait(30), "a lazy append was never written"
        ((records, error),) = out
        assert error is None and [r.seq for r in records] == [1]
        assert journal.state.runs["r1"].tasks["t0"].state == "pending"
    finally:
        journal.stop()


def test_a_lazy_append_goes_with_the_next_commit_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        journal_module, "LAZY", 60.0
    )  # however slow this machine, it waits for company
    journal = _journal(tmp_path)
    try:
        first, _ = _append(journal, [_submitted()])
        assert first.wait(30)
        # a lazy append waits for company: the launch that follows it is written in the same transaction
        lazy, lazy_out = _append(
            journal, [ev.AttemptLaunching("r1", "t0", 1, ["true"], "/w", "/l")], lazy=True
        )
        eager, eager_out = _append(
            journal, [ev.AttemptStarted("r1", "t0", 1, pid=7, pgid=7, start_ticks=1)]
        )
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


def test_an_append_now_commits_on_the_callers_thread_with_what_waits_before_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(journal_module, "LAZY", 60.0)
    journal = _journal(tmp_path)
    try:
        lazy, lazy_out = _append(journal, [_submitted()], lazy=True)
        threads = []
        journal.append(
            [ev.AttemptLaunching("r1", "t0", 1, ["true"], "/w", "/l")],
            lambda records, error: threads.append((threading.get_ident(), records, error)),
            now=True,
        )
        # written before append returned, by this thread, after the lazy append that came first
        ((ident, records, error),) = threads
        assert ident == threading.get_ident() and error is None
        assert (
            lazy.is_set()
            and [r.seq for r in lazy_out[0][0]] == [1]
            and [r.seq for r in records] == [2]
        )
        assert lazy_out[0][0][0].ts == records[0].ts  # one transaction
    finally:
        journal.stop()


def test_an_append_now_goes_to_the_journals_thread_while_it_commits(tmp_path: Path) -> None:
    journal = _journal(tmp_path)
    try:
        inside, go_on = threading.Event(), threading.Event()
        journal.append([_submitted()], lambda records, error: (inside.set(), go_on.wait(30)))
        assert inside.wait(30)  # the journal's thread is in its commit's callbacks
        threads: list[int] = []
        journal.append(
            [ev.AttemptLaunching("r1", "t0", 1, ["true"], "/w", "/l")],
            lambda records, error: threads.append(threading.get_ident()),
            now=True,
        )
        assert threads == []  # it did not wait for the commit under way, nor write beside it
        go_on.set()
        journal.stop()
        assert len(threads) == 1 and threads[0] != threading.get_ident()
        assert journal.state.seq == 2
    finally:
        go_on.set()


def test_a_reader_waiting_for_some_kinds_is_woken_by_those_only(tmp_path: Path) -> None:
    journal = _journal(tmp_path)
    try:
        for event in (_submitted(), ev.AttemptLaunching("r1", "t0", 1, ["true"], "/w", "/l")):
            done, _ = _append(journal, [event])
            assert done.wait(30)
        assert journal.wait_for(1, 0, ["AttemptLaunching"]) and journal.wait_for(1, 0)
        assert not journal.wait_for(1, 0, ["RunFinished"])  # seq 2 is not one it waits for
        woken: list[bool] = []
        reader = threading.Thread(
            target=lambda: woken.append(journal.wait_for(2, 30, ["RunFinished"]))
        )
        reader.start()
        _append(journal, [ev.RunFinished("r1", "completed")])
        reader.join(30)
        assert woken == [True]
    finally:
        journal.stop()


def test_on_commit_wakes_once_after_the_commits_it_waits_for(tmp_path: Path) -> None:
    journal = _journal(tmp_path)
    try:
        woken: list[int] = []
        all_woken, run_woken = threading.Event(), threading.Event()
        # already there: nothing to wait for
        assert journal.on_commit(-1, lambda: woken.append(0)) is None
        handle = journal.on_commit(0, lambda: (woken.append(1), all_woken.set()))
        finished = journal.on_commit(
            0, lambda: (woken.append(2), run_woken.set()), kinds=["RunFinished"]
        )
        gone = journal.on_commit(0, lambda: woken.append(3))
        assert handle is not None and finished is not None and gone is not None
        journal.forget(gone)
        done, _ = _append(journal, [_submitted()])
        assert done.wait(30) and all_woken.wait(30)
        assert not run_woken.is_set()  # a RunFinished is what it waits for
        done, _ = _append(journal, [ev.RunFinished("r1", state="completed")])
        assert done.wait(30) and run_woken.wait(30)
        assert woken == [1, 2]  # each once, in the order of the commits; the forgotten one never
    finally:
        journal.stop()
