"""What orchctl shows: agent conversations and activity from recorded output, the watch frame, help, errors."""

from __future__ import annotations

import re
import time
from pathlib import Path

import click
import msgspec
import pytest
from click.testing import CliRunner
from rich.console import Console

from orchctl import live, render
from orchctl.main import cli, handle_errors
from orchd import activity, views
from orchd import events as ev
from orchd.plan import RunSpec, TaskSpec

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "agents"


def conversation(data: bytes, chunk: int | None = None) -> str:
    c = activity.Conversation()
    parts = [data] if chunk is None else [data[i : i + chunk] for i in range(0, len(data), chunk)]
    return (b"".join(c.feed(p) for p in parts) + c.flush()).decode()


def test_claude_conversation_shows_text_tool_calls_results_and_cost() -> None:
    text = conversation((FIXTURES / "claude" / "edit.jsonl").read_bytes())
    assert text.splitlines() == [
        "── session 0ad6f2a6-9142-4184-8263-d5c5ca0fcf88 (claude-opus-5-5)",
        "→ Write /work/repo/notes.txt",
        "  ← File created successfully at: /work/repo/notes.txt (file state is current in your context — no need "
        "to Read it back)",
        "I wrote notes.txt.",
        "✓ result: I wrote notes.txt. ($0.0019, 220 in / 50 out, 2 turns)",
    ]


def test_codex_conversation_and_plain_lines_pass_through() -> None:
    text = conversation((FIXTURES / "codex" / "edit.jsonl").read_bytes())
    lines = text.splitlines()
    assert (
        lines[0].startswith("WARNING: proceeding")
        and lines[1] == "Reading additional input from stdin..."
    )
    assert lines[2:] == [
        "── thread 01a211c4-9c52-70d0-821d-513108a64379",
        "→ edit add /work/repo/notes.txt",
        "I wrote notes.txt.",
        "✓ turn completed (220 in / 50 out)",
    ]
    failed = conversation((FIXTURES / "codex" / "quota.jsonl").read_bytes())
    assert "✗ turn failed: Quota exceeded. Check your plan and billing details." in failed


def test_gemini_stream_joins_text_deltas() -> None:
    events = [
        b'{"type":"init","session_id":"s1","model":"gemini-2.5-pro"}',
        b'{"type":"message","role":"user","content":"Add hints"}',
        b'{"type":"message","role":"assistant","content":"Hel","delta":true}',
        b'{"type":"message","role":"assistant","content":"lo.","delta":true}',
        b'{"type":"tool_use","tool_name":"run_shell_command","tool_id":"t1","parameters":{"command":"ls"}}',
        b'{"type":"tool_result","tool_id":"t1","status":"success","output":"a.py"}',
        b'{"type":"result","status":"success","stats":{"input_tokens":10,"output_tokens":5}}',
    ]
    assert conversation(b"\n".join(events) + b"\n").splitlines() == [
        "── session s1 (gemini-2.5-pro)",
        "» Add hints",
        "Hello.",
        "→ run_shell_command ls",
        "  ← a.py",
        "✓ result: success (10 in / 5 out)",
    ]


@pytest.mark.parametrize(
    "path",
    sorted(p for p in FIXTURES.glob("*/*") if p.suffix in (".jsonl", ".txt")),
    ids=lambda p: f"{p.parent.name}/{p.name}",
)
def test_rendering_does_not_depend_on_how_output_arrives(path: Path) -> None:
    data = path.read_bytes()
    assert conversation(data, chunk=7) == conversation(data)
    assert activity.latest_activity(str(path))  # every recorded output says something


def test_plain_output_is_byte_for_byte() -> None:
    data = (
        b"".join(f"line {i}\n".encode() for i in range(500))
        + b"{not json}\n"
        + b'{"a": 1}\n'
        + b"tail"
    )
    assert conversation(data, chunk=13).encode() == data


def test_latest_activity_skips_a_line_still_being_written(tmp_path: Path) -> None:
    log = tmp_path / "1.log"
    log.write_bytes(
        (FIXTURES / "claude" / "edit.jsonl").read_bytes().rsplit(b"\n", 2)[0]
        + b"\n"
        + b'{"type":"result","resu'
    )
    assert activity.latest_activity(str(log)) == "I wrote notes.txt."
    log.write_bytes(b"x" * (activity.TAIL_BYTES * 2) + b"\nstep 3 of 7\n")
    assert activity.latest_activity(str(log)) == "step 3 of 7"
    assert activity.latest_activity(str(tmp_path / "missing.log")) == ""


def test_main_argument_of_tool_calls() -> None:
    assert (
        activity.tool_call("Bash", {"command": "pytest -q", "description": "tests"})
        == "→ Bash pytest -q"
    )
    assert activity.tool_call("Grep", '{"pattern": "TODO"}') == "→ Grep TODO"
    assert activity.tool_call("x", None) == "→ x"


# ---------------------------------------------------------------- the watch frame


def row(seq: int, event: ev.Event, ts: float) -> ev.Row:
    return ev.Row(
        seq,
        ts,
        event.run_id,
        getattr(event, "task_id", None),
        ev.kind_of(event),
        msgspec.Raw(msgspec.json.encode(event)),
    )


def tracked(n: int, tmp_path: Path) -> live.RunTracker:
    """A run of `n` tasks: t0 running (with output), t1 retrying, t2 parked, t3 failed, the rest half done."""
    now = time.time()
    spec = RunSpec(
        name="big",
        concurrency=8,
        workdir="/w",
        tasks=[
            TaskSpec(id=f"t{i}", agent="claude", cwd="/w", prompt="p", max_retries=2)
            for i in range(n)
        ],
    )
    log = tmp_path / "t0.log"
    log.write_bytes((FIXTURES / "claude" / "edit.jsonl").read_bytes().split(b"\n")[1] + b"\n")
    events: list[ev.Event] = [ev.RunSubmitted("r", spec)]
    for i in range(4):
        events += [
            ev.AttemptLaunching("r", f"t{i}", 1, ["claude"], "/w", str(log) if i == 0 else "/nope"),
            ev.AttemptStarted("r", f"t{i}", 1, pid=100 + i, pgid=100 + i),
        ]
    report = ev.AgentReport(cost_usd=0.25, tokens_in=1000, tokens_out=20)
    events += [
        ev.AttemptFinished("r", "t1", 1, "retry", exit_code=1, reason="overloaded", report=report),
        ev.TaskRetrying("r", "t1", due_at=now + 30, delay=30, reason="overloaded"),
        ev.AttemptFinished("r", "t2", 1, "park", exit_code=1, reason="usage limit"),
        ev.TaskRetrying(
            "r", "t2", due_at=now + 3600, delay=3600, reason="usage limit", spends_retry=False
        ),
        ev.AttemptFinished("r", "t3", 1, "permanent", exit_code=1, reason="invalid API key"),
        ev.TaskFailed("r", "t3", reason="invalid API key"),
    ]
    for i in range(4, n, 2):
        events += [
            ev.AttemptLaunching("r", f"t{i}", 1, ["claude"], "/w", "/nope"),
            ev.AttemptFinished("r", f"t{i}", 1, "success", exit_code=0, report=report),
            ev.TaskCompleted("r", f"t{i}"),
        ]
    tracker = live.RunTracker("r")
    tracker.feed([row(seq, event, now - 60) for seq, event in enumerate(events, 1)])
    return tracker


def frame(tracker: live.RunTracker, only: str | None = None) -> str:
    # the live view runs in a terminal only
    console = Console(record=True, width=120, height=30, color_system=None, force_terminal=True)
    view = live.WatchView(tracker, console)
    view.only = only
    console.print(view.render())
    return console.export_text()


def test_watch_frame_of_10000_tasks(tmp_path: Path) -> None:
    tracker = tracked(10_000, tmp_path)
    started = time.monotonic()
    text = frame(tracker)
    assert time.monotonic() - started < 5  # a deadline against a hang, not a benchmark
    lines = text.splitlines()
    assert "r  running  4999/10000 done  elapsed 1m" in lines[0] and "cost $1249.7500" in lines[0]
    assert "49%  4998 pending  1 running  2 retrying  4998 completed  1 failed" in lines[1]
    assert lines[2].split() == [
        "TASK",
        "STATE",
        "ATTEMPT",
        "AGENT",
        "DURATION",
        "COST",
        "TOKENS",
        "ACTIVITY",
    ]
    assert all(len(line) <= 120 for line in lines)  # long activity is cut, no column is dropped
    tasks = [line.split()[0] for line in lines[3:] if line.startswith(" t")]
    assert tasks[:4] == ["t0", "t1", "t2", "t3"] and len(tasks) == 30 - live.CHROME
    t0, t1, t2, t3 = (lines[3 + i] for i in range(4))
    assert (
        "running" in t0 and "1/3" in t0 and "claude" in t0 and "→ Write /work/repo/notes.txt" in t0
    )
    assert "next attempt at" in t1 and "(overloaded)" in t1 and "$0.2500" in t1 and "1000/20" in t1
    # a reset an hour ahead is on another day near midnight: then it names the day
    assert re.search(r"waiting until (\w{3} \d\d )?\d\d:\d\d \(usage limit\)", t2), t2
    assert "failed" in t3 and "invalid API key" in t3
    assert f"… {10_000 - len(tasks)} more" in text
    only_failed = frame(tracker, "failed")
    assert "showing failed" in only_failed and " t3 " in only_failed and " t0 " not in only_failed
    assert "more" not in only_failed


def test_progress_line_and_final_report(tmp_path: Path) -> None:
    tracker = tracked(100, tmp_path)
    line = render.progress_line(tracker.run, now=tracker.run.submitted_at + 90)
    assert line == (
        "r [#########-----------] 49/100 done (48 pending, 1 running, 2 retrying, 48 completed, 1 failed) "
        "1m30s"
    )
    console = Console(record=True, width=160, color_system=None, force_terminal=True)
    console.print(render.final_report(views.run_view(tracker.run)))
    report = console.export_text()
    assert (
        " t3 " in report
        and " t4 " not in report
        and "… 60 more tasks (orchctl results r)" in report
    )


# ---------------------------------------------------------------- help and errors


def commands(group: click.Group, prefix: str = "") -> list[tuple[str, click.Command]]:
    found = []
    for name, command in group.commands.items():
        found.append((prefix + name, command))
        if isinstance(command, click.Group):
            found += commands(command, f"{prefix}{name} ")
    return found


@pytest.mark.parametrize("name", [name for name, _ in commands(cli)])
def test_every_command_has_an_example_in_its_help(name: str) -> None:
    result = CliRunner().invoke(cli, [*name.split(), "--help"])
    assert result.exit_code == 0 and "Example" in result.output, result.output


def test_no_traceback_unless_debug(monkeypatch: pytest.MonkeyPatch) -> None:
    @click.command()
    @handle_errors
    def broken() -> None:
        raise RuntimeError("bug")

    monkeypatch.delenv("ORCH_DEBUG", raising=False)
    quiet = CliRunner().invoke(broken, [])
    assert (
        quiet.exit_code == 1 and "internal error: RuntimeError: bug (--debug shows" in quiet.output
    )
    assert "Traceback" not in quiet.output
    monkeypatch.setenv("ORCH_DEBUG", "1")
    loud = CliRunner().invoke(broken, [])
    assert isinstance(loud.exception, RuntimeError)  # raised, so Python prints the traceback
    monkeypatch.setenv("ORCH_DEBUG", "0")
    assert CliRunner().invoke(broken, []).exit_code == 1
