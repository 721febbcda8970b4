"""How orchctl shows things: rich tables, the live watch view, plain progress lines."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable
from datetime import datetime

from rich.console import Console, Group, RenderableType
from rich.text import Text

from orchctl import tables
from orchd import events as ev
from orchd import reports, views
from orchd import state as st

COLOURS = {
    "pending": "bright_black",
    "running": "cyan",
    "retrying": "yellow",
    "completed": "green",
    "failed": "red",
    "cancelled": "magenta",
}
ORDER = {"running": 0, "retrying": 1, "failed": 2, "pending": 3, "cancelled": 4, "completed": 5}

console = Console()
console.soft_wrap = not console.is_terminal  # off a terminal, a line is never wrapped or cut
err_console = Console(stderr=True)


def show(renderable: RenderableType) -> None:
    """Print to stdout. A table wider than the terminal (ids too long for it) is not cropped: the
    terminal wraps its lines, and every id stays whole."""
    console.print(renderable, crop=False)


def when(ts: float | None) -> str:
    return datetime.fromtimestamp(ts).strftime("%H:%M:%S") if ts else "-"


def span(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes < 60 else f"{minutes // 60}h{minutes % 60:02d}m"


def cost(value: float | None) -> str:
    return "-" if value is None else f"${value:.4f}"


def state_text(state: str) -> Text:
    return Text(state, style=COLOURS.get(state, ""))


def counts_text(counts: dict[str, int]) -> Text:
    text = Text()
    for name in st.TASK_STATES:
        if counts.get(name):
            text.append("  " if text else "")
            text.append(f"{counts[name]} {name}", style=COLOURS[name])
    return text


def whole(command: str) -> str:
    """The hint under a table whose long text was cut to fit the terminal."""
    return f"(…: cut to fit; {command} shows it all)"


def runs_table(runs: Iterable[views.RunSummary]) -> tables.Grid:
    grid = tables.Grid(
        ["RUN", "STATE", "TASKS", "SUBMITTED", "DURATION", "COST", "WORKTREES", "PROGRESS"],
        hint=whole("`orchctl runs --json`"),
    )
    for run in sorted(runs, key=lambda r: r.submitted_at):
        end = run.finished_at or time.time()
        grid.add_row(
            run.run_id,
            state_text(run.state),
            str(run.tasks),
            when(run.submitted_at),
            span(end - run.submitted_at),
            cost(run.cost_usd),
            str(run.worktrees) if run.worktrees else "-",
            counts_text(run.counts),
        )
    return grid


def task_rows(run_id: str, tasks: list[views.TaskView]) -> tables.Grid:
    grid = tables.Grid(
        ["TASK", "STATE", "ATTEMPT", "DURATION", "EXIT", "COST", "DETAIL"],
        hint=whole(f"`orchctl why {run_id} TASK` or `--json`"),
    )
    now = time.time()
    for task in sorted(tasks, key=lambda t: ORDER.get(t.state, 9)):
        if task.state == "retrying" and task.due_at:
            detail = f"next attempt at {when(task.due_at)} ({task.reason})"
        elif task.state in ("completed",):
            detail = task.result
        else:
            detail = task.reason
        duration = task.duration
        if duration is None and task.started_at and task.state == "running":
            duration = now - task.started_at
        grid.add_row(
            task.id,
            state_text(task.state),
            f"{task.attempts}/{task.max_attempts}",
            span(duration),
            "-" if task.exit_code is None else str(task.exit_code),
            cost(task.cost_usd),
            detail,
        )
    return grid


def summary_line(run: views.RunSummary) -> Text:
    end = run.finished_at or time.time()
    text = Text.assemble(
        (run.run_id, "bold"),
        "  ",
        state_text(run.state),
        f"  {run.tasks} tasks in {span(end - run.submitted_at)}  ",
    )
    text.append_text(counts_text(run.counts))
    if run.cost_usd is not None:
        text.append(f" cost {cost(run.cost_usd)}")
    return text


def run_status(view: views.RunView) -> Group:
    return Group(summary_line(view.summary), task_rows(view.summary.run_id, view.tasks))


def results_table(view: views.RunView) -> tables.Grid:
    """One row per task; cost and token columns only when an agent reported them."""
    header, rows = results_rows(view)
    run_id = view.summary.run_id
    grid = tables.Grid(header, hint=whole(f"`orchctl why {run_id} TASK` or `--json`"))
    for task, cells in zip(sorted(view.tasks, key=lambda t: t.id), rows):
        cells[1] = state_text(task.state)
        grid.add_row(*cells)
    return grid


def results_rows(view: views.RunView) -> tuple[list[str], list[list]]:
    """The review table's header and cells (plain text); cost, token and file columns only where they apply."""
    priced = any(t.cost_usd is not None or t.tokens_in is not None for t in view.tasks)
    branched = any(t.branch for t in view.tasks)
    checked = any(t.verify is not None for t in view.tasks)
    header = (
        ["TASK", "STATE", "ATTEMPTS", "DURATION"]
        + (["COST", "TOKENS"] if priced else [])
        + (["FILES"] if branched else [])
        + (["CHECKS"] if checked else [])
        + ["RESULT"]
    )
    rows = []
    for task in sorted(view.tasks, key=lambda t: t.id):
        cells: list = [task.id, task.state, str(task.attempts), span(task.duration)]
        if priced:
            tokens = "-" if task.tokens_in is None else f"{task.tokens_in}/{task.tokens_out}"
            cells += [cost(task.cost_usd), tokens]
        if branched:
            cells.append(str(len(task.files)) if task.state == "completed" else "-")
        if checked:
            cells.append(checks_cell(task))
        cells.append(task.result if task.state == "completed" else task.reason)
        rows.append(cells)
    return header, rows


def final_report(view: views.RunView, limit: int = 40) -> Group:
    """What `watch` and `submit --wait` print when a run ends: the results table, then the summary line.

    A large run shows only the tasks that did not complete (at most `limit`), and says how to see the rest.
    """
    if len(view.tasks) <= limit:
        return Group(results_table(view), summary_line(view.summary))
    notable = [t for t in view.tasks if t.state != "completed"][:limit]
    rest = len(view.tasks) - len(notable)
    parts: list = (
        [results_table(views.RunView(summary=view.summary, tasks=notable))] if notable else []
    )
    parts.append(Text(f"… {rest} more tasks (orchctl results {view.summary.run_id})", style="dim"))
    return Group(*parts, summary_line(view.summary))


def results_markdown(view: views.RunView, conflicts: list[str] = ()) -> str:  # type: ignore[assignment]
    """The review table as GitHub Markdown, to paste into a pull request (with the `conflicts`
    predicted, in words)."""
    header, rows = results_rows(view)
    s = view.summary

    def cell(value: object) -> str:
        return " ".join(str(value).split()).replace("|", "\\|")[:300]

    lines = [
        f"### orch run `{s.run_id}`: {s.state}",
        "",
        f"{s.tasks} tasks: "
        + ", ".join(f"{n} {state}" for state, n in s.counts.items() if n)
        + (f"; cost {cost(s.cost_usd)}" if s.cost_usd is not None else ""),
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    files = [
        (t.id, t.files)
        for t in sorted(view.tasks, key=lambda t: t.id)
        if t.files and t.state == "completed"
    ]
    if files:
        lines += ["", "<details><summary>Files changed</summary>", ""]
        lines += [f"- `{tid}`: " + ", ".join(f"`{f}`" for f in names) for tid, names in files]
        lines += ["", "</details>"]
    if conflicts:
        lines += [
            "",
            *(f"- {line.strip()}" if line.startswith(" ") else line for line in conflicts),
        ]
    return "\n".join(lines) + "\n"


def event_line(run: st.RunState, event: ev.Event) -> str | None:
    """A plain line for a task's change of state (for logs, CI, pipes), or None."""
    if not isinstance(event, (ev.TaskCompleted, ev.TaskFailed, ev.TaskCancelled, ev.TaskRetrying)):
        return None
    task = views.task_view(run.tasks[event.task_id])
    done = sum(1 for t in run.tasks.values() if t.state in st.TERMINAL)
    width = len(str(len(run.tasks)))
    head = f"[{done:>{width}}/{len(run.tasks)}] {task.id} {task.state}"
    if isinstance(event, ev.TaskRetrying):
        return f"{head}: {event.reason}; attempt {task.attempts + 1} at {when(event.due_at)}"
    detail = task.result if task.state == "completed" else task.reason
    tail = f" (attempt {task.attempts}, {span(task.duration)})"
    return f"{head}{tail}{': ' + detail if detail else ''}"


def checks_cell(task: views.TaskView) -> str:
    """The CHECKS cell of the review table: how the latest attempt's checks went."""
    if task.verify is None:
        return "-"
    return "passed" if task.verify.passed else f"{task.verify.result}: {task.verify.detail}"


def conflict_lines(forecasts: list[reports.ConflictForecast]) -> list[str]:
    """The conflicts that merging the completed branches would meet, in words."""
    lines = []
    several = len(forecasts) > 1
    for f in forecasts:
        where = f" in {f.repo}" if several else ""
        if f.note:
            lines.append(f"conflicts not predicted{where}: {f.note}")
            continue
        if not f.conflicts:
            n = len(f.branches)
            lines.append(
                f"no conflicts predicted{where} between the {n} completed branch"
                f"{'es' * (n != 1)} and {f.into}"
            )
            continue
        lines.append(f"conflicts predicted{where} (merging into {f.into}):")
        for c in f.conflicts:
            other = f"{c.other} (the target)" if c.other_is_target else c.other
            lines.append(f"  {c.task} with {other}: {', '.join(c.files)}")
    return lines


def progress_line(run: st.RunState, now: float | None = None) -> str:
    """One compact line: `RUN [#####-----] 12/40 done (3 running, …) 1m02s`, O(tasks)."""
    counts = dict.fromkeys(st.TASK_STATES, 0)
    for task in run.tasks.values():
        counts[task.state] += 1
    total = len(run.tasks)
    done = sum(counts[x] for x in st.TERMINAL)
    filled = 20 * done // max(1, total)
    parts = [f"{counts[k]} {k}" for k in st.TASK_STATES if counts[k]]
    elapsed = (run.finished_at or now or time.time()) - run.submitted_at
    return (
        f"{run.run_id} [{'#' * filled}{'-' * (20 - filled)}] {done}/{total} done ({', '.join(parts)}) "
        f"{span(elapsed)}"
    )


def is_tty() -> bool:
    return sys.stdout.isatty()
