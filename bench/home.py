"""A private orchd for one measurement, and what the parts do with it: plans, runs, its process.

orch is a black box here: it is driven through `orchctl` (a process, as users
run it) and `orchd.client.Client` (the socket), never through its actors.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import BenchFailure, discard, short_tempdir, tail


def orchctl_argv() -> list[str]:
    """How to run orchctl: the script installed beside this Python (what users run), else the module."""
    script = Path(sys.executable).parent / "orchctl"
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    found = shutil.which("orchctl")
    return [found] if found else [sys.executable, "-m", "orchctl.main"]


def command_plan(
    tasks: int, concurrency: int, workdir: Path, command: list[str], timeout: str = "30m"
) -> dict[str, Any]:
    """A plan of `tasks` command tasks t0..tN-1 that each run `command`, no retries."""
    return {
        "name": "bench",
        "concurrency": concurrency,
        "workdir": str(workdir),
        "defaults": {"agent": "command", "max_retries": 0, "timeout": timeout},
        "tasks": [{"id": f"t{i}", "command": command} for i in range(tasks)],
    }


def run_summary(doc: Any) -> dict[str, Any]:
    """The run summary in `submit --json` / `status RUN --json` output (flat, under "summary", or runs[0])."""
    if isinstance(doc, dict) and isinstance(doc.get("runs"), list) and doc["runs"]:
        doc = doc["runs"][0]
    if isinstance(doc, dict) and isinstance(doc.get("summary"), dict):
        doc = doc["summary"]
    if not isinstance(doc, dict) or "run_id" not in doc:
        raise BenchFailure(f"no run in orchctl's JSON: {tail(json.dumps(doc), 300)}")
    return doc


def json_of(result: subprocess.CompletedProcess, what: str) -> Any:
    """The JSON an orchctl command printed, or BenchFailure with what it said instead."""
    try:
        return json.loads(result.stdout)
    except json.JSONDecodeError:
        raise BenchFailure(
            f"{what} exited {result.returncode} without JSON: {tail(result.stdout, 300)} "
            f"{tail(result.stderr)}"
        ) from None


class OrchHome:
    """A fresh ORCH_HOME with its own orchd, for one measurement.

    `with OrchHome(max_sessions=64) as home:` writes config.toml, calls
    `prepare(root)` (to put a prepared log in place, say), starts the daemon
    with `orchctl daemon start` (which returns once it answers) unless
    `start=False`, and on exit stops it and deletes the directory (unless `keep`).
    """

    def __init__(
        self,
        *,
        max_sessions: int,
        keep: bool = False,
        prefix: str = "orchb",
        start: bool = True,
        prepare: Callable[[Path], None] | None = None,
    ) -> None:
        self.max_sessions, self.keep, self.prefix = max_sessions, keep, prefix
        self.start, self.prepare = start, prepare
        self.root = Path()
        self.env: dict[str, str] = {}

    def __enter__(self) -> OrchHome:
        self.root = short_tempdir(self.prefix)
        self.env = {**os.environ, "ORCH_HOME": str(self.root)}
        self.env.pop("ORCH_NO_AUTOSTART", None)
        try:
            config = self.root / "config" / "config.toml"
            config.parent.mkdir(parents=True)
            config.write_text(f"max_sessions = {self.max_sessions}\n")
            if self.prepare is not None:
                self.prepare(self.root)
            if self.start:
                self.orchctl("daemon", "start", check=True, timeout=60)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        try:
            self.stop_daemon()
        finally:
            if self.keep:
                print(f"kept ORCH_HOME={self.root}", file=sys.stderr)
            else:
                discard(self.root)

    @property
    def db(self) -> Path:
        return self.root / "state" / "events.db"

    @property
    def address(self) -> str:
        return f"ipc://{self.root / 'run' / 'orchd.sock'}"

    def workdir(self) -> Path:
        """A directory for the tasks to run in."""
        path = self.root / "work"
        path.mkdir(exist_ok=True)
        return path

    def write_plan(self, plan: dict[str, Any]) -> Path:
        path = self.root / "plan.json"
        path.write_text(json.dumps(plan))
        return path

    def orchctl(
        self, *args: str, check: bool = False, timeout: float = 120.0
    ) -> subprocess.CompletedProcess:
        """Run `orchctl --no-start ARGS` against this home (never autostarts a second daemon)."""
        argv = [*orchctl_argv(), "--no-start", *args]
        try:
            result = subprocess.run(
                argv,
                env=self.env,
                capture_output=True,
                text=True,
                timeout=timeout,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired:
            raise BenchFailure(
                f"orchctl {' '.join(args)} did not return within {timeout:g}s; "
                f"{self.daemon_log_tail()}"
            ) from None
        if check and result.returncode != 0:
            raise BenchFailure(
                f"orchctl {' '.join(args)} exited {result.returncode}: {tail(result.stderr)}; "
                f"{self.daemon_log_tail()}"
            )
        return result

    def client(self, timeout: float = 60.0) -> Any:
        """An `orchd.client.Client` of this home's daemon (close it, or use it in `with`)."""
        from orchd.client import Client

        return Client(self.address, timeout)

    def daemon_pid(self) -> int:
        from orchd.protocol import Ping

        with self.client() as client:
            return int(client.call(Ping()).pid)

    def submit(self, plan: dict[str, Any], timeout: float = 600.0) -> str:
        """Submit `plan` with `orchctl submit PLAN --json`; the run id."""
        result = self.orchctl(
            "submit", str(self.write_plan(plan)), "--json", check=True, timeout=timeout
        )
        return str(run_summary(json_of(result, "orchctl submit"))["run_id"])

    def summary(self, run_id: str) -> dict[str, Any]:
        """The run's summary, from a Runs request (cheap: no task list)."""
        from orchd.protocol import Runs

        with self.client() as client:
            reply = client.call(Runs())
        for run in reply.runs:
            if run.run_id == run_id:
                return {
                    "run_id": run.run_id,
                    "state": run.state,
                    "submitted_at": run.submitted_at,
                    "finished_at": run.finished_at,
                    "counts": dict(run.counts),
                }
        raise BenchFailure(f"run {run_id} is not in the daemon's runs")

    def wait_until(
        self,
        run_id: str,
        done: Callable[[dict[str, Any]], bool],
        timeout: float,
        interval: float = 0.2,
    ) -> dict[str, Any]:
        """Poll the run's summary until `done(summary)`, with a deadline; the last summary."""
        deadline = time.monotonic() + timeout
        while True:
            summary = self.summary(run_id)
            if done(summary):
                return summary
            if time.monotonic() > deadline:
                raise BenchFailure(
                    f"run {run_id} still {summary['state']} {summary['counts']} after "
                    f"{timeout:g}s; {self.daemon_log_tail()}"
                )
            time.sleep(
                interval
            )  # polling with a deadline: a cheap request, well below the figures measured

    def wait_finished(self, run_id: str, timeout: float) -> dict[str, Any]:
        """Wait for the run's RunFinished (long-polled: orchd answers when it is logged), then its summary.

        Not the run's summary while it runs: a summary costs the daemon O(tasks), which would slow
        the very run being timed; this request reads only the run's new events of that one kind.
        """
        from orchd.protocol import MAX_WAIT, Events

        deadline, after = time.monotonic() + timeout, 0
        with self.client() as client:
            while (left := deadline - time.monotonic()) > 0:
                reply = client.call(
                    Events(
                        after=after,
                        run=run_id,
                        kinds=["RunFinished"],
                        limit=1,
                        wait=min(MAX_WAIT, left),
                    )
                )
                if reply.events:
                    return self.summary(run_id)
                after = max(after, reply.seq)
                if reply.busy:
                    raise BenchFailure("orchd has no worker free for a long-poll")
        raise BenchFailure(
            f"run {run_id} did not finish within {timeout:g}s; {self.daemon_log_tail()}"
        )

    def daemon_log_tail(self) -> str:
        try:
            return "daemon log: " + tail(
                (self.root / "state" / "orchd.log").read_text(errors="replace"), 800
            )
        except OSError:
            return "no daemon log"

    def stop_daemon(self) -> None:
        """`orchctl daemon stop --end-sessions` (TERM and wait when that fails): a stop alone would
        leave running agents to the next start; a no-op when none runs."""
        if not self.root.exists() or not (self.root / "run").exists():
            return
        try:
            stopped = self.orchctl("daemon", "stop", "--end-sessions", timeout=60).returncode == 0
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
