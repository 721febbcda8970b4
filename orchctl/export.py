"""`orchctl export [RUN] --db FILE`: runs, tasks and attempts as plain SQLite tables.

The client writes the file, from the daemon's `Export` reply: the record of one run as the fold
shows it (its `RunSummary`, each task's `TaskView` and every attempt: what `status --json` and
`why --json` print). So the file lands where the user's shell is, with the user's umask, and
orchd spends no server worker on writing it. Rows are upserted by their primary key: exporting
again updates the rows, adds the new attempts, and never duplicates one. The tables (README:
"Export") follow the views field by field, so a field a view gains becomes a column.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import click
import msgspec

from orchctl.common import client_for, handle_errors
from orchctl.completion import complete_run
from orchd import protocol as p
from orchd import state as st
from orchd import views

# what SQLite column type each msgspec type becomes; anything else is JSON text
_COLUMN = {
    msgspec.inspect.IntType: int,
    msgspec.inspect.BoolType: int,
    msgspec.inspect.FloatType: float,
    msgspec.inspect.StrType: str,
}


def _column(kind: msgspec.inspect.Type) -> type:
    if isinstance(kind, msgspec.inspect.UnionType):  # `X | None`: X's column
        kinds = [k for k in kind.types if not isinstance(k, msgspec.inspect.NoneType)]
        return _column(kinds[0]) if len(kinds) == 1 else str
    return _COLUMN.get(type(kind), str)


def columns(struct: type, *, rename: dict[str, str] | None = None) -> dict[str, type]:
    """The columns of a struct's rows: its fields (a nested struct's fields in their place)."""
    info = msgspec.inspect.type_info(struct)
    assert isinstance(info, msgspec.inspect.StructType)
    out: dict[str, type] = {}
    for f in info.fields:
        if isinstance(f.type, msgspec.inspect.StructType):
            out.update(columns(f.type.cls))
        else:
            out[(rename or {}).get(f.name, f.name)] = _column(f.type)
    return out


def row(obj: msgspec.Struct, *, rename: dict[str, str] | None = None) -> dict[str, Any]:
    """A struct as one row: a nested struct's fields in its place (an optional one, such as an
    attempt's `verify`, is one column of JSON, as `columns` says); lists and dicts as JSON."""
    out: dict[str, Any] = {}
    for name, value in msgspec.structs.asdict(obj).items():
        if isinstance(value, msgspec.Struct) and name not in _optional(type(obj)):
            out.update(row(value))
        else:
            out[(rename or {}).get(name, name)] = msgspec.to_builtins(value)
    return out


@functools.cache
def _optional(struct: type) -> frozenset[str]:
    """The fields of `struct` whose type is `SomeStruct | None`."""
    info = msgspec.inspect.type_info(struct)
    assert isinstance(info, msgspec.inspect.StructType)
    return frozenset(f.name for f in info.fields if isinstance(f.type, msgspec.inspect.UnionType))


RUN_COLUMNS = {
    **{k: v for k, v in columns(views.RunSummary).items() if k != "counts"},
    **dict.fromkeys(st.TASK_STATES, int),
}
TASK_COLUMNS = {"run_id": str, **columns(views.TaskView, rename={"id": "task_id"})}
ATTEMPT_COLUMNS = {
    "run_id": str,
    "task_id": str,
    "duration": float,
    **columns(st.AttemptState, rename={"n": "attempt"}),
}


def write(db: Any, record: views.RunRecord) -> tuple[int, int]:
    """Upsert one run's rows in one transaction; how many tasks and attempts it has."""
    summary = record.summary
    run_row = row(summary)
    run_row.update(run_row.pop("counts"))  # a column per state: `WHERE failed > 0`
    task_rows, attempt_rows = [], []
    for task in record.tasks:
        task_rows.append({"run_id": summary.run_id, **row(task.task, rename={"id": "task_id"})})
        for attempt in task.attempts:
            took = (
                attempt.finished_at - (attempt.started_at or attempt.launched_at)
                if attempt.finished_at is not None
                else None
            )
            attempt_rows.append(
                {
                    "run_id": summary.run_id,
                    "task_id": task.task.id,
                    "duration": took,
                    **row(attempt, rename={"n": "attempt"}),
                }
            )
    with db.conn:
        db["runs"].upsert(run_row, pk="run_id", columns=RUN_COLUMNS, alter=True)
        db["tasks"].upsert_all(
            task_rows,
            pk=("run_id", "task_id"),
            columns=TASK_COLUMNS,
            foreign_keys=[("run_id", "runs", "run_id")],
            alter=True,
        )
        db["attempts"].upsert_all(
            attempt_rows,
            pk=("run_id", "task_id", "attempt"),
            columns=ATTEMPT_COLUMNS,
            foreign_keys=[("run_id", "runs", "run_id")],
            alter=True,
        )
    return len(task_rows), len(attempt_rows)


@click.command()
@click.argument("run", required=False, shell_complete=complete_run)
@click.option(
    "--db",
    "db_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The SQLite file to write (created if missing; updated in place if not).",
)
@click.pass_context
@handle_errors
def export(ctx: click.Context, run: str | None, db_path: Path) -> None:
    """Write RUN (default: every run) as plain SQLite tables: runs, tasks, attempts.

    Exporting again updates the rows; nothing is duplicated.

    \b
    Example:
      orchctl export last --db runs.db && datasette runs.db
    """
    import sqlite_utils

    client = client_for(ctx)
    if run is None:
        reply = client.call(p.Runs(), p.RunsReply)
        names = [r.run_id for r in reply.runs]
    else:
        names = [run]
    db = sqlite_utils.Database(db_path)
    tasks = attempts = 0
    for name in names:  # one run at a time: a reply of one run, however many runs there are
        exported = client.call(p.Export(run=name), p.ExportReply, timeout=120)
        n_tasks, n_attempts = write(db, exported.run)
        tasks, attempts = tasks + n_tasks, attempts + n_attempts
    db.close()
    click.echo(
        f"exported {len(names)} run{'s' * (len(names) != 1)} ({tasks} tasks, "
        f"{attempts} attempts) to {db_path}"
    )
