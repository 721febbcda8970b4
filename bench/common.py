"""What every benchmark part shares: timing, series of samples, statistics, tables, JSON results.

Stdlib only: a benchmark must not need more than the thing it measures.
"""

from __future__ import annotations

import argparse
import atexit
import json
import math
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"


class Skip(Exception):
    """A reference cannot run here (its tool is missing); the message says how to get it."""


class BenchFailure(Exception):
    """A measurement ran but went wrong (a non-zero exit, tasks missing); the message says what."""


# ------------------------------------------------------------ timing


def timed(action: Callable[[], Any]) -> tuple[float, Any]:
    """Wall seconds that `action()` took (perf_counter), and what it returned."""
    start = time.perf_counter()
    value = action()
    return time.perf_counter() - start, value


@dataclass
class Series:
    """Repeated measurements of one thing: seconds for `tasks` tasks each time.

    `key` names it in the JSON (stable), `label` in the table (for people).
    """

    key: str
    label: str
    tasks: int
    seconds: list[float] = field(default_factory=list)
    status: str = "ok"  # ok | skipped | failed
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "ok" and bool(self.seconds)

    @property
    def best_rate(self) -> float | None:
        """Tasks per second of the fastest repeat."""
        return self.tasks / min(self.seconds) if self.ok else None

    @property
    def median_rate(self) -> float | None:
        """Tasks per second of the median repeat."""
        return self.tasks / statistics.median(self.seconds) if self.ok else None

    def to_json(self) -> dict[str, Any]:
        if not self.ok:
            return {"status": self.status, "reason": self.reason}
        return {
            "status": "ok",
            "tasks": self.tasks,
            "seconds": [round(s, 6) for s in self.seconds],
            "best_per_s": round(self.best_rate or 0.0, 1),
            "median_per_s": round(self.median_rate or 0.0, 1),
        }


def ratio(a: float | None, b: float | None) -> float | None:
    """a / b, or None when either is missing."""
    return a / b if a is not None and b else None


def rounded(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def percentile(samples: Sequence[float], pct: float) -> float | None:
    """The `pct` percentile (nearest rank) of `samples`, or None when there are none."""
    if not samples:
        return None
    ordered = sorted(samples)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def median(samples: Sequence[float]) -> float | None:
    return statistics.median(samples) if samples else None


# ------------------------------------------------------------ arguments shared by every part


def add_common_arguments(parser: argparse.ArgumentParser, *, repeat: int, smoke: str) -> None:
    """--repeat, --smoke (described by `smoke`), --output DIR and --keep-home."""
    parser.add_argument(
        "--repeat",
        type=int,
        default=repeat,
        help=f"measurements of each (default {repeat}); "
        "the tables show medians, which a busy machine disturbs least",
    )
    parser.add_argument("--smoke", action="store_true", help=f"tiny sizes for tests ({smoke})")
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        metavar="DIR",
        help="directory for the JSON figures (default bench/results/); "
        "PART.json, or PART-smoke.json with --smoke",
    )
    parser.add_argument(
        "--keep-home", action="store_true", help="keep orch's ORCH_HOME (its log) for a look"
    )


def sizes(text: str) -> list[int]:
    """`"1000,10000"` -> [1000, 10000] (an argparse type)."""
    try:
        values = [int(part.replace("_", "")) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected sizes like 1000,10000, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"sizes must be at least 1, got {text!r}")
    return values


def output_file(args: argparse.Namespace, name: str) -> Path:
    """Where part `name` writes its JSON: DIR/NAME.json (NAME-smoke.json for --smoke runs)."""
    directory = args.output or RESULTS_DIR
    return directory / (f"{name}-smoke.json" if args.smoke else f"{name}.json")


# ------------------------------------------------------------ output


def fmt(value: float | None, spec: str = ",.0f", missing: str = "-") -> str:
    return missing if value is None else format(value, spec)


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], left: Sequence[int] = (0,)) -> str:
    """A plain-text table: the `left` columns left-aligned (text), the others right-aligned (figures)."""
    widths = [max(len(str(row[i])) for row in [headers, *rows]) for i in range(len(headers))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            str(c).ljust(w) if i in left else str(c).rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths))
        ).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            return next(
                (
                    line.split(":", 1)[1].strip()
                    for line in cpuinfo
                    if line.startswith("model name")
                ),
                "",
            )
    except OSError:
        return platform.processor()


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    return {
        "host": platform.node(),
        "system": platform.platform(),
        "cpus": os.cpu_count(),
        "cpu_model": cpu_model(),
        "python": platform.python_version(),
        "load_avg": list(os.getloadavg()),
    }


def write_results(path: Path, bench: str, params: dict[str, Any], figures: dict[str, Any]) -> Path:
    """Write one part's figures as JSON (with when and where they were measured); return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "bench": bench,
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "params": params,
        **figures,
    }
    path.write_text(json.dumps(doc, indent=2) + "\n")
    return path


def finish(
    args: argparse.Namespace, name: str, text: str, params: dict[str, Any], figures: dict[str, Any]
) -> None:
    """Print a part's table and write its JSON (the table is kept in the JSON too)."""
    print(text)
    path = write_results(
        output_file(args, name),
        name,
        {**params, "repeat": args.repeat, "smoke": args.smoke},
        {**figures, "table": text},
    )
    print(f"\nwrote {path}", flush=True)


# ------------------------------------------------------------ tools and processes


def require_tool(name: str, install_hint: str) -> str:
    """The path of `name` on PATH, or Skip with how to install it."""
    found = shutil.which(name)
    if found is None:
        raise Skip(f"{name} not found on PATH ({install_hint})")
    return found


def tail(text: str | bytes | None, limit: int = 1500) -> str:
    if text is None:
        return ""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    text = text.strip()
    return text if len(text) <= limit else "…" + text[-limit:]


def bench_base() -> str:
    """Where every tool's files go, so that all of them measure the same filesystem.

    $ORCH_BENCH_DIR, else /var/tmp (disk-backed, like the state directory of a real
    install), else the temp directory. Not /tmp by default: where it is on disk, as on
    this project's VMs, everything else deletes its files there all day (test suites
    among them), and on a journal-less ext4 that makes each new file cost up to 0.8 ms
    of kernel time against 16 us (see `discard`): it would measure the neighbours.
    """
    base = os.environ.get("ORCH_BENCH_DIR")
    if not base:
        base = "/var/tmp" if os.access("/var/tmp", os.W_OK) else tempfile.gettempdir()
    if len(base) > 40 and os.path.isdir("/tmp"):
        base = "/tmp"
    return base


_TRASH: list[Path] = []


def discard(path: Path) -> None:
    """Delete `path` when the benchmark command ends, not now.

    This project's VMs run ext4 without a journal, where creating a file walks past every inode of
    its block group deleted in the last 1 to 6 minutes, one by one: deleting one repeat's thousands
    of files made the next repeats' file creations (of whichever tool ran next) up to 50 times
    slower, 0.8 ms instead of 16 us each. Deleting everything at the end keeps repeats alike.
    """
    _TRASH.append(path)


@atexit.register
def empty_trash() -> None:
    """Delete what `discard` kept."""
    while _TRASH:
        shutil.rmtree(_TRASH.pop(), ignore_errors=True)


def scratch_tmpdir() -> str:
    """TMPDIR for a reference tool's own temporary files (GNU parallel's output buffers): tmpfs when
    there is one (as /tmp is on many distributions), so that the files it deletes during its run
    do not slow the next tool's file creations on disk (see `discard`); else the bench base."""
    shm = "/dev/shm"
    return shm if os.path.isdir(shm) and os.access(shm, os.W_OK) else bench_base()


def short_tempdir(prefix: str) -> Path:
    """A fresh directory with a short path (it may host a unix socket, whose path is limited to ~100 bytes)."""
    return Path(tempfile.mkdtemp(prefix=prefix, dir=bench_base()))


def iterate(repeat: int, label: str) -> Iterator[int]:
    """1..repeat, saying on stderr which repeat of `label` runs (progress for long benchmarks)."""
    for i in range(1, repeat + 1):
        print(f"  {label}: repeat {i}/{repeat}", file=sys.stderr, flush=True)
        yield i
