"""orchctl's entry point, and its fast path: `status [RUN] --json` and `submit PLAN --wait --json`
without click or pynng.

Scripts poll `orchctl status --json` and run `orchctl submit plan --wait --json`; a whole
orchctl (click, pynng with cffi and asyncio, the typed protocol) takes ~120 ms to import
before it asks anything. This path sends the requests over the socket itself (orchctl/sp.py),
asks orchd to indent its status reply (`Status.indent`), and prints that reply as it comes:
byte for byte what the full CLI prints. It imports neither msgspec nor pathlib. Anything else,
and any trouble before a run is submitted (no daemon, an error reply), goes to the full CLI,
which autostarts the daemon and says what went wrong; trouble after a run is submitted goes to
`orchctl wait RUN --json`, which never submits it again.
"""

from __future__ import annotations

import json
import os
import sys

STATUS_REPLY = b'"type": "StatusReply",'  # keys sorted: a reply ends with "type" and "v"


def _args(argv: list[str], command: str, flags: list[str], operands: range) -> list[str] | None:
    """The operands of `argv` when it is `[--no-start] COMMAND OPERAND... FLAG...` (any order)."""
    args = [a for a in argv if a != "--no-start"]
    if not args or args[0] != command or sorted(a for a in args[1:] if a.startswith("-")) != flags:
        return None
    rest = [a for a in args[1:] if not a.startswith("-")]
    return rest if len(rest) in operands else None


def _request(op: str, **fields: object) -> bytes:
    from orchd import PROTOCOL_VERSION

    return json.dumps({"op": op, "v": PROTOCOL_VERSION, "id": 1, **fields}).encode()


def _call(body: bytes, timeout: float = 30.0) -> bytes:
    from orchctl import sp
    from orchd.paths import socket_path

    return sp.request(socket_path(), body, timeout)


def _status(run: str | None) -> bytes | None:
    """`status [RUN] --json` as orchd formats it; None on any trouble (an Error reply included)."""
    try:
        reply = _call(_request("Status", indent=2, **({"run": run} if run else {})))
    except OSError:
        return None
    return reply if reply.startswith(b"{") and STATUS_REPLY in reply[-48:] else None


def _print(reply: bytes) -> None:
    sys.stdout.buffer.write(reply + b"\n")
    sys.stdout.flush()


def _submit_and_wait(plan: str) -> int | None:
    """`submit PLAN --wait --json`: the exit code; None before anything was submitted, for the full CLI."""
    try:
        with open(plan, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError):
        return None
    from pathlib import PurePath  # the plan's name as the full CLI records it (`source`)

    source = str(
        PurePath(plan)
    )  # orchd reads the plan's format from its suffix, as for the full CLI
    body = _request(
        "Submit", plan=text, source=source, base_dir=os.path.dirname(os.path.abspath(plan))
    )
    try:
        reply = json.loads(_call(body))
    except (FileNotFoundError, ConnectionRefusedError):
        return None  # no daemon: the full CLI starts one
    except (OSError, ValueError) as exc:  # it may have been submitted: do not send it again
        print(
            f"orchctl: lost orchd's answer to the submission ({exc}); see `orchctl runs`",
            file=sys.stderr,
        )
        return 3
    if reply.get("type") != "Submitted":
        return None  # an error: nothing was submitted, and the full CLI explains it
    for warning in reply.get("warnings", []):
        print(f"orchctl: warning: {warning}", file=sys.stderr)
    run_id = reply["run_id"]
    end = _ended(run_id)
    view = _run_view(run_id) if end else None
    if end is None or view is None:  # trouble after the submission: the full CLI waits, without
        from orchctl.main import main as full  # submitting again

        full(["wait", run_id, "--json"])
        return 0
    _print(view)
    return 0 if end.get("payload", {}).get("state") == "completed" else 1


def _run_view(run_id: str) -> bytes | None:
    """The run's view alone, as orchd formats it (`Status.alone`): what `orchctl submit --wait
    --json` prints. None on any trouble."""
    try:
        reply = _call(_request("Status", run=run_id, indent=2, alone=True))
    except OSError:
        return None
    return reply if reply.startswith(b'{\n  "summary": ') else None


def _ended(run_id: str) -> dict | None:
    """The run's RunFinished event, long-polled for; None on any trouble (orchd busy included)."""
    after = 0
    while True:
        try:
            reply = json.loads(
                _call(
                    _request(
                        "Events", run=run_id, kinds=["RunFinished"], wait=30.0, after=after, limit=1
                    ),
                    timeout=60.0,
                )
            )
        except (OSError, ValueError):
            return None
        if reply.get("type") != "EventsReply" or (reply.get("busy") and not reply.get("events")):
            return None
        if reply["events"]:
            return reply["events"][0]
        after = max(after, reply["seq"])


def _fast(argv: list[str]) -> int | None:
    """Answer `argv` here if it is a fast-path command: its exit code; None to leave it to the full CLI."""
    run = _args(argv, "status", ["--json"], range(0, 2))
    if run is not None:
        reply = _status(run[0] if run else None)
        if reply is None:
            return None
        _print(reply)
        return 0
    plan = _args(argv, "submit", ["--json", "--wait"], range(1, 2))
    if plan is not None:
        return _submit_and_wait(plan[0])
    return None


def main() -> None:
    """Entry point of `orchctl`."""
    code = _fast(sys.argv[1:])
    if code is None:
        from orchctl.main import main as full

        full()
    sys.exit(code)
