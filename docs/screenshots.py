"""Regenerate docs/screenshots.md (and the SVGs beside it): `orchctl watch` and `orchctl results` of a real run.

usage: python docs/screenshots.py      (needs tmux; takes about a minute)

A real orchd runs a plan of Claude Code tasks against a stand-in `claude` (a script that
replays recorded stream-json with pauses: tool calls, an overloaded API, a bad key, a usage
limit), so the screens show what a person sees: running, retrying, waiting and failed tasks,
each agent's latest tool call, cost and tokens.
"""

from __future__ import annotations

import io
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "agents" / "claude"
DOCS = ROOT / "docs"
WIDTH, HEIGHT = 120, 24

FAKE_CLAUDE = f'''#!{sys.executable}
"""A stand-in for Claude Code: replays recorded stream-json, slowly; what it does depends on the task."""
import json, os, sys, time
task, attempt = os.environ["ORCH_TASK_ID"], int(os.environ["ORCH_ATTEMPT"])
fixtures = {str(FIXTURES)!r}
def emit(event, pause=0.0):
    print(json.dumps(event), flush=True)
    time.sleep(pause)
def replay(name, reset=None):
    for line in open(os.path.join(fixtures, name + ".jsonl")):
        if line.startswith("{{"):
            emit(json.loads(line.replace("1900000000", str(reset))))  # the recorded reset time, moved
if task.startswith("auth"):
    replay("auth"); sys.exit(1)
if task.startswith("migrate"):
    replay("usage_limit", reset=int(time.time()) + 7200); sys.exit(1)
if task.startswith("api") and attempt == 1:
    time.sleep(2); replay("overloaded"); sys.exit(1)
n = sum(map(ord, task)) % 5
module = "src/" + task.split("-", 1)[-1] + ".py"
emit({{"type": "system", "subtype": "init", "session_id": "s-" + task, "model": "claude-sonnet-4-5"}})
steps = [("Read", {{"file_path": module}}), ("Grep", {{"pattern": "def .*\\\\(.*\\\\):", "path": module}}),
         ("Edit", {{"file_path": module, "old_string": "def", "new_string": "def"}}),
         ("Bash", {{"command": "python -m pytest -q tests/test_" + task.split("-", 1)[-1] + ".py"}})]
for i, (tool, args) in enumerate(steps):
    emit({{"type": "assistant", "message": {{"content": [{{"type": "tool_use", "id": str(i), "name": tool,
         "input": args}}]}}}}, 1.5 + n * 0.7)
    emit({{"type": "user", "message": {{"content": [{{"type": "tool_result", "tool_use_id": str(i),
         "content": "ok"}}]}}}})
text = "Added type hints to " + module + "; tests pass."
emit({{"type": "assistant", "message": {{"content": [{{"type": "text", "text": text}}]}}}})
emit({{"type": "result", "subtype": "success", "is_error": False, "result": text, "session_id": "s-" + task,
      "total_cost_usd": 0.011 + n * 0.0042, "num_turns": 5,
      "usage": {{"input_tokens": 9000 + n * 1700, "output_tokens": 700 + n * 90}}}})
'''

TASKS = [
    "hints-core",
    "hints-cli",
    "hints-store",
    "hints-plan",
    "api-client",
    "hints-state",
    "auth-check",
    "hints-render",
    "migrate-db",
    "hints-events",
    "hints-server",
    "hints-paths",
]


def write_plan(home: Path) -> Path:
    """The plan both scripts run: type hints for TASKS, with the fake Claude, in `home`."""
    plan = home / "type-hints.json"
    plan.write_text(
        json.dumps(
            {
                "name": "type-hints",
                "concurrency": 4,
                "workdir": str(home),
                "isolation": "none",
                "defaults": {
                    "agent": "claude",
                    "max_retries": 2,
                    "backoff": {"initial": "45s", "jitter": "none"},
                },
                "tasks": [
                    {"id": t, "prompt": f"Add type hints to src/{t.split('-', 1)[-1]}.py"}
                    for t in TASKS
                ],
            }
        )
    )
    return plan


def orchctl(env: dict[str, str], *args: str) -> str:
    return subprocess.run(
        [sys.executable, "-m", "orchctl.main", *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    ).stdout


def svg(title: str, text_with_ansi: str, path: Path) -> None:
    """An SVG of a terminal capture (with its colours), as rich draws it."""
    from rich.console import Console
    from rich.text import Text

    console = Console(
        record=True, width=WIDTH, force_terminal=True, color_system="truecolor", file=io.StringIO()
    )
    console.print(Text.from_ansi(text_with_ansi), end="")
    console.save_svg(str(path), title=title)


def main() -> None:
    home = Path(tempfile.mkdtemp(prefix="orch-shots-"))
    bindir = home / "bin"
    bindir.mkdir()
    (bindir / "claude").write_text(FAKE_CLAUDE)
    (bindir / "claude").chmod(0o755)
    env = {
        **os.environ,
        "ORCH_HOME": str(home),
        "PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}",
    }
    for name in ("COLUMNS", "LINES"):
        env.pop(name, None)
    plan = write_plan(home)
    session = f"orch-shots-{os.getpid()}"
    try:
        run_id = json.loads(orchctl(env, "submit", str(plan), "--json"))["run_id"]
        command = f"{sys.executable} -m orchctl.main watch {run_id}; sleep 600"
        exports = " ".join(f"{k}={shlex.quote(env[k])}" for k in ("ORCH_HOME", "PATH"))
        subprocess.run(
            [
                "tmux",
                "new-session",
                "-d",
                "-s",
                session,
                "-x",
                str(WIDTH),
                "-y",
                str(HEIGHT),
                f"env -u COLUMNS -u LINES {exports} {command}",
            ],
            check=True,
            cwd=ROOT,
        )

        def capture(*flags: str) -> str:
            return subprocess.run(
                ["tmux", "capture-pane", "-p", *flags, "-t", session],
                capture_output=True,
                text=True,
            ).stdout

        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # a moment with every kind of row on screen
            screen = capture()
            if all(
                w in screen
                for w in (
                    "running",
                    "next attempt at",
                    "waiting until",
                    "failed",
                    "→ ",
                    "completed",
                )
            ):
                break
            time.sleep(0.2)
        watch_text, watch_ansi = capture(), capture("-e")
        svg("orchctl watch", watch_ansi, DOCS / "watch.svg")
        orchctl(
            env, "cancel", run_id, "migrate-db"
        )  # parked until the provider's reset: let the run end
        while (
            json.loads(orchctl(env, "status", run_id, "--json"))["runs"][0]["summary"]["state"]
            == "running"
        ):
            time.sleep(0.5)
        # as a terminal shows it (off one, orchctl prints tab-separated lines), without colours
        plain = {**env, "COLUMNS": str(WIDTH), "TTY_COMPATIBLE": "1", "TERM": "dumb"}
        results = orchctl(plain, "results", run_id)
        forced = {**env, "COLUMNS": str(WIDTH), "FORCE_COLOR": "1", "TTY_COMPATIBLE": "1"}
        svg("orchctl results", orchctl(forced, "results", run_id), DOCS / "results.svg")
        write_markdown(watch_text, results)
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
        subprocess.run(
            [sys.executable, "-m", "orchctl.main", "daemon", "stop"], env=env, capture_output=True
        )


def write_markdown(watch_text: str, results: str) -> None:
    (DOCS / "screenshots.md").write_text(f"""# Screenshots

Captured from a real run by `python docs/screenshots.py`: a real `orchd` runs twelve Claude Code tasks
(concurrency 4) against a stand-in `claude` that replays recorded stream-json with pauses. One task meets an
overloaded API and waits for its next attempt, one has a bad key (a permanent failure, no retry), one hits
the provider's usage limit and waits, without spending a retry, until the reset time the provider gave.

## `orchctl watch type-hints-…`

![orchctl watch](watch.svg)

The same screen as text (`tmux capture-pane -p`):

```
{watch_text.rstrip()}
```

The first line: the run, its state, tasks done, elapsed time, an ETA from the rate so far, and the cost and
tokens the agents reported. Then a bar with the counts per state, and one row per task — running, retrying
and failed first; as many as fit, then `… N more` — with its attempt, agent, duration, cost, tokens and the
agent's latest activity (its last tool call with the main argument, or its last line of output). `f` cycles a
filter by state, `q` or Ctrl-C leaves (the run goes on). When the run ends, the view gives way to the results
and a summary line.

## `orchctl results type-hints-…`

![orchctl results](results.svg)

```
{results.rstrip()}
```

`orchctl results RUN --markdown` prints the same table for a pull request; `--json` prints it as
[`schemas/run.schema.json`](../schemas/run.schema.json) describes.
""")


if __name__ == "__main__":
    main()
