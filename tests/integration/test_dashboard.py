"""The web dashboard of a real orchd: its token, its port, its threads, and in a real browser
(Debian's chromium): a run that turns completed without a reload, inert agent output, paging."""

from __future__ import annotations

import http.client
import json
import os
import socket
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

from tests import browser
from tests.conftest import Daemon, agent, wait_until, write_plan

chromium_needed = browser.skip_unless_ci()
DASH = "\u2013"  # an en dash: the pager says "1 DASH 200 of 10,000"
ROUTES = [
    "/",
    "/static/app.js",
    "/api/view?view=runs",
    "/api/stream?view=runs",
    "/api/diff?run=x&task=y",
]


def dashboard(orchd: Daemon) -> tuple[str, str]:
    """(the dashboard's base URL, its token), from `orchctl dashboard --json`."""
    url = json.loads(orchd.orchctl("dashboard", "--json", check=True).stdout)["url"]
    base, _, token = url.partition("?token=")
    return base, token


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, dict(answer.headers), answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def gated_run(orchd: Daemon, tmp_path: Path, *texts: str, tasks: int = 1) -> tuple[str, Path]:
    """A run whose first task prints `texts`, then runs until the test creates the gate file;
    the other tasks (`tasks` in all, concurrency 1) wait for it, pending."""
    gate = tmp_path / "gate"
    plan = write_plan(
        tmp_path / "plan.json",
        {
            "name": "gated",
            "workdir": str(tmp_path),
            "concurrency": 1,
            "defaults": {"agent": "command", "max_retries": 0},
            "tasks": [{"id": "gate", "command": agent("gate", str(gate), *texts)}]
            + [{"id": f"t{i:05d}", "command": ["true"]} for i in range(1, tasks)],
        },
    )
    run_id = json.loads(orchd.orchctl("submit", str(plan), "--json", check=True).stdout)["run_id"]
    return run_id, gate


def test_every_request_without_the_token_is_refused(make_daemon, tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port that was free a moment ago
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    orchd = make_daemon(dashboard={"port": port})
    base, token = dashboard(orchd)
    assert base == f"http://127.0.0.1:{port}/" and len(token) >= 40
    assert dashboard(orchd) == (base, token)  # asking twice: the same server
    assert orchd.orchctl("dashboard", check=True).stdout.strip() == f"{base}?token={token}"
    root = base.rstrip("/")
    for route in ROUTES:
        assert get(root + route)[0] == 401, route
        assert get(root + route, {"Authorization": "Bearer nope"})[0] == 403, route
        joiner = "&" if "?" in route else "?"
        assert get(f"{root}{route}{joiner}token={token[:-1]}x")[0] == 403, route
    assert get(root + "/api/view?view=runs", {"Authorization": f"Bearer {token}"})[0] == 200
    # the URL's token becomes a cookie; with it, the page's other URLs need no token
    status, headers, _ = get(f"{base}?token={token}")
    assert status == 200
    cookie = headers["set-cookie"].split(";")[0]
    assert "HttpOnly" in headers["set-cookie"] and "SameSite=Strict" in headers["set-cookie"]
    assert "script-src 'self'" in headers["content-security-policy"]
    status, _, body = get(root + "/api/view?view=runs", {"Cookie": cookie})
    assert status == 200 and json.loads(body)["view"] == "runs"
    assert get(root + "/api/view?view=run&run=nope", {"Cookie": cookie})[0] == 404
    # the token is in no log, and no event
    orchd.stop()
    for path in [orchd.home / "orchd-test.log", *orchd.home.glob("state/events.db*")]:
        assert token.encode() not in path.read_bytes(), path


def test_a_port_in_use_is_a_clear_error(make_daemon) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        orchd = make_daemon(dashboard={"port": taken.getsockname()[1]})
        result = orchd.orchctl("dashboard")
    assert result.returncode == 1
    assert "cannot serve the dashboard" in result.stderr and "[dashboard] port" in result.stderr


def test_open_pages_cost_no_thread(orchd: Daemon, tmp_path: Path) -> None:
    run_id, gate = gated_run(orchd, tmp_path, "hello")
    assert orchd.proc is not None
    threads = lambda: len(os.listdir(f"/proc/{orchd.proc.pid}/task"))  # noqa: E731
    before = threads()
    base, token = dashboard(orchd)
    parts = urlsplit(base)
    streams = []
    for view in ["view=runs", f"view=run&run={run_id}", f"view=task&run={run_id}&task=gate"] * 4:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        conn.request("GET", f"/api/stream?{view}", headers={"Authorization": f"Bearer {token}"})
        answer = conn.getresponse()
        assert answer.status == 200 and answer.getheader("content-type").startswith(
            "text/event-stream"
        )
        assert b"event: snapshot" in answer.readline() + answer.readline() + answer.readline()
        streams.append(conn)
    assert threads() <= before + 1  # the dashboard's loop; no thread per page
    gate.write_text("")
    wait_until(
        lambda: orchd.orchctl("status", run_id, "--json").stdout.count('"completed"') >= 2,
        what="the run to complete",
    )
    for conn in streams:
        conn.close()


@chromium_needed
def test_a_running_run_turns_completed_without_a_reload(orchd: Daemon, tmp_path: Path) -> None:
    run_id, gate = gated_run(orchd, tmp_path, "working on it")
    base, token = dashboard(orchd)
    with browser.chromium() as page:
        page.goto(f"{base}?token={token}#/run/{run_id}")
        page.wait_for_selector(".title .state.running")
        row = page.locator("tbody tr", has_text="gate")
        row.locator(".state.running").wait_for()
        assert "token" not in page.url  # taken off the address bar: the cookie carries it
        page.evaluate("window.sameDocument = true")
        gate.write_text("")
        page.wait_for_selector(".title .state.completed", timeout=30_000)
        row.locator(".state.completed").wait_for()
        assert page.evaluate("window.sameDocument") is True  # no reload
        assert "done" in row.inner_text()  # the result, as the delta brought it


@chromium_needed
def test_a_page_without_the_token_is_refused(orchd: Daemon) -> None:
    base, _ = dashboard(orchd)
    with browser.chromium() as page:
        answer = page.goto(base)
        assert answer is not None and answer.status == 401
        assert "needs its token" in page.content()
        answer = page.goto(f"{base}?token=wrong")
        assert answer is not None and answer.status == 403


@chromium_needed
def test_agent_output_is_shown_as_text_and_runs_nothing(orchd: Daemon, tmp_path: Path) -> None:
    script = "<script>window.pwned = 1</script>"
    img = '<img src=x onerror="window.pwned = 2">'
    run_id, gate = gated_run(orchd, tmp_path, script, img)
    gate.write_text("")
    wait_until(
        lambda: '"state": "completed"' in orchd.orchctl("status", run_id, "--json").stdout,
        what="the run to complete",
    )
    base, token = dashboard(orchd)
    with browser.chromium() as page:
        page.goto(f"{base}?token={token}#/run/{run_id}/task/gate")
        conversation = page.locator("pre.conversation")
        conversation.get_by_text("done").wait_for()
        text = conversation.inner_text()
        assert script in text and img in text  # shown as the agent printed it
        assert page.evaluate("window.pwned") is None
        assert page.locator("main script, main img").count() == 0
        page.goto(f"{base}#/run/{run_id}")  # the cookie: no token on the URL any more
        page.locator("tbody tr", has_text="gate").wait_for()
        assert page.evaluate("window.pwned") is None


@chromium_needed
def test_ten_thousand_tasks_are_paged(orchd: Daemon, tmp_path: Path) -> None:
    run_id, gate = gated_run(orchd, tmp_path, tasks=10_000)
    base, token = dashboard(orchd)
    with browser.chromium() as page:
        page.goto(f"{base}?token={token}#/run/{run_id}")
        page.get_by_text(f"1{DASH}200 of 10,000").wait_for()
        assert page.locator("tbody tr").count() == 200
        page.get_by_role("button", name="next").click()
        page.get_by_text(f"201{DASH}400 of 10,000").wait_for()
        assert page.locator("tbody tr").first.inner_text().startswith("t00200")
        page.get_by_role("button", name="pending 9999").click()
        page.get_by_text(f"1{DASH}200 of 9,999").wait_for()
        page.goto(f"{base}#/run/{run_id}?state=running")
        gate_row = page.locator("tbody tr", has_text="gate")
        gate_row.wait_for()
        assert page.locator("tbody tr").count() == 1
        gate.write_text("")  # the gate opens: the page of running tasks loses its row, live
        gate_row.wait_for(state="detached", timeout=60_000)


@chromium_needed
def test_a_tasks_page_shows_how_each_attempts_checks_went(orchd: Daemon, tmp_path: Path) -> None:
    write = "import os; open('out.txt', 'w').write(os.environ['ORCH_ATTEMPT'])"
    check = [
        "python3",
        "-c",
        "import sys; print('saw', open('out.txt').read()); sys.exit(1 - (open('out.txt').read() == '2'))",
    ]
    plan = write_plan(
        tmp_path / "plan.json",
        {
            "workdir": str(tmp_path),
            "defaults": {"agent": "command", "backoff": {"initial": "10ms", "jitter": "none"}},
            "tasks": [{"id": "checked", "command": ["python3", "-c", write], "verify": [check]}],
        },
    )
    run_id = json.loads(orchd.orchctl("submit", str(plan), "--wait", "--json", check=True).stdout)[
        "summary"
    ]["run_id"]
    base, token = dashboard(orchd)
    with browser.chromium() as page:
        page.goto(f"{base}?token={token}#/run/{run_id}/task/checked")
        table = page.locator("table.grid", has_text="Verify")
        table.get_by_text("passed (1)").wait_for()
        failed = table.locator("tbody tr").first
        assert "verify_failed" in failed.inner_text()
        cell = failed.get_by_text("failed: python3 -c")
        assert cell.inner_text().endswith(": exit 1")
        assert cell.get_attribute("title") == "saw 1"  # the tail of the check's output, on hover
