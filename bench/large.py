"""Large runs: plans of 1,000 to 100,000 `true` tasks; submit, memory, status and run time, and their growth.

    python -m bench large [--sizes 1000,10000,100000] [--concurrency 64] [--repeat 1]

Per size, in a fresh ORCH_HOME: the wall time of `orchctl submit PLAN --json`
(client start, sending and checking the plan, recording RunSubmitted); the
daemon's VmRSS right after it and its peak (VmHWM) at the end; the run time as
the daemon recorded it (finished_at - submitted_at; the run's end is long-polled
for, an Events request for its RunFinished only); the wall time of `orchctl status RUN --json` on the
finished run. Reference: GNU parallel -jC --joblog on the same N `true` tasks.
Growth: each figure at one size over the same figure at the previous size,
beside the size ratio: at or under it is linear or better.
"""

from __future__ import annotations

import argparse
import sys
from types import SimpleNamespace
from typing import Any

from bench import procfs
from bench.common import (
    BenchFailure,
    Skip,
    add_common_arguments,
    finish,
    fmt,
    iterate,
    median,
    ratio,
    rounded,
    sizes,
    table,
    timed,
)
from bench.dispatch import measure_parallel
from bench.home import OrchHome, command_plan, json_of, run_summary

NAME = "large"
SMOKE = {"sizes": [10, 30], "repeat": 1}
FIGURES = {
    "submit_s": "submit s",
    "rss_after_submit_mib": "RSS after submit MiB",
    "peak_rss_mib": "peak RSS MiB",
    "status_s": "status --json s",
    "run_s": "orch run s",
    "parallel_s": "GNU parallel s",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--sizes",
        type=sizes,
        default=[1000, 10_000, 100_000],
        help="tasks per plan, smallest first (default 1000,10000,100000)",
    )
    parser.add_argument("--concurrency", type=int, default=64, help="tasks at once (default 64)")
    add_common_arguments(parser, repeat=1, smoke=f"sizes {SMOKE['sizes']}")


def measure_orch(args: argparse.Namespace, tasks: int) -> dict[str, float]:
    with OrchHome(max_sessions=args.concurrency, keep=args.keep_home) as home:
        pid = home.daemon_pid()
        plan = home.write_plan(command_plan(tasks, args.concurrency, home.workdir(), ["true"]))
        submit_s, result = timed(
            lambda: home.orchctl("submit", str(plan), "--json", check=True, timeout=600)
        )
        rss = procfs.rss_mib(pid)
        run_id = str(run_summary(json_of(result, "orchctl submit"))["run_id"])
        summary = home.wait_finished(run_id, timeout=max(300.0, tasks / 20))
        if summary["state"] != "completed" or summary["counts"].get("completed") != tasks:
            raise BenchFailure(f"run {run_id} ended {summary['state']}: {summary['counts']}")
        status_s, status = timed(
            lambda: home.orchctl("status", run_id, "--json", check=True, timeout=600)
        )
        return {
            "submit_s": submit_s,
            "rss_after_submit_mib": rss or 0.0,
            "peak_rss_mib": procfs.peak_rss_mib(pid) or 0.0,
            "status_s": status_s,
            "run_s": summary["finished_at"] - summary["submitted_at"],
            "status_bytes": len(status.stdout),
        }


def measure_size(args: argparse.Namespace, tasks: int) -> dict[str, Any]:
    samples = [measure_orch(args, tasks) for _ in iterate(args.repeat, f"orch, {tasks} tasks")]
    out: dict[str, Any] = {k: rounded(median([s[k] for s in samples]), 3) for k in samples[0]}
    out["status"] = "ok"
    try:
        (series,) = measure_parallel(
            SimpleNamespace(concurrency=args.concurrency, repeat=args.repeat), tasks
        )
        out["parallel_s"] = rounded(median(series.seconds))
    except (Skip, BenchFailure) as exc:
        out["parallel_s"], out["parallel_note"] = None, str(exc)
        print(f"  parallel: {exc}", file=sys.stderr)
    out["orch/parallel_run_time"] = rounded(ratio(out["run_s"], out["parallel_s"]))
    return out


def growth(per_size: dict[int, dict[str, Any]]) -> list[dict[str, Any]]:
    """Each figure's ratio between consecutive sizes, beside the size ratio."""
    out, ordered = [], sorted(per_size)
    for small, big in zip(ordered, ordered[1:]):
        row: dict[str, Any] = {"from": small, "to": big, "tasks": rounded(big / small, 2)}
        for key in FIGURES:
            a, b = per_size[small].get(key), per_size[big].get(key)
            row[key] = rounded(ratio(b, a), 2)
        out.append(row)
    return out


def report(
    args: argparse.Namespace, per_size: dict[int, dict[str, Any]], grow: list[dict[str, Any]]
) -> str:
    rows = []
    for tasks, f in per_size.items():
        if f.get("status") != "ok":
            rows.append(
                [f"{tasks:,}", *["-"] * (len(FIGURES) + 1), f"{f['status']}: {f['reason']}"[:80]]
            )
            continue
        rows.append(
            [
                f"{tasks:,}",
                *(fmt(f.get(k), ".3f" if k.endswith("_s") else ".1f") for k in FIGURES),
                fmt(f.get("orch/parallel_run_time"), ".2f"),
                f.get("parallel_note", "")[:60],
            ]
        )
    head = (
        f"large: plans of `true` tasks at concurrency {args.concurrency}; "
        f"medians of {args.repeat} repeat(s)\n\n"
    )
    main = table(
        ["tasks", *FIGURES.values(), "orch/parallel time", "note"], rows, left=(0, len(FIGURES) + 2)
    )
    grow_rows = [
        [
            f"{g['from']:,} -> {g['to']:,}",
            fmt(g["tasks"], ".1f"),
            *(fmt(g[k], ".2f") for k in FIGURES),
        ]
        for g in grow
    ]
    return (
        head
        + main
        + "\n\ngrowth between sizes (x; at or below the tasks column is linear or better)\n\n"
        + table(["sizes", "tasks", *FIGURES.values()], grow_rows)
    )


def run(args: argparse.Namespace) -> int:
    """Measure every size, print the tables, write the JSON; 1 when an orch measurement failed."""
    if args.smoke:
        args.sizes, args.repeat = SMOKE["sizes"], SMOKE["repeat"]
    per_size: dict[int, dict[str, Any]] = {}
    for tasks in sorted(args.sizes):
        try:
            per_size[tasks] = measure_size(args, tasks)
        except BenchFailure as exc:
            per_size[tasks] = {"status": "failed", "reason": str(exc)}
            print(f"  {tasks} tasks: failed: {exc}", file=sys.stderr)
    grow = growth({k: v for k, v in per_size.items() if v.get("status") == "ok"})
    finish(
        args,
        NAME,
        report(args, per_size, grow),
        {"sizes": args.sizes, "concurrency": args.concurrency},
        {
            "method": __doc__.split("\n\n", 2)[2].strip(),
            "results": {str(k): v for k, v in per_size.items()},
            "growth": grow,
        },
    )
    return 1 if any(v.get("status") == "failed" for v in per_size.values()) else 0
