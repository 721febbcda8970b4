"""Many sessions: N agents that sleep at once; the daemon's memory, threads and idle CPU while they run.

    python -m bench sessions [--sessions 1000] [--idle 10] [--repeat 1]

orch: a run of N tasks `sleep 60` at concurrency N (config.toml raises
max_sessions to N). Once every agent runs (found by ORCH_RUN_ID in
/proc/PID/environ) and the log has stopped growing, the daemon's VmRSS and
Threads are read from /proc/PID/status and its CPU from utime+stime in
/proc/PID/stat over `--idle` seconds. Then the run is cancelled and no agent may
remain. The same figures for the daemon before the run (empty), and for GNU
parallel running the same N `sleep 60` (`parallel -jN`), are the references.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from bench import procfs
from bench.common import (
    BenchFailure,
    Skip,
    add_common_arguments,
    finish,
    fmt,
    iterate,
    ratio,
    require_tool,
    rounded,
    table,
    timed,
)
from bench.home import OrchHome, command_plan

NAME = "sessions"
SMOKE = {"sessions": 20, "idle": 0.5, "repeat": 1}
AGENT = ["sleep", "60"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sessions", type=int, default=1000, help="agents at once (default 1000)")
    parser.add_argument(
        "--idle", type=float, default=10.0, help="seconds of the idle CPU window (default 10)"
    )
    add_common_arguments(parser, repeat=1, smoke=", ".join(f"{k} {v}" for k, v in SMOKE.items()))


def poll(check: Callable[[], Any], timeout: float, what: str, every: float = 0.25) -> Any:
    """check() until it returns something true, with a deadline; that value."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise BenchFailure(f"{what} within {timeout:g}s")
        time.sleep(
            every
        )  # polling /proc with a deadline: nothing to wait on from outside the process


def snapshot(pid: int, idle: float) -> dict[str, Any]:
    """RSS, threads and CPU% over `idle` seconds of one process."""
    cpu = procfs.cpu_over(pid, idle)
    return {
        "rss_mib": rounded(procfs.rss_mib(pid), 1),
        "peak_rss_mib": rounded(procfs.peak_rss_mib(pid), 1),
        "threads": procfs.threads(pid),
        "cpu_percent": rounded(cpu.percent if cpu else None, 2),
        "cpu_seconds": rounded(cpu.cpu if cpu else None, 3),
    }


def quiet_log(home: OrchHome, settle: float = 1.0) -> int:
    """Wait until the daemon's log has not grown for `settle` seconds; its last seq."""
    from orchd.protocol import Ping

    def seq() -> int:
        with home.client() as client:
            return int(client.call(Ping()).seq)

    last, since = seq(), time.monotonic()
    while time.monotonic() - since < settle:
        time.sleep(0.1)
        now = seq()
        if now != last:
            last, since = now, time.monotonic()
    return last


def events_after(home: OrchHome, seq: int) -> dict[str, int]:
    """How many events of each kind the log got after `seq`."""
    from orchd.protocol import Events

    with home.client() as client:
        rows = client.call(Events(after=seq, limit=100_000)).events
    kinds: dict[str, int] = {}
    for row in rows:
        kinds[row.kind] = kinds.get(row.kind, 0) + 1
    return kinds


def measure_orch(args: argparse.Namespace) -> dict[str, Any]:
    n = args.sessions
    with OrchHome(max_sessions=n + 8, keep=args.keep_home) as home:
        pid = home.daemon_pid()
        empty = snapshot(pid, args.idle)
        plan = command_plan(n, n, home.workdir(), AGENT, timeout="10m")
        start = time.perf_counter()
        run_id = home.submit(plan)
        agents = poll(
            lambda: (found := procfs.with_env("ORCH_RUN_ID", run_id)) and len(found) >= n and found,
            max(120.0, n / 5),
            f"{n} agents were not all running",
        )
        spawn_s = time.perf_counter() - start
        seq = quiet_log(home, settle=2.0)
        keeper = _keeper(pid)
        busy = snapshot(pid, args.idle)
        keeper_busy = snapshot(keeper, args.idle) if keeper else None
        busy["events_in_window"] = events_after(home, seq)  # nothing should change: expect {}
        cancel_s, _ = timed(lambda: home.orchctl("cancel", run_id, check=True, timeout=300))
        summary = home.wait_until(run_id, lambda s: s["state"] == "cancelled", timeout=300)
        left = [p for p in agents if _alive(p)] + procfs.with_env("ORCH_RUN_ID", run_id)
        if left:
            raise BenchFailure(
                f"{len(set(left))} agents remain after cancelling {run_id}: {sorted(set(left))[:10]}"
            )
        return {
            "status": "ok",
            "empty": empty,
            "running": busy,
            "keeper": keeper_busy,
            "spawn_s": rounded(spawn_s),
            "cancel_s": rounded(cancel_s),
            "cancelled": summary["counts"].get("cancelled"),
            "agents_left": 0,
        }


def _keeper(daemon: int) -> int | None:
    """The keeper (orchd/keeper.py) the daemon started: the parent of every agent."""
    for child in procfs.children(daemon):
        try:
            with open(f"/proc/{child}/cmdline", "rb") as f:
                if b"orchd.keeper" in f.read():
                    return child
        except OSError:
            continue
    return None


def _alive(pid: int) -> bool:
    """Alive and not a zombie (a zombie no longer runs anything)."""
    state = procfs.status_fields(pid).get("State", "")
    return bool(state) and not state.startswith("Z")


def measure_parallel(args: argparse.Namespace) -> dict[str, Any]:
    parallel = require_tool("parallel", "apt-get install parallel")
    n = args.sessions
    lines = "".join(f"{i}\n" for i in range(n)).encode()
    # -u: no temporary output files per job (fewer descriptors); -n0: each input line runs `sleep 60` as is
    argv = [parallel, f"-j{n}", "-u", "-n0", *AGENT]
    start = time.perf_counter()
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        assert proc.stdin is not None
        proc.stdin.write(lines)
        proc.stdin.close()
        poll(
            lambda: len(procfs.children(proc.pid)) >= n or proc.poll() is not None,
            max(120.0, n / 2),
            f"GNU parallel did not start {n} jobs",
        )
        if proc.poll() is not None:
            raise BenchFailure(f"parallel exited {proc.returncode}: {proc.stderr.read()[-500:]!r}")  # type: ignore
        spawn_s = time.perf_counter() - start
        time.sleep(1.0)  # let it settle as orch's log does
        return {
            "status": "ok",
            "running": snapshot(proc.pid, args.idle),
            "spawn_s": rounded(spawn_s),
        }
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def report(args: argparse.Namespace, figures: dict[str, Any]) -> str:
    o, p = figures["orch"], figures["parallel"]
    rows = []
    for label, snap, spawn in (
        ("orchd, no run", o.get("empty"), None),
        (f"orchd, {args.sessions} sessions", o.get("running"), o.get("spawn_s")),
        ("its keeper (the agents' parent)", o.get("keeper"), None),
        (f"GNU parallel -j{args.sessions}", p.get("running"), p.get("spawn_s")),
    ):
        snap = snap or {}
        rows.append(
            [
                label,
                fmt(snap.get("rss_mib"), ".1f"),
                fmt(snap.get("peak_rss_mib"), ".1f"),
                fmt(snap.get("threads"), "d"),
                fmt(snap.get("cpu_percent"), ".2f"),
                fmt(spawn, ".2f"),
            ]
        )
    notes = [
        f"{k}: {v['status']}: {v['reason']}"
        for k, v in figures.items()
        if v.get("status") not in (None, "ok")
    ]
    r = figures["ratios"]
    return (
        f"sessions: {args.sessions} agents `{' '.join(AGENT)}`; CPU over {args.idle:g}s with nothing "
        f"changing\n\n"
        + table(["", "RSS MiB", "peak MiB", "threads", "idle CPU %", "all started s"], rows)
        + f"\nevents logged during the idle window: {(o.get('running') or {}).get('events_in_window', '-')}"
        + f"\ncancel: {fmt(o.get('cancel_s'), '.2f')}s, agents left after it: {o.get('agents_left', '-')}"
        + f"\nratio orchd/parallel: RSS {fmt(r['rss'], '.2f')}, idle CPU {fmt(r['cpu'], '.2f')}"
        + "\ntargets: orchd RSS < 200 MB, idle CPU < 1%"
        + "".join(f"\n{n}" for n in notes)
    )


def run(args: argparse.Namespace) -> int:
    """Measure orch and GNU parallel, print the table, write the JSON; 1 when orch's measurement failed."""
    if args.smoke:
        args.sessions, args.idle, args.repeat = SMOKE["sessions"], SMOKE["idle"], SMOKE["repeat"]
    figures: dict[str, Any] = {}
    for key, measure in (("orch", measure_orch), ("parallel", measure_parallel)):
        try:
            samples = [measure(args) for _ in iterate(args.repeat, key)]
            # the repeat with the median RSS, whole: figures of different repeats are not mixed
            samples.sort(key=lambda s: s["running"]["rss_mib"] or 0.0)
            figures[key] = {**samples[len(samples) // 2], "repeats": len(samples)}
        except (Skip, BenchFailure) as exc:
            figures[key] = {
                "status": "skipped" if isinstance(exc, Skip) else "failed",
                "reason": str(exc),
            }
            print(f"  {key}: {figures[key]['status']}: {exc}", file=sys.stderr)
    mine, theirs = figures["orch"].get("running", {}), figures["parallel"].get("running", {})
    figures["ratios"] = {
        "rss": rounded(ratio(mine.get("rss_mib"), theirs.get("rss_mib"))),
        "cpu": rounded(ratio(mine.get("cpu_percent"), theirs.get("cpu_percent"))),
    }
    finish(
        args,
        NAME,
        report(args, figures),
        {"sessions": args.sessions, "idle": args.idle},
        {"method": __doc__.split("\n\n", 2)[2].strip(), **figures},
    )
    return 1 if figures["orch"]["status"] == "failed" else 0
