"""The log itself: events, replay, audit."""

from __future__ import annotations

import sys
from typing import Any

import click
import msgspec

from orchctl.common import client_for, follow_log, handle_errors, print_json
from orchctl.completion import complete_run, complete_task
from orchd import events as ev
from orchd import protocol as p

LINE_ENCODER = msgspec.json.Encoder()


@click.command()
@click.option("--run", help="Only this run's events.", shell_complete=complete_run)
@click.option("--task", help="Only this task's events (with --run).", shell_complete=complete_task)
@click.option("--from", "from_seq", type=int, default=0, help="Start after this sequence number.")
@click.option("--follow", is_flag=True, help="Keep printing new events as they are recorded.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.pass_context
@handle_errors
def events(
    ctx: click.Context,
    run: str | None,
    task: str | None,
    from_seq: int,
    follow: bool,
    as_json: bool,
) -> None:
    """Print the event log, oldest first.

    \b
    Example:
      orchctl events --run last --follow
    """
    client = client_for(ctx)
    for rows in follow_log(
        client, after=from_seq, run=run, task=task, wait=10.0 if follow else 0.0
    ):
        for row in rows:
            if as_json:
                line = p.EventLine(
                    seq=row.seq,
                    ts=row.ts,
                    run_id=row.run_id,
                    task_id=row.task_id,
                    kind=row.kind,
                    event=row.payload,
                )
                sys.stdout.buffer.write(LINE_ENCODER.encode(line) + b"\n")
            else:
                click.echo(_event_line(row, ev.decode(row.kind, row.payload)))
        sys.stdout.flush()
        if not rows and not follow:
            return


@click.command()
@click.option(
    "--at", "at", type=int, help="The state as of this sequence number (default: the end)."
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (same shape as `status --json`).")
@click.pass_context
@handle_errors
def replay(ctx: click.Context, at: int | None, as_json: bool) -> None:
    """Rebuild the state of every run from the event log alone.

    \b
    Example:
      orchctl replay --at 120 --json
    """
    from orchctl import render

    reply = client_for(ctx).call(p.Replay(at=at), p.StatusReply, timeout=120)
    if as_json:
        print_json(reply)
    else:
        click.echo(f"state as of event {reply.seq}")
        render.show(render.runs_table(v.summary for v in reply.runs))


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
@handle_errors
def audit(ctx: click.Context, as_json: bool) -> None:
    """Verify the event log: its hash chain, and that nothing ran twice; exit 1 naming the first bad event.

    \b
    Example:
      orchctl audit
    """
    reply = client_for(ctx).call(p.Audit(), p.AuditReply, timeout=600)
    if as_json:
        print_json(reply)
    elif reply.first_bad is None:
        click.echo(f"ok: {reply.events} events verified; head {reply.head[:16]}")
    else:
        click.echo(
            f"FAILED at event {reply.first_bad}: {reply.problem} ({reply.events} events before it verify)"
        )
    if reply.first_bad is not None:
        sys.exit(1)


def _event_line(row: Any, event: Any) -> str:
    from orchctl.render import when

    detail = ""
    if event is not None:
        fields = msgspec.to_builtins(event)
        for key in ("kind", "run_id", "task_id", "spec"):
            fields.pop(key, None)
        detail = " ".join(f"{k}={v}" for k, v in fields.items() if v not in ("", None, [], {}))
    run, task = row.run_id or "-", row.task_id or "-"  # an event of the whole daemon: no run
    return f"{row.seq:>7} {when(row.ts)} {run} {task} {row.kind} {detail}".rstrip()
