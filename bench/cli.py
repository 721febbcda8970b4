"""CLI: wall time of `orchctl status --json` on a run of 10,000 tasks, as a whole process, vs `python -c pass`.

    python -m bench cli [--tasks 10000] [--runs 20] [--repeat 1]

The daemon opens a log holding one completed run of `--tasks` tasks (built
with bench.synthlog), then each command runs `--runs` times, interleaved so
that a busy machine slows all of them alike; the table shows medians. Beside
them: `orchctl --version` (start-up and imports, no request), the Status
request alone from this process (`Client.call`), and the imports that cost
most (`python -X importtime -m orchctl.main status --json`).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from typing import Any

from bench import synthlog
from bench.common import (
    BenchFailure,
    add_common_arguments,
    discard,
    finish,
    fmt,
    median,
    ratio,
    rounded,
    short_tempdir,
    table,
)
from bench.home import OrchHome, orchctl_argv

NAME = "cli"
SMOKE = {"tasks": 50, "runs": 2, "repeat": 1}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--tasks", type=int, default=10_000, help="tasks in the run (default 10000)"
    )
    parser.add_argument(
        "--runs", type=int, default=20, help="runs of each command per repeat (default 20)"
    )
    add_common_arguments(parser, repeat=1, smoke=", ".join(f"{k} {v}" for k, v in SMOKE.items()))


def import_costs(home: OrchHome, top: int = 14) -> list[dict[str, Any]]:
    """The heaviest imports of `orchctl status --json` (cumulative µs, as `python -X importtime` says)."""
    argv = [
        sys.executable,
        "-X",
        "importtime",
        "-m",
        "orchctl.main",
        "--no-start",
        "status",
        "--json",
    ]
    result = subprocess.run(argv, capture_output=True, text=True, check=True, env=home.env)
    costs = []
    for line in result.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line or "cumulative" in line:
            continue
        self_us, cumulative_us, name = (
            part.strip() for part in line[len("import time:") :].split("|")
        )
        depth = (len(name) - len(name.lstrip())) // 2
        costs.append(
            {
                "module": name.strip(),
                "self_us": int(self_us),
                "cumulative_us": int(cumulative_us),
                "depth": depth,
            }
        )
    outer = [c for c in costs if c["depth"] <= 1]  # what the command and its first imports pull in
    return sorted(outer, key=lambda c: -c["cumulative_us"])[:top]


def measure(home: OrchHome, runs: int) -> dict[str, list[float]]:
    """Seconds of each command, `runs` times, interleaved."""
    commands = {
        "python_pass": [sys.executable, "-c", "pass"],
        "orchctl_version": [*orchctl_argv(), "--version"],
        "orchctl_status": [*orchctl_argv(), "--no-start", "status", "--json"],
    }
    samples: dict[str, list[float]] = {k: [] for k in commands}
    for _ in range(runs):
        for key, argv in commands.items():
            start = time.perf_counter()
            result = subprocess.run(
                argv, env=home.env, capture_output=True, stdin=subprocess.DEVNULL
            )
            samples[key].append(time.perf_counter() - start)
            if result.returncode != 0:
                raise BenchFailure(
                    f"{' '.join(argv)} exited {result.returncode}: {result.stderr[-500:]!r}"
                )
    samples["status_request"] = []
    from orchd.protocol import Status

    with home.client() as client:
        for _ in range(runs):
            start = time.perf_counter()
            client.call(Status())
            samples["status_request"].append(time.perf_counter() - start)
    return samples


LABELS = {
    "orchctl_status": "orchctl status --json (process)",
    "python_pass": "python -c pass (reference)",
    "orchctl_version": "orchctl --version (start-up only)",
    "status_request": "Status request alone (in-process Client)",
}


def report(args: argparse.Namespace, figures: dict[str, Any]) -> str:
    m = figures["median_s"]
    rows = [
        [LABELS[k], fmt(m[k] * 1000, ".1f"), fmt(ratio(m[k], m["python_pass"]), ".2f")]
        for k in LABELS
    ]
    imports = [
        [c["module"], fmt(c["cumulative_us"] / 1000, ".1f"), fmt(c["self_us"] / 1000, ".1f")]
        for c in figures["imports"]
    ]
    return (
        f"cli: a run of {args.tasks:,} tasks ({figures['status_bytes']:,} bytes of JSON); medians of "
        f"{args.runs * args.repeat} runs each, interleaved\n\n"
        + table(["", "median ms", "x python -c pass"], rows)
        + f"\nratio orchctl status/python -c pass: {fmt(figures['ratios']['status/python_pass'], '.2f')}"
        + "   target: < 3\n\nheaviest imports of `orchctl status --json` (python -X importtime)\n\n"
        + table(["module", "cumulative ms", "self ms"], imports)
    )


def run(args: argparse.Namespace) -> int:
    """Build the log, start the daemon, time the commands, print the table, write the JSON."""
    if args.smoke:
        args.tasks, args.runs, args.repeat = SMOKE["tasks"], SMOKE["runs"], SMOKE["repeat"]
    scratch = short_tempdir("orchbc")
    try:
        log = scratch / "events.db"
        synthlog.build(log, [synthlog.RunShape("bench-cli", args.tasks)], workdir=str(scratch))
        place = lambda root: synthlog.copy(log, root / "state" / "events.db")  # noqa: E731
        samples: dict[str, list[float]] = {}
        with OrchHome(max_sessions=8, keep=args.keep_home, prepare=place) as home:
            status_bytes = len(home.orchctl("status", "--json", check=True).stdout.encode())
            imports = import_costs(home)
            for _ in range(args.repeat):
                for key, values in measure(home, args.runs).items():
                    samples.setdefault(key, []).extend(values)
    except BenchFailure as exc:
        print(f"bench cli: {exc}", file=sys.stderr)
        return 1
    finally:
        discard(scratch)
    medians = {k: median(v) for k, v in samples.items()}
    figures = {
        "median_s": {k: rounded(v, 4) for k, v in medians.items()},
        "samples_s": {k: [rounded(x, 4) for x in v] for k, v in samples.items()},
        "status_bytes": status_bytes,
        "imports": imports,
        "ratios": {
            "status/python_pass": rounded(ratio(medians["orchctl_status"], medians["python_pass"]))
        },
    }
    finish(
        args,
        NAME,
        report(args, figures),
        {"tasks": args.tasks, "runs": args.runs},
        {"method": __doc__.split("\n\n", 2)[2].strip(), **figures},
    )
    return 0
