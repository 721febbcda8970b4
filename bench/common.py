"""What every benchmark part shares: timing, series of samples, tables, JSON results, a private orchd.

Stdlib only: a benchmark must not need more than the thing it measures.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

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
        return {"status": "ok", "tasks": self.tasks, "seconds": [round(s, 6) for s in self.seconds],
                "best_per_s": round(self.best_rate or 0.0, 1), "median_per_s": round(self.median_rate or 0.0, 1)}


def ratio(a: float | None, b: float | None) -> float | None:
    """a / b, or None when either is missing."""
    return a / b if a is not None and b else None


# ------------------------------------------------------------ output


def fmt(value: float | None, spec: str = ",.0f", missing: str = "-") -> str:
    return missing if value is None else format(value, spec)


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], left: Sequence[int] = (0,)) -> str:
    """A plain-text table: the `left` columns left-aligned (text), the others right-aligned (figures)."""
    widths = [max(len(str(row[i])) for row in [headers, *rows]) for i in range(len(headers))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(str(c).ljust(w) if i in left else str(c).rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    return {"host": platform.node(), "system": platform.platform(), "cpus": os.cpu_count(),
            "python": platform.python_version(), "load_avg": list(os.getloadavg())}


def write_results(path: Path, bench: str, params: dict[str, Any], figures: dict[str, Any]) -> Path:
    """Write one part's figures as JSON (with when and where they were measured); return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"bench": bench, "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
           "machine": machine(), "params": params, **figures}
    path.write_text(json.dumps(doc, indent=2) + "\n")
    return path


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


def short_tempdir(prefix: str) -> Path:
    """A fresh directory with a short path (it may host a unix socket, whose path is limited to ~100 bytes)."""
    base = tempfile.gettempdir()
    if len(base) > 40 and os.path.isdir("/tmp"):
        base = "/tmp"
    return Path(tempfile.mkdtemp(prefix=prefix, dir=base))


# ------------------------------------------------------------ a private orchd


def orchctl_argv() -> list[str]:
    """How to run orchctl: the script installed beside this Python (what users run), else the module."""
    script = Path(sys.executable).parent / "orchctl"
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    found = shutil.which("orchctl")
    return [found] if found else [sys.executable, "-m", "orchctl.main"]


class OrchHome:
    """A fresh ORCH_HOME with its own orchd, for one measurement.

    `with OrchHome(max_sessions=64) as home:` writes config.toml, starts the
    daemon with `orchctl daemon start` (which returns once it answers), and on
    exit stops it and deletes the directory (unless `keep`).
    """

    def __init__(self, *, max_sessions: int, keep: bool = False, prefix: str = "orchb") -> None:
        self.max_sessions = max_sessions
        self.keep = keep
        self.prefix = prefix
        self.root = Path()
        self.env: dict[str, str] = {}

    def __enter__(self) -> "OrchHome":
        self.root = short_tempdir(self.prefix)
        self.env = {**os.environ, "ORCH_HOME": str(self.root)}
        self.env.pop("ORCH_NO_AUTOSTART", None)
        config = self.root / "config" / "config.toml"
        config.parent.mkdir(parents=True)
        config.write_text(f"max_sessions = {self.max_sessions}\n")
        try:
            self.orchctl("daemon", "start", check=True, timeout=60)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        try:
            self._stop_daemon()
        finally:
            if self.keep:
                print(f"kept ORCH_HOME={self.root}", file=sys.stderr)
            else:
                shutil.rmtree(self.root, ignore_errors=True)

    def workdir(self) -> Path:
        """A directory for the tasks to run in."""
        path = self.root / "work"
        path.mkdir(exist_ok=True)
        return path

    def orchctl(self, *args: str, check: bool = False, timeout: float = 120.0) -> subprocess.CompletedProcess:
        """Run `orchctl --no-start ARGS` against this home (never autostarts a second daemon)."""
        argv = [*orchctl_argv(), "--no-start", *args]
        try:
            result = subprocess.run(argv, env=self.env, capture_output=True, text=True, timeout=timeout,
                                    stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise BenchFailure(f"orchctl {' '.join(args)} did not return within {timeout:g}s; "
                               f"{self.daemon_log_tail()}") from None
        if check and result.returncode != 0:
            raise BenchFailure(f"orchctl {' '.join(args)} exited {result.returncode}: {tail(result.stderr)}; "
                               f"{self.daemon_log_tail()}")
        return result

    def daemon_log_tail(self) -> str:
        try:
            return "daemon log: " + tail((self.root / "state" / "orchd.log").read_text(errors="replace"), 800)
        except OSError:
            return "no daemon log"

    def _stop_daemon(self) -> None:
        if not self.root.exists():
            return
        try:
            stopped = self.orchctl("daemon", "stop", timeout=60).returncode == 0
        except BenchFailure:
            stopped = False
        if not stopped:
            self._kill_daemon()

    def _kill_daemon(self) -> None:
        """Last resort: TERM the daemon this home started (its pid from `daemon status --json`)."""
        try:
            result = self.orchctl("daemon", "status", "--json", timeout=10)
            pid = int(json.loads(result.stdout)["pid"])
        except (BenchFailure, ValueError, KeyError, TypeError):
            return
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)  # poll with a deadline: the daemon is not our child


def iterate(repeat: int, label: str) -> Iterator[int]:
    """1..repeat, saying on stderr which repeat of `label` runs (progress for long benchmarks)."""
    for i in range(1, repeat + 1):
        print(f"  {label}: repeat {i}/{repeat}", file=sys.stderr, flush=True)
        yield i
