"""Slot refill latency: the time from one task's exit to the next task's start, at a fixed concurrency.

    python -m bench refill [--tasks 1000] [--concurrency 8] [--sleep 0.02] [--repeat 3]

Method: each task is a tiny bash agent that reads its own clock (bash's
`$EPOCHREALTIME`, a builtin: no extra process) when it starts, sleeps
`--sleep` seconds, and appends "start end" to a file as its last act. With
every slot busy, the k-th start (k > C, in time order) is the one the
(k-C)-th exit made room for, so the refill gaps are `start[k] - end[k-C]`
over the sorted start and end times. A gap holds: the agent's exit, the
runner noticing it, whatever it records, the spawn of the next agent and
bash's start-up (the same ~1-2 ms in every row). The same agent runs under
orch, GNU parallel (`-jC`) and xargs (`-P C`, the floor: it records nothing),
one after the other in each repeat, so that a machine whose speed drifts moves
every tool alike.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import (
    BenchFailure,
    Skip,
    add_common_arguments,
    discard,
    finish,
    fmt,
    iterate,
    median,
    percentile,
    ratio,
    require_tool,
    rounded,
    scratch_tmpdir,
    short_tempdir,
    table,
    tail,
)
from bench.home import OrchHome, command_plan

NAME = "refill"
SMOKE = {"tasks": 24, "concurrency": 4, "repeat": 1}

AGENT = """#!/bin/bash
# A task for the refill benchmark: its own start and end times, one append at the very end.
start=$EPOCHREALTIME
sleep "$2"
printf '%s %s\\n' "$start" "$EPOCHREALTIME" >> "$1"
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--tasks", type=int, default=1000, help="tasks per measurement (default 1000)"
    )
    parser.add_argument("--concurrency", type=int, default=8, help="tasks at once (default 8)")
    parser.add_argument(
        "--sleep", type=float, default=0.02, help="seconds each task sleeps (default 0.02)"
    )
    add_common_arguments(
        parser, repeat=3, smoke=f"{SMOKE['tasks']} tasks at concurrency {SMOKE['concurrency']}"
    )


def gaps_ms(times: list[tuple[float, float]], concurrency: int) -> list[float]:
    """Refill gaps in ms from (start, end) pairs: sorted starts after the first C, each minus the
    end that freed its slot."""
    starts = sorted(s for s, _ in times)
    ends = sorted(e for _, e in times)
    return [(starts[k] - ends[k - concurrency]) * 1000 for k in range(concurrency, len(starts))]


def max_overlap(times: list[tuple[float, float]]) -> int:
    """The most tasks that ran at once (a check that the runner kept its cap)."""
    marks = sorted([(s, 1) for s, _ in times] + [(e, -1) for _, e in times])
    now = peak = 0
    for _, step in marks:
        now += step
        peak = max(peak, now)
    return peak


def read_times(path: Path, tasks: int) -> list[tuple[float, float]]:
    lines = path.read_text().split("\n") if path.exists() else []
    times = [(float(a), float(b)) for a, b in (line.split() for line in lines if line.strip())]
    if len(times) != tasks:
        raise BenchFailure(f"{len(times)} of {tasks} tasks recorded their times in {path}")
    return times


# ------------------------------------------------------------ runners: each runs the agent N times


def orch_runner(args: argparse.Namespace, agent: Path, times: Path) -> None:
    with OrchHome(max_sessions=args.concurrency, keep=args.keep_home) as home:
        plan = command_plan(
            args.tasks, args.concurrency, home.workdir(), [str(agent), str(times), str(args.sleep)]
        )
        run_id = home.submit(plan)
        summary = home.wait_finished(run_id, timeout=max(120.0, args.tasks * args.sleep * 5))
        if summary["state"] != "completed":
            raise BenchFailure(f"run {run_id} ended {summary['state']}: {summary['counts']}")


def _lines(tasks: int) -> bytes:
    return "".join(f"{i}\n" for i in range(tasks)).encode()


def parallel_runner(args: argparse.Namespace, agent: Path, times: Path) -> None:
    parallel = require_tool("parallel", "apt-get install parallel")
    joblog = times.with_suffix(".joblog")
    argv = [
        parallel,
        f"-j{args.concurrency}",
        "--joblog",
        str(joblog),
        str(agent),
        str(times),
        str(args.sleep),
    ]
    result = subprocess.run(
        argv,
        input=_lines(args.tasks),
        capture_output=True,
        env={**os.environ, "TMPDIR": scratch_tmpdir()},
    )
    if result.returncode != 0:
        raise BenchFailure(f"parallel exited {result.returncode}: {tail(result.stderr)}")


def xargs_runner(args: argparse.Namespace, agent: Path, times: Path) -> None:
    xargs = require_tool("xargs", "apt-get install findutils")
    # -n 1 appends each line as a third argument, which the agent ignores
    argv = [xargs, "-P", str(args.concurrency), "-n", "1", str(agent), str(times), str(args.sleep)]
    result = subprocess.run(argv, input=_lines(args.tasks), capture_output=True)
    if result.returncode != 0:
        raise BenchFailure(f"xargs exited {result.returncode}: {tail(result.stderr)}")


RUNNERS: dict[str, tuple[str, Callable[[argparse.Namespace, Path, Path], None]]] = {
    "orch": ("orch", orch_runner),
    "parallel": ("GNU parallel -j (--joblog)", parallel_runner),
    "xargs": ("xargs -P (floor)", xargs_runner),
}


def measure_once(
    args: argparse.Namespace, key: str, scratch: Path, agent: Path, i: int
) -> dict[str, Any]:
    """One run of one runner: its p50/p99/max gap, span and largest overlap."""
    _, runner = RUNNERS[key]
    times_file = scratch / f"{key}-{i}.times"
    runner(args, agent, times_file)
    times = read_times(times_file, args.tasks)
    gaps = gaps_ms(times, args.concurrency)
    figures = {
        "p50_ms": rounded(percentile(gaps, 50)),
        "p99_ms": rounded(percentile(gaps, 99)),
        "max_ms": rounded(max(gaps, default=None)),
        "gaps": len(gaps),
        "span_s": rounded(max(e for _, e in times) - min(s for s, _ in times)),
        "max_overlap": max_overlap(times),
    }
    if figures["max_overlap"] > args.concurrency:
        raise BenchFailure(
            f"{key} ran {figures['max_overlap']} tasks at once (cap {args.concurrency})"
        )
    return figures


def summary(repeats: list[dict[str, Any]]) -> dict[str, Any]:
    """Every repeat of one runner, and the medians over them."""
    return {
        "status": "ok",
        "repeats": repeats,
        **{
            f: rounded(median([r[f] for r in repeats if r[f] is not None]))
            for f in ("p50_ms", "p99_ms", "max_ms", "span_s")
        },
    }


def report(args: argparse.Namespace, results: dict[str, dict[str, Any]]) -> str:
    rows = []
    for key, (label, _) in RUNNERS.items():
        r = results[key]
        note = "" if r["status"] == "ok" else f"{r['status']}: {r['reason']}"[:90]
        rows.append(
            [
                label,
                fmt(r.get("p50_ms"), ".2f"),
                fmt(r.get("p99_ms"), ".2f"),
                fmt(r.get("max_ms"), ".1f"),
                fmt(r.get("span_s"), ".2f"),
                note,
            ]
        )
    head = (
        f"refill: {args.tasks} tasks of `sleep {args.sleep:g}` at concurrency {args.concurrency}; "
        f"exit -> next start, agents' own clocks; medians of {args.repeat} repeat(s)\n\n"
    )
    main = table(["", "p50 ms", "p99 ms", "max ms", "run s", "note"], rows, left=(0, 5))
    ratio_rows = [
        [
            f"orch/{ref}",
            fmt(ratio(results["orch"].get("p50_ms"), results[ref].get("p50_ms")), ".2f"),
            fmt(ratio(results["orch"].get("p99_ms"), results[ref].get("p99_ms")), ".2f"),
        ]
        for ref in ("parallel", "xargs")
    ]
    return (
        head
        + main
        + "\n\n"
        + table(["ratio of gaps (lower is better)", "p50", "p99"], ratio_rows)
        + "\ntarget: orch p99 < 5 ms"
    )


def run(args: argparse.Namespace) -> int:
    """Measure orch and the references, print the table, write the JSON; 1 when a measurement failed."""
    if args.smoke:
        args.tasks, args.concurrency, args.repeat = (
            SMOKE["tasks"],
            SMOKE["concurrency"],
            SMOKE["repeat"],
        )
    if args.tasks <= args.concurrency or args.concurrency < 1 or args.repeat < 1:
        print("bench refill: need --tasks > --concurrency >= 1 and --repeat >= 1", file=sys.stderr)
        return 2
    scratch = short_tempdir("orchbr")
    results: dict[str, dict[str, Any]] = {}
    try:
        agent = scratch / "agent.sh"
        agent.write_text(AGENT)
        agent.chmod(0o755)
        repeats: dict[str, list[dict[str, Any]]] = {key: [] for key in RUNNERS}
        for i in iterate(
            args.repeat, "orch, parallel, xargs"
        ):  # interleaved: drift moves every tool alike
            for key in RUNNERS:
                if key in results:  # skipped or failed
                    continue
                try:
                    repeats[key].append(measure_once(args, key, scratch, agent, i))
                except (Skip, BenchFailure) as exc:
                    results[key] = {
                        "status": "skipped" if isinstance(exc, Skip) else "failed",
                        "reason": str(exc),
                    }
                    print(f"  {key}: {results[key]['status']}: {exc}", file=sys.stderr)
        results.update((key, summary(r)) for key, r in repeats.items() if key not in results)
    finally:
        discard(scratch)
    finish(
        args,
        NAME,
        report(args, results),
        {"tasks": args.tasks, "concurrency": args.concurrency, "sleep": args.sleep},
        {"method": __doc__.split("Method: ", 1)[1].strip(), "results": results},
    )
    return 1 if any(r["status"] == "failed" for r in results.values()) else 0
