"""orchctl's fast path (orchctl/fast.py): `status [RUN] --json` without click or pynng.

It must print byte for byte what the full CLI prints, and hand everything else
(errors, no daemon, other commands) to the full CLI.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from orchd import sp
from tests.conftest import write_plan


def fast(orchd, *args: str) -> subprocess.CompletedProcess:
    """orchctl through its installed entry point (orchctl.fast:main), as users run it."""
    main = ("import sys; from orchctl import fast\n"
            "if fast._fast(sys.argv[1:]): print('(fast path)', file=sys.stderr)\n"
            "else: from orchctl.main import main; main()")
    return subprocess.run([sys.executable, "-c", main, *args], env=orchd.env, capture_output=True, text=True,
                          timeout=60)


def test_the_fast_path_prints_what_the_full_cli_prints(make_daemon, tmp_path: Path) -> None:
    orchd = make_daemon()
    plan = write_plan(tmp_path / "plan.json", {
        "name": "fast", "workdir": str(tmp_path), "defaults": {"agent": "command", "max_retries": 0},
        "tasks": [{"id": f"t{i}", "command": ["sh", "-c", f"echo t{i}; exit {1 if i % 3 == 0 else 0}"]}
                  for i in range(12)]})
    first = json.loads(orchd.orchctl("submit", str(plan), "--wait", "--json").stdout)["summary"]["run_id"]
    orchd.orchctl("submit", str(plan), "--wait", "--json")
    for args in (["status", "--json"], ["status", first, "--json"], ["--no-start", "status", "--json", first]):
        quick = fast(orchd, *args)
        full = orchd.orchctl(*args)
        assert quick.returncode == full.returncode == 0, (args, quick.stderr)
        assert "(fast path)" in quick.stderr
        assert quick.stdout == full.stdout, args
    assert json.loads(quick.stdout)["runs"][0]["summary"]["counts"]["failed"] == 4


def test_everything_else_goes_to_the_full_cli(make_daemon, orch_home: Path) -> None:
    orchd = make_daemon()
    missing = fast(orchd, "status", "no-such-run", "--json")
    assert missing.returncode == 2 and "no run 'no-such-run'" in missing.stderr
    assert "(fast path)" not in missing.stderr
    human = fast(orchd, "status")
    assert human.returncode == 0 and "no runs" in human.stdout.lower() or human.stdout.strip()
    assert fast(orchd, "--version").stdout.startswith("orchctl")
    orchd.stop()
    gone = fast(orchd, "--no-start", "status", "--json")
    assert gone.returncode == 3 and "not running" in gone.stderr


def test_the_raw_client_refuses_a_socket_that_is_not_nng(tmp_path: Path) -> None:
    import socket
    import threading

    path = tmp_path / "not-nng.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)

    def answer() -> None:
        conn, _ = server.accept()
        conn.recv(8)
        conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")
        conn.close()

    threading.Thread(target=answer, daemon=True).start()
    try:
        sp.request(str(path), b"{}", timeout=5)
    except OSError as exc:
        assert "not an nng REP socket" in str(exc)
    else:
        raise AssertionError("a non-nng peer was taken for orchd")
    finally:
        server.close()
