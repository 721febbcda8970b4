"""Dispatch throughput: N trivial tasks (`true`) at concurrency C through orch, GNU parallel and xargs.

    python -m bench dispatch [--tasks 2000,20000] [--concurrency 64] [--repeat 3] [--skip-orch]

orch is measured twice per repeat: the wall time of `orchctl submit PLAN --wait
--json` (client start, submit, every task, the final status), and the run's
own span as the daemon recorded it (`finished_at - submitted_at`). Repeats are
interleaved (orch, parallel, xargs, orch, ...): a machine whose speed drifts
during the run moves every tool alike.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Callable

from bench.common import (
    BenchFailure,
    Series,
    Skip,
    add_common_arguments,
    discard,
    finish,
    fmt,
    iterate,
    ratio,
    require_tool,
    rounded,
    scratch_tmpdir,
    short_tempdir,
    sizes,
    table,
    tail,
    timed,
)
from bench.home import OrchHome, command_plan, json_of, run_summary

NAME = "dispatch"
SMOKE = {"tasks": [20], "repeat": 1}

# What each measurement produces: (key in the JSON, label in the table, what it times).
SERIES: dict[str, list[tuple[str, str, str]]] = {
    "orch": [
        (
            "orch",
            "orch submit --wait (wall)",
            "wall time of `orchctl submit PLAN --wait --json`, from launching it until it returns",
        ),
        (
            "orch_daemon",
            "orch run span (daemon)",
            "the run's finished_at - submitted_at, as the daemon recorded them in its log",
        ),
    ],
    "parallel": [
        ("parallel", "GNU parallel -j", "wall time of `parallel -jC --joblog J true :::: ARGFILE`")
    ],
    "xargs": [("xargs", "xargs -P", "wall time of `xargs -P C -n 1 true` fed N lines")],
}


def new_series(group: str, tasks: int, **status: str) -> list[Series]:
    """Empty Series for one measurement group (or skipped/failed ones, with `status` and `reason`)."""
    return [Series(key, label, tasks, **status) for key, label, _ in SERIES[group]]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--tasks",
        type=sizes,
        default=[2000, 20000],
        help="tasks per measurement, one or more sizes (default 2000,20000)",
    )
    parser.add_argument(
        "--concurrency", type=int, default=64, help="processes at once (default 64)"
    )
    parser.add_argument("--skip-orch", action="store_true", help="measure only the references")
    add_common_arguments(
        parser, repeat=3, smoke=f"{SMOKE['tasks'][0]} tasks, repeat {SMOKE['repeat']}"
    )


# ------------------------------------------------------------ orch


def measure_orch_once(tasks: int, concurrency: int, keep: bool) -> tuple[float, float]:
    """(wall seconds of `submit --wait`, the run's span as the daemon saw it), in a fresh ORCH_HOME."""
    with OrchHome(max_sessions=concurrency, keep=keep) as home:
        plan = home.write_plan(command_plan(tasks, concurrency, home.workdir(), ["true"]))
        submit_timeout = max(120.0, tasks / 10)
        wall, result = timed(
            lambda: home.orchctl("submit", str(plan), "--wait", "--json", timeout=submit_timeout)
        )
        summary = run_summary(json_of(result, "orchctl submit"))
        completed = summary.get("counts", {}).get("completed", tasks)
        if result.returncode != 0 or summary.get("state") != "completed" or completed != tasks:
            raise BenchFailure(
                f"run {summary.get('run_id')} ended {summary.get('state')} with "
                f"{completed}/{tasks} completed (exit {result.returncode}); {home.daemon_log_tail()}"
            )
        status = run_summary(
            json_of(
                home.orchctl("status", summary["run_id"], "--json", check=True), "orchctl status"
            )
        )
        if status.get("finished_at") is None:
            raise BenchFailure(f"run {status['run_id']} has no finished_at")
        return wall, float(status["finished_at"]) - float(status["submitted_at"])


def measure_orch(args: argparse.Namespace, tasks: int) -> list[Series]:
    wall, daemon = new_series("orch", tasks)
    for _ in iterate(args.repeat, f"orch, {tasks} tasks"):
        seconds, span = measure_orch_once(tasks, args.concurrency, args.keep_home)
        wall.seconds.append(seconds)
        daemon.seconds.append(span)
    return [wall, daemon]


# ------------------------------------------------------------ references


def _task_lines(tasks: int) -> str:
    return "".join(f"{i}\n" for i in range(1, tasks + 1))


def measure_parallel(args: argparse.Namespace, tasks: int) -> list[Series]:
    """GNU parallel -jC --joblog J true :::: ARGFILE (one `true N` process per line)."""
    parallel = require_tool("parallel", "apt-get install parallel")
    (series,) = new_series("parallel", tasks)
    scratch = short_tempdir("orchbp")
    try:
        argfile, joblog = scratch / "args", scratch / "joblog"
        argfile.write_text(_task_lines(tasks))
        version = subprocess.run(
            [parallel, "--version"], capture_output=True, text=True, stdin=subprocess.DEVNULL
        )
        if "GNU parallel" not in version.stdout:
            raise Skip(
                f"{parallel} is not GNU parallel (moreutils has one too; apt-get install parallel)"
            )
        for _ in iterate(args.repeat, f"parallel, {tasks} tasks"):
            joblog.unlink(missing_ok=True)
            argv = [
                parallel,
                f"-j{args.concurrency}",
                "--joblog",
                str(joblog),
                "true",
                "::::",
                str(argfile),
            ]
            seconds, result = timed(
                lambda: subprocess.run(
                    argv,
                    capture_output=True,
                    stdin=subprocess.DEVNULL,
                    cwd=scratch,
                    env={**os.environ, "TMPDIR": scratch_tmpdir()},
                )
            )
            if result.returncode != 0:
                raise BenchFailure(f"parallel exited {result.returncode}: {tail(result.stderr)}")
            exits = [line.split("\t")[6] for line in joblog.read_text().splitlines()[1:]]
            if len(exits) != tasks or any(code != "0" for code in exits):
                raise BenchFailure(
                    f"parallel's joblog has {len(exits)} jobs, "
                    f"{sum(c != '0' for c in exits)} failed; expected {tasks} ok"
                )
            series.seconds.append(seconds)
    finally:
        discard(scratch)
    return [series]


def measure_xargs(args: argparse.Namespace, tasks: int) -> list[Series]:
    """xargs -P C -n 1 true, fed N lines: `-n 1` makes one `true N` process per line."""
    xargs = require_tool("xargs", "apt-get install findutils")
    (series,) = new_series("xargs", tasks)
    lines = _task_lines(tasks).encode()
    argv = [xargs, "-P", str(args.concurrency), "-n", "1", "true"]
    for _ in iterate(args.repeat, f"xargs, {tasks} tasks"):
        seconds, result = timed(lambda: subprocess.run(argv, input=lines, capture_output=True))
        if result.returncode != 0:
            raise BenchFailure(f"xargs exited {result.returncode}: {tail(result.stderr)}")
        series.seconds.append(seconds)
    return [series]


MEASURES: dict[str, Callable[[argparse.Namespace, int], list[Series]]] = {
    "orch": measure_orch,
    "parallel": measure_parallel,
    "xargs": measure_xargs,
}


def collect(args: argparse.Namespace, tasks: int) -> dict[str, list[Series]]:
    """Every measurement at one size, a skipped or failed one as a Series that says why.

    Repeats are interleaved (orch, parallel, xargs, orch, ...), so that a machine whose speed
    drifts during the run (this project's VMs do: see bench/README.md) moves every tool alike.
    """
    out: dict[str, list[Series]] = {}
    once = argparse.Namespace(**{**vars(args), "repeat": 1})
    for i in range(1, args.repeat + 1):
        print(f"  {tasks} tasks: repeat {i}/{args.repeat}", file=sys.stderr, flush=True)
        for key, measure in MEASURES.items():
            if key in out and not all(series.ok for series in out[key]):
                continue  # skipped or failed in an earlier repeat
            if key == "orch" and args.skip_orch:
                out[key] = new_series(key, tasks, status="skipped", reason="--skip-orch")
                continue
            try:
                measured = measure(once, tasks)
            except (Skip, BenchFailure) as exc:
                status = "skipped" if isinstance(exc, Skip) else "failed"
                out[key] = new_series(key, tasks, status=status, reason=str(exc))
                print(f"  {key}: {status}: {exc}", file=sys.stderr)
                continue
            if key not in out:
                out[key] = measured
            else:
                for series, more in zip(out[key], measured):
                    series.seconds.extend(more.seconds)
    return out


# ------------------------------------------------------------ report


def ratios(measured: dict[str, list[Series]]) -> dict[str, dict[str, float | None]]:
    """orch's tasks/s over each reference's, best against best and median against median."""
    out: dict[str, dict[str, float | None]] = {}
    for mine in measured["orch"]:
        for ref in ("parallel", "xargs"):
            other = measured[ref][0]
            out[f"{mine.key}/{other.key}"] = {
                "best": rounded(ratio(mine.best_rate, other.best_rate)),
                "median": rounded(ratio(mine.median_rate, other.median_rate)),
            }
    return out


def report(args: argparse.Namespace, tasks: int, measured: dict[str, list[Series]]) -> str:
    rows = []
    for series in (s for group in measured.values() for s in group):
        note = "" if series.ok else f"{series.status}: {series.reason}"
        rows.append(
            [
                series.label,
                fmt(series.best_rate),
                fmt(series.median_rate),
                fmt(min(series.seconds) if series.ok else None, ".3f"),
                note[:100],
            ]
        )
    head = (
        f"dispatch: {tasks} tasks of `true`, concurrency {args.concurrency}, "
        f"{args.repeat} repeat(s)\n\n"
    )
    main = table(["", "best tasks/s", "median tasks/s", "best s", "note"], rows, left=(0, 4))
    ratio_rows = [
        [name, fmt(r["best"], ".2f"), fmt(r["median"], ".2f")]
        for name, r in ratios(measured).items()
    ]
    targets = "targets: orch/parallel >= 3, orch/xargs >= 0.8 (reported, not asserted)"
    return (
        head
        + main
        + "\n\n"
        + table(["ratio of tasks/s", "best", "median"], ratio_rows)
        + "\n"
        + targets
    )


def run(args: argparse.Namespace) -> int:
    """Measure every size, print the tables, write the JSON; exit 1 when a measurement failed (a skip is fine)."""
    if args.smoke:
        args.tasks, args.repeat = SMOKE["tasks"], SMOKE["repeat"]
    if args.concurrency < 1 or args.repeat < 1:
        print("bench dispatch: --concurrency and --repeat must be at least 1", file=sys.stderr)
        return 2
    texts, results, all_ratios, failed = [], {}, {}, False
    for tasks in args.tasks:
        measured = collect(args, tasks)
        texts.append(report(args, tasks, measured))
        print(texts[-1] + "\n", flush=True)
        results[str(tasks)] = {s.key: s.to_json() for group in measured.values() for s in group}
        all_ratios[str(tasks)] = ratios(measured)
        failed = failed or any(s.status == "failed" for group in measured.values() for s in group)
    params = {"tasks": args.tasks, "concurrency": args.concurrency}
    figures = {
        "how": {key: how for group in SERIES.values() for key, _, how in group},
        "results": results,
        "ratios": all_ratios,
    }
    finish(args, NAME, "\n\n".join(texts), params, figures)
    return 1 if failed else 0
