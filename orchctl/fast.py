"""orchctl's entry point, and its fast path: `status [RUN] --json` without click or pynng.

Scripts poll `orchctl status --json`; a whole orchctl (click, pynng with cffi
and asyncio, the typed protocol) takes ~120 ms to import before it asks
anything. This path sends the request over the socket itself (orchd/sp.py), asking
orchd to indent its reply (`Status.indent`), and prints the reply as it comes:
byte for byte what the full CLI prints. It imports neither msgspec nor pathlib. Anything else, and any trouble on the
way (no daemon, an error reply), goes to the full CLI, which autostarts the
daemon and says what went wrong.
"""

from __future__ import annotations

import json
import sys


def _status_request(argv: list[str]) -> bytes | None:
    """The Status request `argv` asks for, when it is `[--no-start] status [RUN] --json` (any order)."""
    args = [a for a in argv if a != "--no-start"]
    if len(args) not in (2, 3) or args[0] != "status" or args.count("--json") != 1:
        return None
    rest = [a for a in args[1:] if a != "--json"]
    if any(a.startswith("-") for a in rest):
        return None
    from orchd import PROTOCOL_VERSION

    request = {"op": "Status", "v": PROTOCOL_VERSION, "id": 1, "indent": 2}
    if rest:
        request["run"] = rest[0]
    return json.dumps(request).encode()


def _fast(argv: list[str]) -> bool:
    """Answer `argv` here if it is a fast-path command and all goes well; False to leave it to the full CLI."""
    body = _status_request(argv)
    if body is None:
        return False
    from orchd import sp
    from orchd.paths import socket_path

    try:
        reply = sp.request(socket_path(), body)
    except OSError:
        return False
    # keys sorted: the reply ends with "type" and "v" (an Error reply goes to the full CLI, which explains it)
    if not reply.startswith(b"{") or b'"type": "StatusReply",' not in reply[-48:]:
        return False
    sys.stdout.buffer.write(reply + b"\n")
    sys.stdout.flush()
    return True


def main() -> None:
    """Entry point of `orchctl`."""
    if _fast(sys.argv[1:]):
        return
    from orchctl.main import main as full

    full()
