"""orchctl's fast path (orchctl/fast.py): `status [RUN] --json` and `submit PLAN --wait --json`
without click or pynng.

It must print byte for byte what the full CLI prints, and hand everything else
(errors, no daemon, other commands) to the full CLI.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from orchctl import sp
from tests.conftest import write_plan


def fast(orchd, *args: str) -> subprocess.CompletedProcess:
    """orchctl through its installed entry point (orchctl.fast:main), as users run it."""
    main = (
        "import sys; from orchctl import fast\n"
        "code = fast._fast(sys.argv[1:])\n"
        "if code is None: from orchctl.main import main; main()\n"
        "print('(fast path)', file=sys.stderr); sys.exit(code)"
    )
    return subprocess.run(
        [sys.executable, "-c", main, *args],
        env=orchd.env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_fast_path_prints_what_the_full_cli_prints(make_daemon, tmp_path: Path) -> None:
    orchd = make_daemon()
    plan = write_plan(
        tmp_path / "plan.json",
        {
            "name": "fast",
            "workdir": str(tmp_path),
            "defaults": {"agent": "command", "max_retries": 0},
            "tasks": [
                {
                    "id": f"t{i}",
                    "command": ["sh", "-c", f"echo t{i}; exit {1 if i % 3 == 0 else 0}"],
                }
                for i in range(12)
            ],
        },
    )
    first = json.loads(orchd.orchctl("submit", str(plan), "--wait", "--json").stdout)["summary"][
        "run_id"
    ]
    orchd.orchctl("submit", str(plan), "--wait", "--json")
    for args in (
        ["status", "--json"],
        ["status", first, "--json"],
        ["--no-start", "status", "--json", first],
    ):
        quick = fast(orchd, *args)
        full = orchd.orchctl(*args)
        assert quick.returncode == full.returncode == 0, (args, quick.stderr)
        assert "(fast path)" in quick.stderr
        assert quick.stdout == full.stdout, args
    assert json.loads(quick.stdout)["runs"][0]["summary"]["counts"]["failed"] == 4


def test_submit_and_wait_on_the_fast_path(make_daemon, tmp_path: Path) -> None:
    orchd = make_daemon()
    plan = write_plan(
        tmp_path / "plan.json",
        {
            "name": "quick",
            "workdir": str(tmp_path),
            "defaults": {"agent": "command", "max_retries": 0},
            "tasks": [
                {"id": f"t{i}", "command": ["sh", "-c", f"exit {1 if i == 2 else 0}"]}
                for i in range(5)
            ],
        },
    )
    waited = fast(orchd, "submit", str(plan), "--json", "--wait")
    assert "(fast path)" in waited.stderr and waited.returncode == 1, waited.stderr  # a task failed
    run = json.loads(waited.stdout)  # the run's view, as the full CLI prints it
    assert run["summary"]["state"] == "failed" and run["summary"]["counts"]["completed"] == 4
    again = orchd.orchctl(
        "wait", run["summary"]["run_id"], "--json"
    )  # what the fast path falls back to
    assert again.returncode == 1 and again.stdout == waited.stdout
    assert json.loads(orchd.orchctl("status", run["summary"]["run_id"], "--json").stdout)[
        "runs"
    ] == [run]
    runs = json.loads(orchd.orchctl("runs", "--json", check=True).stdout)
    assert len(runs["runs"]) == 1  # submitted once
    # a plan orchd refuses goes to the full CLI, which says why; nothing is submitted
    bad = write_plan(
        tmp_path / "bad.json", {"name": "bad", "workdir": str(tmp_path), "tasks": [{"id": "x"}]}
    )
    refused = fast(orchd, "submit", str(bad), "--wait", "--json")
    assert (
        refused.returncode == 2
        and "(fast path)" not in refused.stderr
        and "agent" in refused.stderr
    )
    assert len(json.loads(orchd.orchctl("runs", "--json", check=True).stdout)["runs"]) == 1


def test_everything_else_goes_to_the_full_cli(make_daemon, orch_home: Path) -> None:
    orchd = make_daemon()
    missing = fast(orchd, "status", "no-such-run", "--json")
    assert missing.returncode == 2 and "no run 'no-such-run'" in missing.stderr
    assert "(fast path)" not in missing.stderr
    human = fast(orchd, "status")
    assert (human.returncode == 0 and "no runs" in human.stdout.lower()) or human.stdout.strip()
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
