"""Dispatch throughput: N trivial tasks (`true`) at concurrency C through orch, GNU parallel and xargs.

    python -m bench dispatch [--tasks 2000] [--concurrency 64] [--repeat 3] [--skip-orch]

orch is measured twice per repeat: the wall time of `orchctl submit PLAN --wait
--json` (client start, submit, every task, the final status), and the run's
own span as the daemon recorded it (`finished_at - submitted_at`).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

from bench.common import (RESULTS_DIR, BenchFailure, OrchHome, Series, Skip, fmt, iterate, ratio,
                          require_tool, short_tempdir, table, tail, timed, write_results)

NAME = "dispatch"
SMOKE = {"tasks": 20, "repeat": 1}

# What each measurement produces: (key in the JSON, label in the table, what it times).
SERIES: dict[str, list[tuple[str, str, str]]] = {
    "orch": [("orch", "orch submit --wait (wall)",
              "wall time of `orchctl submit PLAN --wait --json`, from launching it until it returns"),
             ("orch_daemon", "orch run span (daemon)",
              "the run's finished_at - submitted_at, as the daemon recorded them in its log")],
    "parallel": [("parallel", "GNU parallel -j",
                  "wall time of `parallel -jC --joblog J true :::: ARGFILE`")],
    "xargs": [("xargs", "xargs -P", "wall time of `xargs -P C -n 1 true` fed N lines")],
}


def new_series(group: str, tasks: int, **status: str) -> list[Series]:
    """Empty Series for one measurement group (or skipped/failed ones, with `status` and `reason`)."""
    return [Series(key, label, tasks, **status) for key, label, _ in SERIES[group]]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tasks", type=int, default=2000, help="tasks per measurement (default 2000)")
    parser.add_argument("--concurrency", type=int, default=64, help="processes at once (default 64)")
    parser.add_argument("--repeat", type=int, default=3, help="measurements of each (default 3)")
    parser.add_argument("--skip-orch", action="store_true", help="measure only the references")
    parser.add_argument("--keep-home", action="store_true", help="keep orch's ORCH_HOME (its log) for a look")
    parser.add_argument("--smoke", action="store_true",
                        help=f"tiny sizes ({SMOKE['tasks']} tasks, repeat {SMOKE['repeat']}) for tests")
    parser.add_argument("--output", type=Path, default=None,
                        help="JSON file of the figures (default bench/results/dispatch.json; "
                             "dispatch-smoke.json with --smoke)")


# ------------------------------------------------------------ orch


def plan_for(tasks: int, concurrency: int, workdir: Path) -> dict[str, Any]:
    """A plan of `tasks` command tasks that each run `true`, no retries."""
    return {"name": "bench", "concurrency": concurrency, "workdir": str(workdir),
            "defaults": {"agent": "command", "max_retries": 0},
            "tasks": [{"id": f"t{i}", "command": ["true"]} for i in range(tasks)]}


def run_summary(doc: Any) -> dict[str, Any]:
    """The run summary in `submit --json` / `status RUN --json` output (flat, under "summary", or runs[0])."""
    if isinstance(doc, dict) and isinstance(doc.get("runs"), list) and doc["runs"]:
        doc = doc["runs"][0]
    if isinstance(doc, dict) and isinstance(doc.get("summary"), dict):
        doc = doc["summary"]
    if not isinstance(doc, dict) or "run_id" not in doc:
        raise BenchFailure(f"no run in orchctl's JSON: {tail(json.dumps(doc), 300)}")
    return doc


def _json_of(result: subprocess.CompletedProcess, what: str) -> Any:
    try:
        return json.loads(result.stdout)
    except json.JSONDecodeError:
        raise BenchFailure(f"{what} exited {result.returncode} without JSON: {tail(result.stdout, 300)} "
                           f"{tail(result.stderr)}") from None


def measure_orch_once(tasks: int, concurrency: int, keep: bool) -> tuple[float, float]:
    """(wall seconds of `submit --wait`, the run's span as the daemon saw it), in a fresh ORCH_HOME."""
    with OrchHome(max_sessions=concurrency, keep=keep) as home:
        plan = home.root / "plan.json"
        plan.write_text(json.dumps(plan_for(tasks, concurrency, home.workdir())))
        submit_timeout = max(120.0, tasks / 10)
        wall, result = timed(lambda: home.orchctl("submit", str(plan), "--wait", "--json", timeout=submit_timeout))
        summary = run_summary(_json_of(result, "orchctl submit"))
        completed = summary.get("counts", {}).get("completed", tasks)
        if result.returncode != 0 or summary.get("state") != "completed" or completed != tasks:
            raise BenchFailure(f"run {summary.get('run_id')} ended {summary.get('state')} with "
                               f"{completed}/{tasks} completed (exit {result.returncode}); {home.daemon_log_tail()}")
        status = run_summary(_json_of(home.orchctl("status", summary["run_id"], "--json", check=True),
                                      "orchctl status"))
        if status.get("finished_at") is None:
            raise BenchFailure(f"run {status['run_id']} has no finished_at")
        return wall, float(status["finished_at"]) - float(status["submitted_at"])


def measure_orch(args: argparse.Namespace) -> list[Series]:
    wall, daemon = new_series("orch", args.tasks)
    for _ in iterate(args.repeat, "orch"):
        seconds, span = measure_orch_once(args.tasks, args.concurrency, args.keep_home)
        wall.seconds.append(seconds)
        daemon.seconds.append(span)
    return [wall, daemon]


# ------------------------------------------------------------ references


def _task_lines(tasks: int) -> str:
    return "".join(f"{i}\n" for i in range(1, tasks + 1))


def measure_parallel(args: argparse.Namespace) -> list[Series]:
    """GNU parallel -jC --joblog J true :::: ARGFILE (one `true N` process per line)."""
    parallel = require_tool("parallel", "apt-get install parallel")
    (series,) = new_series("parallel", args.tasks)
    scratch = short_tempdir("orchbp")
    try:
        argfile, joblog = scratch / "args", scratch / "joblog"
        argfile.write_text(_task_lines(args.tasks))
        version = subprocess.run([parallel, "--version"], capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if "GNU parallel" not in version.stdout:
            raise Skip(f"{parallel} is not GNU parallel (moreutils has one too; apt-get install parallel)")
        for _ in iterate(args.repeat, "parallel"):
            joblog.unlink(missing_ok=True)
            argv = [parallel, f"-j{args.concurrency}", "--joblog", str(joblog), "true", "::::", str(argfile)]
            seconds, result = timed(lambda: subprocess.run(argv, capture_output=True, stdin=subprocess.DEVNULL,
                                                           cwd=scratch))
            if result.returncode != 0:
                raise BenchFailure(f"parallel exited {result.returncode}: {tail(result.stderr)}")
            exits = [line.split("\t")[6] for line in joblog.read_text().splitlines()[1:]]
            if len(exits) != args.tasks or any(code != "0" for code in exits):
                raise BenchFailure(f"parallel's joblog has {len(exits)} jobs, "
                                   f"{sum(c != '0' for c in exits)} failed; expected {args.tasks} ok")
            series.seconds.append(seconds)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return [series]


def measure_xargs(args: argparse.Namespace) -> list[Series]:
    """xargs -P C -n 1 true, fed N lines: `-n 1` makes one `true N` process per line."""
    xargs = require_tool("xargs", "apt-get install findutils")
    (series,) = new_series("xargs", args.tasks)
    lines = _task_lines(args.tasks).encode()
    argv = [xargs, "-P", str(args.concurrency), "-n", "1", "true"]
    for _ in iterate(args.repeat, "xargs"):
        seconds, result = timed(lambda: subprocess.run(argv, input=lines, capture_output=True))
        if result.returncode != 0:
            raise BenchFailure(f"xargs exited {result.returncode}: {tail(result.stderr)}")
        series.seconds.append(seconds)
    return [series]


MEASURES: dict[str, Callable[[argparse.Namespace], list[Series]]] = {
    "orch": measure_orch, "parallel": measure_parallel, "xargs": measure_xargs}


def collect(args: argparse.Namespace) -> dict[str, list[Series]]:
    """Every measurement, a skipped or failed one as a Series that says why."""
    out: dict[str, list[Series]] = {}
    for key, measure in MEASURES.items():
        if key == "orch" and args.skip_orch:
            out[key] = new_series(key, args.tasks, status="skipped", reason="--skip-orch")
            continue
        try:
            out[key] = measure(args)
        except (Skip, BenchFailure) as exc:
            status = "skipped" if isinstance(exc, Skip) else "failed"
            out[key] = new_series(key, args.tasks, status=status, reason=str(exc))
            print(f"  {key}: {status}: {exc}", file=sys.stderr)
    return out


# ------------------------------------------------------------ report


def ratios(measured: dict[str, list[Series]]) -> dict[str, dict[str, float | None]]:
    """orch's tasks/s over each reference's, best against best and median against median."""
    out: dict[str, dict[str, float | None]] = {}
    for mine in measured["orch"]:
        for ref in ("parallel", "xargs"):
            other = measured[ref][0]
            out[f"{mine.key}/{other.key}"] = {"best": _round(ratio(mine.best_rate, other.best_rate)),
                                        "median": _round(ratio(mine.median_rate, other.median_rate))}
    return out


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def report(args: argparse.Namespace, measured: dict[str, list[Series]]) -> str:
    rows = []
    for series in (s for group in measured.values() for s in group):
        note = "" if series.ok else f"{series.status}: {series.reason}"
        rows.append([series.label, fmt(series.best_rate), fmt(series.median_rate),
                     fmt(min(series.seconds) if series.ok else None, ".3f"), note[:100]])
    head = (f"dispatch: {args.tasks} tasks of `true`, concurrency {args.concurrency}, "
            f"best of {args.repeat}\n\n")
    main = table(["", "best tasks/s", "median tasks/s", "best s", "note"], rows, left=(0, 4))
    ratio_rows = [[name, fmt(r["best"], ".2f"), fmt(r["median"], ".2f")] for name, r in ratios(measured).items()]
    return head + main + "\n\n" + table(["ratio of tasks/s", "best", "median"], ratio_rows)


def run(args: argparse.Namespace) -> int:
    """Measure, print the table, write the JSON; exit 1 when a measurement failed (a skip is fine)."""
    if args.smoke:
        args.tasks, args.repeat = SMOKE["tasks"], SMOKE["repeat"]
    if args.tasks < 1 or args.concurrency < 1 or args.repeat < 1:
        print("bench dispatch: --tasks, --concurrency and --repeat must be at least 1", file=sys.stderr)
        return 2
    output = args.output or RESULTS_DIR / ("dispatch-smoke.json" if args.smoke else "dispatch.json")
    measured = collect(args)
    print(report(args, measured))
    params = {"tasks": args.tasks, "concurrency": args.concurrency, "repeat": args.repeat, "smoke": args.smoke}
    figures = {"how": {key: how for group in SERIES.values() for key, _, how in group},
               "results": {s.key: s.to_json() for group in measured.values() for s in group},
               "ratios": ratios(measured)}
    print(f"\nwrote {write_results(output, NAME, params, figures)}")
    failed = [s for group in measured.values() for s in group if s.status == "failed"]
    return 1 if failed else 0
