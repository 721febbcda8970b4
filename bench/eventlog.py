"""Event log: durable appends/s through the journal (group commit) under concurrent writers, and replay.

    python -m bench eventlog [--writers 64] [--appends 128000] [--replay-events 1000000] [--repeat 3]

In-process, on a real SQLite file (WAL, synchronous=FULL), through orchd's own
`Journal` and `store`: each of W writer threads appends one event at a time
and waits until the journal says it is durable (the callback) before the next;
a second row lets each writer keep up to 16 appends in flight (run actors do
not block on the journal: they get a message once durable). Reference: the same rows (hash chain included) inserted with a raw
`sqlite3` executemany, one transaction per W rows, in one thread. Replay folds
a log of N events (built with bench.synthlog) into state with `store.fold(conn)`
(as orchd starts), from a fresh connection; a bare SELECT of the same rows
and a SELECT+decode are shown beside it to say where the time goes.
"""

from __future__ import annotations

import argparse
import queue
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import synthlog
from bench.common import (
    BenchFailure,
    add_common_arguments,
    discard,
    finish,
    fmt,
    iterate,
    median,
    ratio,
    rounded,
    short_tempdir,
    table,
)

NAME = "eventlog"
PIPELINE = (
    16  # appends in flight per writer in the pipelined row (a run actor does not wait for each)
)
SMOKE = {"writers": 8, "appends": 800, "replay_events": 2000, "repeat": 1}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--writers", type=int, default=64, help="concurrent writer threads (default 64)"
    )
    parser.add_argument(
        "--appends", type=int, default=128_000, help="events appended per repeat (default 128000)"
    )
    parser.add_argument(
        "--replay-events", type=int, default=1_000_000, help="events in the replayed log"
    )
    add_common_arguments(parser, repeat=3, smoke=", ".join(f"{k} {v}" for k, v in SMOKE.items()))


def _events(run_id: str, task_id: str, count: int) -> list[Any]:
    """`count` events of one task, in an order the fold accepts: launch, start, fail, retry, ..."""
    from orchd import events as ev

    cycle = []
    for n in range(1, count // 4 + 2):
        cycle += [
            ev.AttemptLaunching(run_id, task_id, n, ["true"], "/tmp", f"/tmp/{task_id}.{n}.log"),
            ev.AttemptStarted(run_id, task_id, n, pid=1000 + n, pgid=1000 + n, start_ticks=n),
            ev.AttemptFinished(
                run_id, task_id, n, "retry", exit_code=1, reason="exit 1", duration=0.01
            ),
            ev.TaskRetrying(run_id, task_id, due_at=1e9, delay=0.0, reason="exit 1"),
        ]
    return cycle[:count]


def _open_log(path: Path, writers: int) -> tuple[Any, Any]:
    """A fresh migrated log holding one run of `writers` tasks: its connection and its state."""
    from orchd import events as ev
    from orchd import store
    from orchd.fold import replay
    from orchd.plan import RunSpec, TaskSpec

    conn = store.connect(path)
    store.migrate(conn)
    tasks = [
        TaskSpec(id=f"w{i}", agent="command", cwd="/tmp", command=["true"]) for i in range(writers)
    ]
    spec = RunSpec(name="bench", concurrency=writers, workdir="/tmp", tasks=tasks)
    records, _ = store.append(conn, [ev.RunSubmitted("bench-log", spec)], store.tail(conn))
    return conn, replay(records)


def _drive(
    work: list[list[Any]],
    append: Callable[[list[Any], Callable[[Any, Any], None]], None],
    in_flight: int,
) -> tuple[float, float]:
    """(wall s, CPU s) of one thread per list in `work` handing its events to `append` one at a time,
    each with at most `in_flight` not yet answered."""
    go = threading.Barrier(len(work) + 1)
    failures: list[str] = []

    def writer(events: list[Any]) -> None:
        durable: queue.SimpleQueue = queue.SimpleQueue()
        done: Callable[[Any, Any], None] = lambda records, error: durable.put(error)  # noqa: E731

        def settled() -> bool:
            try:
                error = durable.get(timeout=120)
            except queue.Empty:
                error = "no answer within 120s (did the journal's thread die?)"
            if error is not None:
                failures.append(str(error))
            return error is None

        go.wait()
        pending = 0
        for event in events:
            append([event], done)
            pending += 1
            if pending == in_flight:
                if not settled():
                    return
                pending -= 1
        while pending and settled():
            pending -= 1

    threads = [threading.Thread(target=writer, args=(w,)) for w in work]
    for thread in threads:
        thread.start()
    go.wait()
    wall, cpu = time.perf_counter(), time.process_time()
    for thread in threads:
        thread.join()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    if failures:
        raise BenchFailure(f"{len(failures)} writers failed: {failures[0]}")
    return wall, cpu


def measure_journal(
    scratch: Path, writers: int, appends: int, in_flight: int = 1
) -> tuple[float, float, list[tuple]]:
    """(wall s, CPU s) of `appends` durable one-event appends from `writers` threads, each with at most
    `in_flight` appends not yet durable (1: append, wait, append...); the rows written (the events of
    one commit share its `ts`: the rows also tell how well commits were grouped)."""
    from orchd.journal import Journal

    conn, state = _open_log(scratch / f"journal-{in_flight}.db", writers)
    per_writer = appends // writers
    journal = Journal(conn, state).start()
    wall, cpu = _drive(
        [_events("bench-log", f"w{i}", per_writer) for i in range(writers)],
        journal.append,
        in_flight,
    )
    journal.stop()
    if journal.state.seq != 1 + per_writer * writers:
        raise BenchFailure(
            f"the journal holds {journal.state.seq} events, expected {1 + per_writer * writers}"
        )
    rows = conn.execute(
        "SELECT seq, ts, run_id, task_id, kind, payload, hash FROM events WHERE seq > 1 "
        "ORDER BY seq"
    ).fetchall()  # what the writers appended
    conn.close()
    return wall, cpu, rows


def measure_handoff(writers: int, appends: int) -> tuple[float, float]:
    """(wall s, CPU s) of the journal's hand-offs alone: the same writers and one thread that takes
    every waiting append and answers it at once, writing nothing. CPython's floor for the shape."""
    mailbox: queue.SimpleQueue = queue.SimpleQueue()

    def serve() -> None:
        while True:
            batch = [mailbox.get()]
            while True:
                try:
                    batch.append(mailbox.get_nowait())
                except queue.Empty:
                    break
            for item in batch:
                if item is None:
                    return
                item[1](item[0], None)

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    per_writer = appends // writers
    result = _drive(
        [_events("bench-log", f"w{i}", per_writer) for i in range(writers)],
        lambda events, done: mailbox.put((events, done)),
        1,
    )
    mailbox.put(None)
    server.join()
    return result


def measure_raw(scratch: Path, rows: list[tuple], per_transaction: int) -> tuple[float, float]:
    """(wall s, CPU s) of inserting `rows` with executemany, one transaction per `per_transaction` rows."""
    from orchd import store

    conn = store.connect(scratch / "raw.db")
    store.migrate(conn)
    sql = (
        "INSERT INTO events (seq, ts, run_id, task_id, kind, payload, hash) VALUES (?,?,?,?,?,?,?)"
    )
    wall, cpu = time.perf_counter(), time.process_time()
    for start in range(0, len(rows), per_transaction):
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(sql, rows[start : start + per_transaction])
        conn.execute("COMMIT")
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    conn.close()
    return wall, cpu


def measure_replay(db: Path) -> dict[str, tuple[float, float]]:
    """(wall s, CPU s) of reading the log three ways, each from a fresh connection."""
    from orchd import store

    steps: dict[str, Callable[[Any], Any]] = {
        "select": lambda c: sum(
            1 for _ in c.execute("SELECT seq, ts, kind, payload FROM events ORDER BY seq")
        ),
        "decode": lambda c: sum(1 for _ in store.records(c)),
        "replay": lambda c: store.fold(c),  # how orchd starts
    }
    out = {}
    for name, step in steps.items():
        conn = store.connect(db, readonly=True)
        wall, cpu = time.perf_counter(), time.process_time()
        step(conn)
        out[name] = (time.perf_counter() - wall, time.process_time() - cpu)
        conn.close()
    return out


def _stat(samples: list[tuple[float, float]], count: int) -> dict[str, Any]:
    walls, cpus = [w for w, _ in samples], [c for _, c in samples]
    return {
        "seconds": [rounded(w, 4) for w in walls],
        "cpu_seconds": [rounded(c, 4) for c in cpus],
        "median_s": rounded(median(walls), 4),
        "median_cpu_s": rounded(median(cpus), 4),
        "median_per_s": rounded(count / median(walls), 0),
        "events": count,
    }


def report(args: argparse.Namespace, figures: dict[str, Any]) -> str:
    a = figures["appends"]
    rows = [
        [
            label,
            fmt(a[k]["median_per_s"]),
            fmt(a[k]["median_s"], ".3f"),
            fmt(a[k]["median_cpu_s"], ".3f"),
        ]
        for k, label in (
            ("journal", f"journal, {args.writers} writers, 1 event/append, durable"),
            ("pipelined", f"journal, {args.writers} writers, up to {PIPELINE} in flight each"),
            ("handoff", f"hand-offs alone, {args.writers} writers, no log (floor)"),
            ("raw", f"raw executemany, 1 thread, {args.writers} rows/transaction"),
        )
    ]
    text = (
        f"eventlog: {a['journal']['events']} appends, WAL + synchronous=FULL; medians of "
        f"{args.repeat} repeat(s)\n\n"
        + table(["appends", "events/s", "wall s", "cpu s"], rows)
        + f"\njournal commits: {fmt(median(a['journal']['commits']))}, "
        f"{fmt(a['journal']['mean_events_per_commit'], '.1f')} events each (at most {args.writers} can wait); "
        f"with {PIPELINE} in flight: {fmt(a['pipelined']['mean_events_per_commit'], '.1f')} each"
        + f"\nratio journal/raw events/s: {fmt(figures['ratios']['journal/raw'], '.2f')}; "
        f"journal/hand-offs alone: {fmt(figures['ratios']['journal/handoff'], '.2f')}"
        + "   target: journal >= 50,000 events/s\n\n"
    )
    r = figures["replay"]
    rows = [
        [
            label,
            fmt(r[k]["median_s"], ".2f"),
            fmt(r[k]["median_cpu_s"], ".2f"),
            fmt(r[k]["median_per_s"]),
        ]
        for k, label in (
            ("select", "SELECT the rows (floor)"),
            ("decode", "SELECT + decode events"),
            ("replay", "replay into state"),
        )
    ]
    return (
        text
        + f"replay of a {r['events']:,}-event log (built in {r['build_s']:.1f}s)\n\n"
        + table(["", "wall s", "cpu s", "events/s"], rows)
        + f"\nratio replay/select wall: {fmt(figures['ratios']['replay/select'], '.2f')}"
        + "   target: replay < 2 s"
    )


def run(args: argparse.Namespace) -> int:
    """Measure appends and replay, print the tables, write the JSON."""
    if args.smoke:
        args.writers, args.appends, args.replay_events, args.repeat = (
            SMOKE["writers"],
            SMOKE["appends"],
            SMOKE["replay_events"],
            SMOKE["repeat"],
        )
    scratch = short_tempdir("orchbe")
    try:
        figures = measure(args, scratch)
    except BenchFailure as exc:
        print(f"bench eventlog: {exc}", file=sys.stderr)
        return 1
    finally:
        discard(scratch)
    finish(
        args,
        NAME,
        report(args, figures),
        {"writers": args.writers, "appends": args.appends, "replay_events": args.replay_events},
        {"method": __doc__.split("\n\n", 2)[2].strip(), **figures},
    )
    return 0


def measure(args: argparse.Namespace, scratch: Path) -> dict[str, Any]:
    """Every figure of the part, measured in `scratch`."""
    journal, raw, commits, pipelined, pipelined_commits, handoff = [], [], [], [], [], []
    for i in iterate(args.repeat, "appends"):
        (scratch / str(i)).mkdir()
        wall, cpu, rows = measure_journal(scratch / str(i), args.writers, args.appends)
        journal.append((wall, cpu))
        commits.append(len({row[1] for row in rows}))
        wall, cpu, pipelined_rows = measure_journal(
            scratch / str(i), args.writers, args.appends, PIPELINE
        )
        pipelined.append((wall, cpu))
        pipelined_commits.append(len({row[1] for row in pipelined_rows}))
        raw.append(measure_raw(scratch / str(i), rows, args.writers))
        handoff.append(measure_handoff(args.writers, args.appends))
    count = len(rows)
    print(f"  building a {args.replay_events:,}-event log", file=sys.stderr, flush=True)
    db, start = scratch / "replay" / "events.db", time.perf_counter()
    events = synthlog.build(
        db,
        synthlog.shapes_for(
            args.replay_events, tasks_per_run=min(10_000, max(1, args.replay_events // 40))
        ),
        workdir=str(scratch),
    )
    build_s = time.perf_counter() - start
    replays = [measure_replay(db) for _ in iterate(args.repeat, "replay")]
    figures: dict[str, Any] = {
        "appends": {
            "journal": {
                **_stat(journal, count),
                "commits": commits,
                "mean_events_per_commit": rounded(count / median(commits), 1),
            },
            "pipelined": {
                **_stat(pipelined, count),
                "commits": pipelined_commits,
                "mean_events_per_commit": rounded(count / median(pipelined_commits), 1),
            },
            "raw": _stat(raw, count),
            "handoff": _stat(handoff, count),
        },
        "replay": {
            "events": events,
            "build_s": round(build_s, 2),
            **{k: _stat([r[k] for r in replays], events) for k in ("select", "decode", "replay")},
        },
    }
    figures["ratios"] = {
        "journal/raw": rounded(
            ratio(
                figures["appends"]["journal"]["median_per_s"],
                figures["appends"]["raw"]["median_per_s"],
            )
        ),
        "journal/handoff": rounded(
            ratio(
                figures["appends"]["journal"]["median_per_s"],
                figures["appends"]["handoff"]["median_per_s"],
            )
        ),
        "replay/select": rounded(
            ratio(figures["replay"]["replay"]["median_s"], figures["replay"]["select"]["median_s"])
        ),
    }
    return figures
