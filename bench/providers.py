"""Providers: the real Claude Code CLI against an API that serves K requests at once; fixed against adaptive.

    python -m bench providers [--tasks 60] [--capacity 4] [--concurrency 16] [--latency 5]
                              [--retry-after 1] [--repeat 3]

The stub Anthropic API of the end-to-end tests (tests/e2e/stubs) answers each
model request after `--latency` seconds, serves at most `--capacity` (K) at
once, and answers the others at once with a 429 and `retry-after`, as the real
API does; it counts the requests, the 429s and the most it served at once. Each
task is one real Claude Code session (`claude -p`, its own retries on, as users
run it) that asks once and ends. Three rows, each a fresh orchd, in one run:

| row | what runs |
|---|---|
| fixed | orch runs the same argv as `command` tasks at `--concurrency` (no provider: every slot at once, what peers do) |
| adaptive | orch runs `agent = "claude"` tasks at `--concurrency`: the provider's limit adapts (orchd/providers.py) |
| K at once | orch runs the same argv as `command` tasks at concurrency K: a scheduler that knows K |

Wall time is the run's span as orchd recorded it (submitted to finished). The
ideal for K is ceil(N / K) sessions in a row, each as long as a session that
never waits (the median attempt of the K-at-once row); the table gives each
row's wall time against it and against the K-at-once row's own wall time.
Targets: at most 5 % of requests answered 429, wall time at most 1.1x the ideal.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import (
    BenchFailure,
    Skip,
    add_common_arguments,
    finish,
    fmt,
    iterate,
    median,
    rounded,
    table,
)
from bench.home import OrchHome, json_of

NAME = "providers"
SMOKE = {"tasks": 4, "capacity": 2, "concurrency": 4, "latency": 0.3, "repeat": 1}
ROWS = ("fixed", "adaptive", "ideal")
TARGET_SHARE, TARGET_WALL = 0.05, 1.1


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tasks", type=int, default=60, help="sessions (default 60)")
    parser.add_argument(
        "--capacity", type=int, default=4, help="requests the API serves at once, K (default 4)"
    )
    parser.add_argument(
        "--concurrency", type=int, default=16, help="the plan's concurrency (default 16)"
    )
    parser.add_argument(
        "--latency", type=float, default=5.0, help="seconds the API takes per request (default 5)"
    )
    parser.add_argument(
        "--retry-after", type=float, default=1.0, help="the 429's retry-after (default 1 s)"
    )
    add_common_arguments(parser, repeat=3, smoke=", ".join(f"{k} {v}" for k, v in SMOKE.items()))


def claude_cli() -> str:
    """The Claude Code CLI the end-to-end tests pin, else one on PATH; Skip when there is none."""
    from tests.e2e import clis

    path = clis.find_cli("claude")
    if path is None:
        raise Skip(
            f"claude CLI not installed (npm ci --prefix tests/e2e installs {clis.PACKAGES['claude']})"
        )
    return path


def plan(args: argparse.Namespace, row: str, workdir: Path, cli: str) -> dict[str, Any]:
    """The row's plan: N one-question sessions, as claude tasks or as the same argv as commands."""
    from orchd.agents import ADAPTERS
    from orchd.plan import TaskSpec

    tasks = []
    for i in range(args.tasks):
        prompt = f"[bench] Say hello {i}."
        if row != "adaptive":  # the same argv as a command: no provider, nothing adapts
            spec = TaskSpec(id=f"t{i}", agent="claude", cwd=str(workdir), prompt=prompt)
            argv = ADAPTERS["claude"].launch(spec, 1).argv
            tasks.append({"id": f"t{i}", "command": [cli, *argv[1:]]})
        else:
            tasks.append({"id": f"t{i}", "prompt": prompt})
    return {
        "name": f"bench-providers-{row}",
        "workdir": str(workdir),
        "concurrency": args.capacity if row == "ideal" else args.concurrency,
        "isolation": "none",
        "defaults": {
            "agent": "claude" if row == "adaptive" else "command",
            "max_retries": 3,
            "timeout": "10m",
            "backoff": {"initial": "1s", "factor": 2.0, "max": "10s"},
        },
        "tasks": tasks,
    }


def measure(args: argparse.Namespace, row: str, cli: str) -> dict[str, Any]:
    """One run of the row against a fresh stub and a fresh orchd."""
    from tests.e2e import clis
    from tests.e2e.stubs.anthropic import AnthropicStub
    from tests.e2e.stubs.base import Reply, Slow

    with AnthropicStub() as stub:
        load = stub.limit(args.capacity, args.retry_after)
        stub.script("[bench]", Slow(args.latency, Reply("Hello.")))
        with OrchHome(max_sessions=args.concurrency, keep=args.keep_home, start=False) as home:
            # the CLI's own retries on, as users run it
            home.env.update(clis.claude_env(stub, home.root / "home", retries=None))
            home.env["PATH"] = clis.path_with(cli)
            home.orchctl("daemon", "start", check=True, timeout=60)
            run_id = home.submit(plan(args, row, home.workdir(), cli))
            summary = home.wait_finished(run_id, timeout=max(600.0, args.tasks * args.latency * 4))
            results = json_of(
                home.orchctl("results", run_id, "--json", check=True), "orchctl results"
            )
    durations = [t["duration"] for t in results["tasks"] if t.get("duration")]
    completed = summary["counts"].get("completed", 0)
    if completed != args.tasks:
        raise BenchFailure(
            f"{row}: {completed} of {args.tasks} tasks completed: {summary['counts']}"
        )
    return {
        "wall_s": round(summary["finished_at"] - summary["submitted_at"], 3),
        "requests": load.requests,
        "rejected": load.rejected,
        "share_429": round(load.rejected_share, 4),
        "peak_served": load.peak,
        "attempts": sum(t.get("attempts", 0) for t in results["tasks"]),
        "session_s": rounded(median(durations)),
    }


def summarise(args: argparse.Namespace, samples: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Medians per row, the ideal for K, and each row against it."""
    rows: dict[str, Any] = {}
    for row, runs in samples.items():
        if not runs:
            continue
        rows[row] = {
            key: rounded(statistics.median(r[key] for r in runs), 4)
            for key in (
                "wall_s",
                "share_429",
                "requests",
                "rejected",
                "peak_served",
                "attempts",
                "session_s",
            )
        }
        rows[row]["repeats"] = runs
    session = (rows.get("ideal") or {}).get("session_s")
    ideal = math.ceil(args.tasks / args.capacity) * session if session else None
    measured = (rows.get("ideal") or {}).get("wall_s")
    for figures in rows.values():
        figures["vs_ideal"] = rounded(figures["wall_s"] / ideal if ideal else None)
        figures["vs_k_at_once"] = rounded(figures["wall_s"] / measured if measured else None)
    adaptive = rows.get("adaptive") or {}
    return {
        "rows": rows,
        "ideal_s": rounded(ideal),
        "targets": {
            "share_429": TARGET_SHARE,
            "wall_vs_ideal": TARGET_WALL,
            "met": bool(adaptive)
            and adaptive["share_429"] <= TARGET_SHARE
            and (adaptive["vs_ideal"] or math.inf) <= TARGET_WALL,
        },
    }


def report(args: argparse.Namespace, figures: dict[str, Any]) -> str:
    labels = {
        "fixed": f"fixed: {args.concurrency} at once (commands)",
        "adaptive": f"orch adaptive (concurrency {args.concurrency})",
        "ideal": f"K = {args.capacity} at once (commands, knows K)",
    }
    rows = []
    for row in ROWS:
        f = figures["rows"].get(row)
        if f is None:
            rows.append([labels[row], *["-"] * 7])
            continue
        rows.append(
            [
                labels[row],
                fmt(f["wall_s"], ".1f"),
                fmt(f["vs_ideal"], ".2f"),
                fmt(f["vs_k_at_once"], ".2f"),
                f"{f['share_429']:.1%}",
                f"{f['rejected']:.0f}/{f['requests']:.0f}",
                fmt(f["peak_served"], ".0f"),
                fmt(f["attempts"], ".0f"),
            ]
        )
    notes = [f"{row}: {why}" for row, why in figures.get("failures", {}).items()]
    met = figures["targets"]["met"]
    return (
        f"providers: {args.tasks} Claude Code sessions, API capacity K = {args.capacity}, "
        f"{args.latency:g} s a request, 429 with retry-after {args.retry_after:g} s; "
        f"medians of {args.repeat}\n\n"
        + table(
            ["", "wall s", "x ideal", "x K-row", "429 share", "429s/requests", "peak", "attempts"],
            rows,
        )
        + f"\nideal for K: ceil({args.tasks}/{args.capacity}) x {fmt((figures['rows'].get('ideal') or {}).get('session_s'), '.2f')} s"
        f" = {fmt(figures['ideal_s'], '.1f')} s"
        + f"\ntargets (adaptive): 429 share <= {TARGET_SHARE:.0%}, wall <= {TARGET_WALL:g}x ideal: "
        + ("met" if met else "not met")
        + "".join(f"\n{n}" for n in notes)
    )


def run(args: argparse.Namespace) -> int:
    """Measure the three rows, interleaved; print the table, write the JSON; 1 when one failed."""
    if args.smoke:
        for key, value in SMOKE.items():
            setattr(args, key, value)
    load_before = list(os.getloadavg())
    samples: dict[str, list[dict[str, Any]]] = {row: [] for row in ROWS}
    failures: dict[str, str] = {}
    status = "ok"
    try:
        cli = claude_cli()
        for _ in iterate(args.repeat, NAME):
            for row in ROWS:  # interleaved: a machine whose speed drifts slows every row alike
                start = time.perf_counter()
                samples[row].append(measure(args, row, cli))
                print(f"    {row}: {time.perf_counter() - start:.0f}s", file=sys.stderr, flush=True)
    except Skip as exc:
        status, failures["all"] = "skipped", str(exc)
        print(f"  {NAME}: skipped: {exc}", file=sys.stderr)
    except BenchFailure as exc:
        status, failures["all"] = "failed", str(exc)
        print(f"  {NAME}: failed: {exc}", file=sys.stderr)
    figures = {**summarise(args, samples), "status": status, "failures": failures}
    params = {
        k: getattr(args, k.replace("-", "_"))
        for k in ("tasks", "capacity", "concurrency", "latency", "retry_after")
    }
    finish(
        args,
        NAME,
        report(args, figures),
        {**params, "load_before": load_before},
        {"method": (__doc__ or "").split("\n\n", 2)[2].strip(), **figures},
    )
    return 1 if status == "failed" else 0
