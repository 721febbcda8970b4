"""Restart: time from starting `orchd` to its first answer to Ping, over a large log with unfinished work.

    python -m bench restart [--events 1000000] [--unfinished 1000] [--repeat 3]

The log is built directly with orchd.store (bench.synthlog): completed runs of
10,000 `true` tasks, and one running run whose last `--unfinished` tasks are
pending, so the daemon has to replay everything and resume that run. Each
repeat copies the log into a fresh ORCH_HOME, starts `python -m orchd` (as
`orchctl` autostarts it) and pings its socket every 2 ms until it answers. The
daemon's own log lines ("replayed ...", "listening on ...") split the time.
Reference: `python -c pass`, and `python -c "import orchd.daemon"` (imports only).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from datetime import datetime
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
from bench.home import OrchHome

NAME = "restart"
SMOKE = {"events": 3000, "unfinished": 20, "repeat": 1}
PING_EVERY = 0.002
LINE_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) .*?(replayed|listening on)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--events", type=int, default=1_000_000, help="events in the log (default 1000000)"
    )
    parser.add_argument(
        "--unfinished", type=int, default=1000, help="pending tasks to resume (default 1000)"
    )
    add_common_arguments(parser, repeat=3, smoke=", ".join(f"{k} {v}" for k, v in SMOKE.items()))


def python_wall(code: str, runs: int) -> list[float]:
    """Wall seconds of `python -c CODE`, `runs` times."""
    out = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True)
        out.append(time.perf_counter() - start)
    return out


def first_pong(home: OrchHome, proc: subprocess.Popen, timeout: float) -> Any:
    """Ping until the daemon answers; its Pong."""
    from orchd.client import Client
    from orchd.errors import OrchError
    from orchd.protocol import Ping

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with Client(home.address, timeout=timeout) as client:
                return client.call(Ping())
        except OrchError as err:
            if proc.poll() is not None:
                raise BenchFailure(
                    f"orchd exited {proc.returncode} while starting; {home.daemon_log_tail()}"
                ) from err
            time.sleep(PING_EVERY)  # the measurement's resolution: the socket does not exist yet
    raise BenchFailure(f"orchd did not answer within {timeout:g}s; {home.daemon_log_tail()}")


def stop(home: OrchHome, proc: subprocess.Popen) -> None:
    """Shutdown request, then reap: `orchctl daemon stop` would wait on our unreaped child as if it lived."""
    from orchd.errors import OrchError
    from orchd.protocol import Shutdown

    try:
        with home.client(timeout=10) as client:
            client.call(Shutdown())
    except OrchError:
        proc.terminate()
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def log_marks(home: OrchHome, started: float) -> dict[str, float]:
    """Seconds from the start to the daemon's "replayed" and "listening" log lines (ms resolution)."""
    marks: dict[str, float] = {}
    for line in (home.root / "state" / "orchd.log").read_text(errors="replace").splitlines():
        match = LINE_TIME.match(line)
        if match:
            at = datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
            marks.setdefault(
                "replayed" if match.group(2) == "replayed" else "listening", at - started
            )
    return marks


def measure_once(args: argparse.Namespace, log: Path, events: int) -> dict[str, float]:
    place = lambda root: synthlog.copy(log, root / "state" / "events.db")  # noqa: E731
    with OrchHome(max_sessions=64, keep=args.keep_home, start=False, prepare=place) as home:
        daemon_log = open(home.root / "state" / "orchd.log", "ab")
        started_wall, start = time.time(), time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-m", "orchd"],
            env=home.env,
            stdin=subprocess.DEVNULL,
            stdout=daemon_log,
            stderr=daemon_log,
            start_new_session=True,
            cwd="/",
        )
        try:
            pong = first_pong(home, proc, timeout=120)
            seconds = time.perf_counter() - start
            if pong.seq < events:
                raise BenchFailure(
                    f"orchd answered with {pong.seq} events in its state, expected {events}"
                )
        finally:
            stop(home, proc)
            daemon_log.close()
        marks = log_marks(
            home, started_wall
        )  # once stopped: "listening" may be written after the first Pong
    return {"to_pong_s": seconds, **{f"to_{k}_s": v for k, v in marks.items()}}


def report(args: argparse.Namespace, figures: dict[str, Any]) -> str:
    o, refs = figures["orch"], figures["reference"]
    rows = [
        [
            "orchd start -> first Pong",
            fmt(o["median_to_pong_s"], ".3f"),
            fmt(o["best_to_pong_s"], ".3f"),
        ],
        ["  of which: start -> 'replayed' log line", fmt(o.get("median_to_replayed_s"), ".3f"), ""],
        [
            "  of which: start -> 'listening' log line",
            fmt(o.get("median_to_listening_s"), ".3f"),
            "",
        ],
        ["python -c pass", fmt(refs["python_pass_s"], ".3f"), ""],
        ["python -c 'import orchd.daemon'", fmt(refs["import_daemon_s"], ".3f"), ""],
    ]
    return (
        f"restart: a {figures['events']:,}-event log with {args.unfinished:,} unfinished tasks "
        f"(built in {figures['build_s']:.1f}s); medians of {args.repeat} repeat(s)\n\n"
        + table(["", "median s", "best s"], rows)
        + f"\nratio orchd/python -c pass: {fmt(figures['ratios']['orch/python_pass'], '.1f')}"
        + "   target: < 3 s to the first Pong"
    )


def run(args: argparse.Namespace) -> int:
    """Build the log, time the restarts and the references, print the table, write the JSON."""
    if args.smoke:
        args.events, args.unfinished, args.repeat = (
            SMOKE["events"],
            SMOKE["unfinished"],
            SMOKE["repeat"],
        )
    scratch = short_tempdir("orchbs")
    try:
        print(f"  building a {args.events:,}-event log", file=sys.stderr, flush=True)
        log, start = scratch / "events.db", time.perf_counter()
        shapes = synthlog.shapes_for(
            args.events,
            unfinished=args.unfinished,
            tasks_per_run=min(10_000, max(args.unfinished, args.events // 40)),
        )
        events = synthlog.build(log, shapes, workdir=str(scratch))
        build_s = time.perf_counter() - start
        samples = [measure_once(args, log, events) for _ in iterate(args.repeat, "orchd restart")]
    except BenchFailure as exc:
        print(f"bench restart: {exc}", file=sys.stderr)
        return 1
    finally:
        discard(scratch)
    pass_s = median(python_wall("pass", 5 * args.repeat))
    orch = {
        "samples": [{k: rounded(v) for k, v in s.items()} for s in samples],
        "best_to_pong_s": rounded(min(s["to_pong_s"] for s in samples)),
        **{
            f"median_{k}": rounded(median([s[k] for s in samples if k in s]))
            for k in ("to_pong_s", "to_replayed_s", "to_listening_s")
        },
    }
    figures = {
        "events": events,
        "build_s": round(build_s, 2),
        "orch": orch,
        "reference": {
            "python_pass_s": rounded(pass_s),
            "import_daemon_s": rounded(median(python_wall("import orchd.daemon", 3 * args.repeat))),
        },
        "ratios": {"orch/python_pass": rounded(ratio(orch["median_to_pong_s"], pass_s), 2)},
    }
    finish(
        args,
        NAME,
        report(args, figures),
        {"events": args.events, "unfinished": args.unfinished},
        {"method": __doc__.split("\n\n", 2)[2].strip(), **figures},
    )
    return 0
