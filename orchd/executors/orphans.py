"""What a dead keeper's attempts left running, found and ended before their tasks run again.

An attempt's process group dies with its keeper (its lifeline ends it), but what it
started outside its group may live on, and an attempt of orch 0.1's keeper (protocol 1)
outlives it whole. Every attempt's processes carry ORCH_RUN_ID, ORCH_TASK_ID and ORCH_ATTEMPT
in their environment: after a restart, those of an attempt that no keeper runs
any more are killed, group and all, and waited for, before the task goes on. So
no two attempts of one task are ever alive at once.
"""

from __future__ import annotations

import logging
import os
import select
import signal
import time

from orchd.executors.base import Process

log = logging.getLogger(__name__)

GONE_TIMEOUT = 10.0  # seconds to wait for a killed orphan to be gone


class Orphans:
    """The processes of orch attempts on this machine, by attempt, read from /proc once."""

    def __init__(self) -> None:
        self._by_attempt: dict[tuple[str, str, str], list[int]] | None = None

    def _scan(self) -> dict[tuple[str, str, str], list[int]]:
        found: dict[tuple[str, str, str], list[int]] = {}
        me = os.getpid()
        for name in os.listdir("/proc"):
            if not name.isdigit() or int(name) == me:
                continue
            try:
                with open(f"/proc/{name}/environ", "rb") as f:
                    environ = f.read().split(b"\0")
            except OSError:
                continue
            seen = {}
            for entry in environ:
                if entry.startswith(b"ORCH_"):
                    key, _, value = entry.partition(b"=")
                    seen[key] = value.decode("utf-8", "replace")
            if b"ORCH_RUN_ID" in seen and b"ORCH_TASK_ID" in seen and b"ORCH_ATTEMPT" in seen:
                key3 = (seen[b"ORCH_RUN_ID"], seen[b"ORCH_TASK_ID"], seen[b"ORCH_ATTEMPT"])
                found.setdefault(key3, []).append(int(name))
        return found

    def end(self, run_id: str, task_id: str, attempt: int, known: Process | None) -> int:
        """Kill what is left of an attempt no keeper runs (its processes, their groups); wait
        until they are gone. How many processes were found."""
        if self._by_attempt is None:
            self._by_attempt = self._scan()
        pids = self._by_attempt.pop((run_id, task_id, str(attempt)), [])
        if not pids:
            return 0
        groups = set()
        for pid in pids:
            try:
                groups.add(os.getpgid(pid))
            except OSError:
                continue
        if known is not None and known.pgid > 0:
            groups.add(known.pgid)
        log.warning(
            "ending %d process(es) left by attempt %d of %s/%s (its keeper is gone)",
            len(pids),
            attempt,
            run_id,
            task_id,
        )
        for group in groups:
            try:
                os.killpg(group, signal.SIGKILL)
            except OSError:
                pass
        for pid in pids:
            _wait_gone(pid)
        return len(pids)


def _wait_gone(pid: int) -> None:
    """Wait (bounded) until process `pid` has exited: a killed orphan takes a moment."""
    try:
        fd = os.pidfd_open(pid)
    except OSError:
        return  # gone already
    try:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        deadline = time.monotonic() + GONE_TIMEOUT
        while time.monotonic() < deadline:
            if poller.poll(max(0, int((deadline - time.monotonic()) * 1000))):
                return
    finally:
        os.close(fd)
