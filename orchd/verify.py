"""The marker lines of a task's checks in the attempt's log: written by the attempt's process
(orchd/attempt.py), read back by `verify_result` once it has ended.

After the agent exits 0, the attempt's process runs each verify argv in turn and appends, to the
same log as the agent's output:

    orch: verify: the agent exited 0; 2 checks to run
    orch: verify 1/2: python3 -m pytest -q
    ...the check's own output...
    orch: verify 1/2 passed in 3.1s
    orch: verify 2/2: ruff check .
    ...
    orch: verify 2/2 failed: exit 1
    orch: verify failed: ruff check .: exit 1

Its last line is always `orch: verify passed: N checks` or `orch: verify failed: ARGV: HOW`, where
HOW is `exit N`, `killed by SIGNAL`, `timed out after Ns`, `not found` or `cannot start: WHY`.
"""

from __future__ import annotations

import mmap
import os
import re
import shlex

from orchd.events import VerifyResult
from orchd.streams.base import CHECKS_START as _START

OUTPUT_LINES, OUTPUT_CHARS = 40, 4000  # the tail of a failing check's output that is kept
_FINAL_RE = re.compile(
    r"orch: verify (?:passed: (\d+) checks?|failed: (.*): "
    r"(exit -?\d+|killed by \S+|timed out after \S+|not found|cannot start: .*))"
)


def start(checks: int) -> str:
    """The line before the first check: where the agent's output ends."""
    return f"{_START.decode()}{checks} check{'s' * (checks != 1)} to run"


def check(i: int, n: int, argv: list[str]) -> str:
    """The line before check `i` of `n`."""
    return f"orch: verify {i}/{n}: {shlex.join(argv)}"


def check_passed(i: int, n: int, seconds: float) -> str:
    return f"orch: verify {i}/{n} passed in {seconds:.1f}s"


def check_failed(i: int, n: int, how: str) -> str:
    return f"orch: verify {i}/{n} failed: {how}"


def passed(checks: int) -> str:
    """The last line when every check passed."""
    return f"orch: verify passed: {checks} check{'s' * (checks != 1)}"


def failed(argv: list[str], how: str) -> str:
    """The last line when a check did not pass."""
    return f"orch: verify failed: {shlex.join(argv)}: {how}"


def kind_of(how: str) -> str:
    """The VerifyResult.result of a check that ended `how` (`exit 1`, `not found`, ...)."""
    if how.startswith("timed out"):
        return "timeout"
    if how == "not found" or how.startswith("cannot start"):
        return "not_found"
    return "failed"


def verify_result(log_path: str) -> VerifyResult | None:
    """How the checks went, from an ended attempt's log; None when none ran (the agent failed, or
    the task has none, or the attempt was stopped before they finished)."""
    try:
        fd = os.open(log_path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        size = os.fstat(fd).st_size
        if not size:
            return None
        with mmap.mmap(fd, size, prot=mmap.PROT_READ) as log:
            return _parse(log, size)
    finally:
        os.close(fd)


def _parse(log: mmap.mmap, size: int) -> VerifyResult | None:
    end = size
    while end > 0 and log[end - 1 : end] in (b"\n", b"\r", b" "):
        end -= 1
    last = log[log.rfind(b"\n", 0, end) + 1 : end].decode("utf-8", "replace")
    final = _FINAL_RE.fullmatch(last)
    at = log.rfind(b"\n" + _START, 0, end)
    if final is None or (at < 0 and log[: len(_START)] != _START):
        return None
    offset = at + 1 if at >= 0 else 0
    if final.group(1) is not None:
        return VerifyResult("passed", checks=int(final.group(1)), log_offset=offset)
    shown, how = final.group(2), final.group(3)
    result = kind_of(how)
    # the failing check's own output: from its marker line to the line that says how it ended
    marker = re.compile(rb"^orch: verify (\d+)/\d+: " + re.escape(shown.encode()) + rb"$", re.M)
    found = None
    for found in marker.finditer(log, offset, end):  # noqa: B007 (the last one is wanted)
        continue
    checks, output = 0, ""
    if found is not None:
        checks = int(found.group(1))
        ended = log.rfind(f"\norch: verify {checks}/".encode(), found.end(), end)
        text = log[found.end() + 1 : ended if ended > found.end() else end]
        lines = text.decode("utf-8", "replace").rstrip().splitlines()[-OUTPUT_LINES:]
        output = "\n".join(lines)[-OUTPUT_CHARS:]
    return VerifyResult(
        result,
        checks=checks,
        argv=_split(shown),
        detail=how,
        output=output,
        log_offset=offset,
    )


def _split(shown: str) -> list[str]:
    try:
        return shlex.split(shown)
    except ValueError:
        return [shown]
