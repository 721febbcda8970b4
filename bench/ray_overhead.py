"""Dispatch overhead per task on the Ray executor vs the local one: N trivial tasks (`true`) at concurrency C.

    python -m bench.ray_overhead [--tasks 200] [--concurrency 8] [--repeat 1] [--address HOST:PORT]

Both executors run the same plan in the same invocation, each in a fresh ORCH_HOME with its own
orchd. Without --address, a local Ray cluster is started for the measurement (a head that runs
no sessions and one worker node with C session slots and the CPU count of this machine, all on
127.0.0.1) and shut down after.
Figures: tasks/s of the run (the daemon's own span), the time per task per session slot
(span x C / N), and, from the log, each attempt's launch-to-start (AttemptLaunching ->
AttemptStarted) and launch-to-finish (AttemptLaunching -> AttemptFinished) latencies.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.common import (
    BenchFailure,
    add_common_arguments,
    finish,
    fmt,
    iterate,
    median,
    percentile,
    rounded,
    short_tempdir,
    table,
)
from bench.home import OrchHome, command_plan, json_of, run_summary

NAME = "ray_overhead"
SMOKE = {"tasks": 20, "repeat": 1}
RESOURCE = "orch_session"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tasks", type=int, default=200, help="tasks per run (default 200)")
    parser.add_argument("--concurrency", type=int, default=8, help="sessions at once (default 8)")
    parser.add_argument(
        "--address",
        default=None,
        help="an existing Ray cluster (its nodes declaring orch_session); default: start one here",
    )
    add_common_arguments(
        parser, repeat=1, smoke=f"{SMOKE['tasks']} tasks, repeat {SMOKE['repeat']}"
    )


class LocalCluster:
    """A Ray cluster on 127.0.0.1 for the measurement: a head with no session slot, one worker with C."""

    def __init__(self, sessions: int) -> None:
        # a one-machine cluster: Ray (and the orchd drivers, which inherit this) stays on 127.0.0.1
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        self.sessions = sessions
        self.temp = short_tempdir("rayb")

    def __enter__(self) -> str:
        from ray.cluster_utils import Cluster

        os.environ["RAY_TMPDIR"] = str(self.temp)
        node = {"object_store_memory": 100 << 20, "node_ip_address": "127.0.0.1"}
        self.cluster = Cluster(
            initialize_head=True,
            head_node_args={
                **node,
                "num_cpus": 0,
                "resources": {RESOURCE: 0},
                "include_dashboard": False,
                "temp_dir": str(self.temp / "ray"),
            },
        )
        # num_cpus as on a real node: Ray starts at most that many worker processes at once
        self.cluster.add_node(
            **node, num_cpus=os.cpu_count() or 1, resources={RESOURCE: self.sessions}
        )
        self.cluster.wait_for_nodes()
        return self.cluster.address

    def __exit__(self, *exc_info: object) -> None:
        self.cluster.shutdown()
        shutil.rmtree(self.temp, ignore_errors=True)


def ray_config(address: str) -> Any:
    """A `prepare` for OrchHome: choose the Ray executor in the fresh home's config.toml."""

    def prepare(root: Path) -> None:
        with open(root / "config" / "config.toml", "a") as config:
            config.write(f'executor = "ray"\nray = {{address = {json.dumps(address)}}}\n')

    return prepare


def latencies(home: OrchHome, run_id: str) -> tuple[list[float], list[float]]:
    """Each attempt's (launch -> start, launch -> finish) seconds, from the run's events."""
    out = home.orchctl("events", "--run", run_id, "--json", check=True, timeout=300).stdout
    marks: dict[tuple[str, int], dict[str, float]] = {}
    for line in out.splitlines():
        row = json.loads(line)
        if row["kind"] in ("AttemptLaunching", "AttemptStarted", "AttemptFinished"):
            marks.setdefault((row["task_id"], row["event"]["attempt"]), {})[row["kind"]] = float(
                row["ts"]
            )
    started = [m["AttemptStarted"] - m["AttemptLaunching"] for m in marks.values() if len(m) == 3]
    finished = [m["AttemptFinished"] - m["AttemptLaunching"] for m in marks.values() if len(m) == 3]
    return started, finished


def measure_once(args: argparse.Namespace, tasks: int, address: str | None) -> dict[str, Any]:
    """One run of `tasks` trivial tasks on the local executor (address None) or on Ray."""
    prepare = ray_config(address) if address is not None else None
    with OrchHome(max_sessions=args.concurrency, keep=args.keep_home, prepare=prepare) as home:
        plan = home.write_plan(command_plan(tasks, args.concurrency, home.workdir(), ["true"]))
        result = home.orchctl(
            "submit", str(plan), "--wait", "--json", timeout=max(300.0, tasks * 5.0)
        )
        summary = run_summary(json_of(result, "orchctl submit"))
        if result.returncode != 0 or summary.get("state") != "completed":
            raise BenchFailure(
                f"run {summary.get('run_id')} ended {summary.get('state')} "
                f"(exit {result.returncode}); {home.daemon_log_tail()}"
            )
        span = float(summary["finished_at"]) - float(summary["submitted_at"])
        started, finished = latencies(home, summary["run_id"])
        return {"span": span, "started": started, "finished": finished}


def figures(runs: list[dict[str, Any]], tasks: int, concurrency: int) -> dict[str, Any]:
    """The figures of one executor's repeats: medians over the repeats, percentiles over every attempt."""
    span = median([r["span"] for r in runs]) or 0.0
    started = [s for r in runs for s in r["started"]]
    finished = [s for r in runs for s in r["finished"]]
    return {
        "spans": [round(r["span"], 3) for r in runs],
        "per_s": rounded(tasks / span, 1),
        "per_task_per_slot_ms": rounded(span * concurrency / tasks * 1000, 1),
        "launch_to_start_ms": {
            p: rounded((percentile(started, p) or 0) * 1000, 1) for p in (50, 90, 99)
        },
        "launch_to_finish_ms": {
            p: rounded((percentile(finished, p) or 0) * 1000, 1) for p in (50, 90, 99)
        },
    }


def clusters(args: argparse.Namespace) -> Iterator[str]:
    if args.address is not None:
        yield args.address
        return
    with LocalCluster(args.concurrency) as address:
        yield address


def run(args: argparse.Namespace) -> int:
    tasks, repeat = (SMOKE["tasks"], SMOKE["repeat"]) if args.smoke else (args.tasks, args.repeat)
    args.repeat = repeat
    if importlib.util.find_spec("ray") is None:
        print("ray_overhead: needs Ray (pip install -e '.[ray]')", file=sys.stderr)
        return 2
    results: dict[str, dict[str, Any]] = {}
    try:
        results["local"] = figures(
            [measure_once(args, tasks, None) for _ in iterate(repeat, "local")],
            tasks,
            args.concurrency,
        )
        for address in clusters(args):
            results["ray"] = figures(
                [measure_once(args, tasks, address) for _ in iterate(repeat, "ray")],
                tasks,
                args.concurrency,
            )
    except BenchFailure as exc:
        print(f"ray_overhead: {exc}", file=sys.stderr)
        return 1
    rows = [
        [
            name,
            fmt(r["per_s"], ",.1f"),
            fmt(r["per_task_per_slot_ms"], ",.1f"),
            fmt(r["launch_to_start_ms"][50], ",.1f"),
            fmt(r["launch_to_finish_ms"][50], ",.1f"),
            fmt(r["launch_to_finish_ms"][90], ",.1f"),
        ]
        for name, r in results.items()
    ]
    local, remote = results["local"], results["ray"]
    extra = (remote["per_task_per_slot_ms"] or 0) - (local["per_task_per_slot_ms"] or 0)
    text = (
        f"{tasks} tasks (`true`), concurrency {args.concurrency}, repeat {repeat}\n\n"
        + table(
            [
                "executor",
                "tasks/s",
                "ms per task per slot",
                "launch->start p50 ms",
                "launch->finish p50 ms",
                "p90 ms",
            ],
            rows,
        )
        + f"\n\nRay adds {extra:,.0f} ms per task per session slot (mostly starting the attempt's actor: "
        "a fresh Ray worker process)."
    )
    finish(
        args,
        NAME,
        text,
        {"tasks": tasks, "concurrency": args.concurrency, "address": args.address},
        {"executors": results, "ray_extra_ms_per_task_per_slot": round(extra, 1)},
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.ray_overhead",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
