"""Notifications: `[notify]` in config.toml runs a command and/or sends to apprise URLs when an
event of the kinds it names is committed to the log (by default a run finished, a task failed,
a provider held).

A follower of the log, on one thread of its own: it reads the committed events after its cursor,
delivers each to every notifier in turn, then moves the cursor past it. Nothing else waits for
it: not the journal (which only wakes it), not an actor, not a run. A notifier that fails or
hangs (a command is killed after `timeout`) is logged once, then once every COMPLAIN_EVERY
seconds with a count, and the next event goes on.

The cursor is kept in `state/notify.seq` after each event, so a restarted orchd sends what was
committed after it, and nothing sent before again: at least once, and twice only for the one
event that was being delivered when orchd died. With no cursor (the first start with `[notify]`,
or after orchd ran without it, which removes the file), notifications start at the end of the
log: turning them on never sends the history.

The kinds are generic: any event kind of `events.py` may be named in `on`. A kind that
should notify by default goes in DEFAULT_ON, and a sentence for it in WORDS; a kind without one
is sent with its payload as the body.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import msgspec

from orchd import events as ev
from orchd import state as st
from orchd import store, views
from orchd.errors import OrchError
from orchd.journal import Journal
from orchd.paths import Paths

log = logging.getLogger(__name__)

DEFAULT_ON = ["RunFinished", "TaskFailed", "ProviderHeld"]
COMPLAIN_EVERY = 600.0  # seconds between two log lines about the same failing notifier
BATCH = 100  # events read at a time


class NotifyConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """`[notify]` in config.toml."""

    on: list[str] = msgspec.field(default_factory=lambda: list(DEFAULT_ON))  # event kinds
    command: list[str] = []  # argv (never a shell string); the notification as JSON on stdin
    urls: list[
        str
    ] = []  # apprise URLs (pip install 'orch[notify]'); secrets: keep config.toml 0600
    timeout: float = 10.0  # seconds one delivery may take; a command is then killed

    def check(self, where: Path) -> None:
        """Refuse kinds that are not events, with the file that names them."""
        unknown = [kind for kind in self.on if kind not in ev.KINDS]
        if unknown:
            raise OrchError(
                f"{where}: notify.on: unknown event kind {', '.join(map(repr, unknown))} "
                f"(known: {', '.join(ev.KINDS)})"
            )
        if self.timeout <= 0:
            raise OrchError(f"{where}: notify.timeout must be more than 0")

    @property
    def wanted(self) -> bool:
        return bool(self.command or self.urls)


class Notification(msgspec.Struct, kw_only=True):
    """What a notifier gets (a command, as JSON on its stdin): the event as `orchctl events
    --json` prints it, and a title and body in words (what apprise sends)."""

    seq: int
    ts: float
    run_id: str
    task_id: str | None
    kind: str
    title: str
    body: str
    status: str  # success | failure | info: how a notifier may show it
    event: msgspec.Raw


class Undelivered(Exception):
    """A notifier could not deliver a notification (the message says why, without secrets)."""


Words = Callable[[ev.Event, st.RunState | None], tuple[str, str, str]]


def _run_finished(event: ev.RunFinished, run: st.RunState | None) -> tuple[str, str, str]:
    title = f"orch: run {event.run_id} {event.state}"
    if run is None:
        return title, "", "info"
    summary = views.run_summary(run)
    counts = ", ".join(f"{n} {state}" for state, n in summary.counts.items() if n)
    cost = f"; ${summary.cost_usd:.4f}" if summary.cost_usd is not None else ""
    body = f"{summary.tasks} task{'s' * (summary.tasks != 1)}: {counts}{cost}"
    return title, body, "success" if event.state == "completed" else "failure"


def _task_failed(event: ev.TaskFailed, run: st.RunState | None) -> tuple[str, str, str]:
    task = run.tasks.get(event.task_id) if run is not None else None
    tries = f" after {len(task.attempts)} attempt{'s' * (len(task.attempts) != 1)}" if task else ""
    return (
        f"orch: task {event.task_id} of {event.run_id} failed",
        f"{event.reason}{tries}",
        "failure",
    )


def _provider_held(event: ev.ProviderHeld, run: st.RunState | None) -> tuple[str, str, str]:
    until = f" until {time.strftime('%H:%M', time.localtime(event.until))}" if event.until else ""
    return f"orch: provider {event.provider} held{until} ({event.cause})", event.reason, "failure"


WORDS: dict[str, Words] = {
    "RunFinished": _run_finished,  # type: ignore[dict-item]
    "TaskFailed": _task_failed,  # type: ignore[dict-item]
    "ProviderHeld": _provider_held,  # type: ignore[dict-item]
}


def notification(row: ev.Row, run: st.RunState | None) -> Notification:
    """The notification of one committed event (`run`: its run in the fold, if there)."""
    event = ev.decode(row.kind, row.payload)
    words = WORDS.get(row.kind)
    if words is not None and event is not None:
        title, body, status = words(event, run)
    else:
        where = f"task {row.task_id} of {row.run_id}" if row.task_id else f"run {row.run_id}"
        where = where if row.run_id else "orchd"  # an event of the whole daemon
        title, body, status = f"orch: {row.kind} ({where})", bytes(row.payload).decode(), "info"
    return Notification(
        seq=row.seq,
        ts=row.ts,
        run_id=row.run_id,
        task_id=row.task_id,
        kind=row.kind,
        title=title,
        body=body,
        status=status,
        event=row.payload,
    )


class Command:
    """Runs an argv with the notification as JSON on stdin; killed (its group) after `timeout`."""

    def __init__(self, argv: list[str], timeout: float) -> None:
        self.argv, self.timeout = argv, timeout
        self.name = f"command {argv[0]}"  # argv[0] only: its arguments may hold a secret

    def deliver(self, note: Notification) -> None:
        try:
            proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                start_new_session=True,  # its own group: a timeout kills what it started too
            )
        except OSError as exc:
            raise Undelivered(f"cannot run it: {exc.strerror}") from None
        try:
            _, err = proc.communicate(msgspec.json.encode(note), timeout=self.timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise Undelivered(f"it took longer than {self.timeout:g}s: killed") from None
        if proc.returncode:
            last = err.decode("utf-8", "replace").strip().splitlines()[-1:] or [""]
            raise Undelivered(f"exit {proc.returncode}: {last[0][:200]}".rstrip(": "))


class Apprise:
    """Sends title and body to one apprise URL."""

    def __init__(self, url: str, index: int) -> None:
        import apprise  # the [notify] extra; only when URLs are configured

        self._apprise = apprise
        # the URL may hold a token (a bot's, a webhook's): its scheme only, in logs
        self.name = f"urls[{index}] ({url.partition('://')[0]}://…)"
        self.client = apprise.Apprise()
        if not self.client.add(url):
            raise OrchError(f"notify.{self.name}: apprise does not know this URL")

    def deliver(self, note: Notification) -> None:
        kinds = self._apprise.NotifyType
        kind = {"success": kinds.SUCCESS, "failure": kinds.FAILURE}.get(note.status, kinds.INFO)
        # apprise's own warnings say why, with its URLs in privacy mode (no tokens)
        with self._apprise.LogCapture(level=logging.WARNING, fmt="%(message)s") as said:
            sent = self.client.notify(title=note.title, body=note.body, notify_type=kind)
        if not sent:
            why = said.getvalue().strip().splitlines()[:1] or ["apprise could not send it"]
            raise Undelivered(why[0][:200])


class Complaints:
    """A failing notifier is logged once, then at most once every `every` seconds, with a count."""

    def __init__(self, every: float = COMPLAIN_EVERY) -> None:
        self.every = every
        self._last: dict[str, tuple[float, int]] = {}  # name -> (logged at, failures since)

    def failed(self, name: str, why: str) -> None:
        now = time.monotonic()
        logged, since = self._last.get(name, (-self.every, 0))
        if now - logged < self.every:
            self._last[name] = (logged, since + 1)
            return
        more = f" (and {since} more time{'s' * (since != 1)} before)" if since else ""
        log.warning("notify: %s failed: %s%s", name, why, more)
        self._last[name] = (now, 0)

    def worked(self, name: str) -> None:
        if self._last.pop(name, None) is not None:
            log.info("notify: %s works again", name)


class Notifier:
    """Follows the log and notifies, on its own thread."""

    def __init__(self, config: NotifyConfig, journal: Journal, paths: Paths) -> None:
        self.config, self.journal, self.paths = config, journal, paths
        self.targets: list[Command | Apprise] = []
        if config.command:
            self.targets.append(Command(config.command, config.timeout))
        if config.urls:
            logging.getLogger("apprise").propagate = False  # its debug lines show whole URLs
        for i, url in enumerate(config.urls):
            try:
                self.targets.append(Apprise(url, i))
            except ImportError:
                log.error("notify: urls need apprise: pip install 'orch[notify]'")
                break
            except OrchError as exc:  # orchd runs on without it: a notifier never stops a run
                log.error("notify: %s", exc)
        self.complaints = Complaints()
        self._bell = threading.Event()
        self._stopping = False
        self._thread = threading.Thread(target=self._follow, name="notify", daemon=True)

    @property
    def cursor_file(self) -> Path:
        return cursor_file(self.paths)

    def start(self) -> Notifier:
        with self.journal.lock:
            end = self.journal.state.seq
        try:
            cursor = int(self.cursor_file.read_text())
        except (OSError, ValueError):
            cursor = end  # no history: from here on
        self.cursor = end if cursor > end else cursor  # a newer cursor: of another log
        self._save()
        self._thread.start()
        log.info(
            "notify: %s via %s", ", ".join(self.config.on), ", ".join(t.name for t in self.targets)
        )
        return self

    def stop(self) -> None:
        """Stop after the delivery under way, if any (a command waits at most its timeout)."""
        self._stopping = True
        self._bell.set()
        self._thread.join(timeout=self.config.timeout + 5)

    def _follow(self) -> None:
        conn = store.connect(self.paths.db, readonly=True)
        try:
            while not self._stopping:
                rows = store.rows(conn, after=self.cursor, kinds=self.config.on, limit=BATCH)
                for row in rows:
                    if self._stopping:
                        return
                    self._notify(row)
                    self.cursor = row.seq
                    self._save()
                if not rows:
                    self._wait()
        except Exception:  # a bug: say so; runs go on without notifications
            log.exception("notify: stopped")
        finally:
            conn.close()

    def _wait(self) -> None:
        """Until an event of the kinds is committed after the cursor (or orchd stops)."""
        self._bell.clear()
        reader = self.journal.on_commit(self.cursor, self._bell.set, self.config.on)
        if reader is None:
            return
        try:
            self._bell.wait()
        finally:
            self.journal.forget(reader)

    def _notify(self, row: ev.Row) -> None:
        with self.journal.lock:
            note = notification(row, self.journal.state.runs.get(row.run_id))
        for target in self.targets:
            try:
                target.deliver(note)
            except Undelivered as exc:
                self.complaints.failed(target.name, str(exc))
            except Exception as exc:  # a notifier's bug is its own: the others still get it
                self.complaints.failed(target.name, f"{type(exc).__name__}: {exc}")
            else:
                self.complaints.worked(target.name)

    def _save(self) -> None:
        tmp = self.cursor_file.with_suffix(".tmp")
        tmp.write_text(f"{self.cursor}\n")
        os.replace(tmp, self.cursor_file)


def cursor_file(paths: Paths) -> Path:
    """Where the notifier keeps the seq of the last event it handled."""
    return paths.state_dir / "notify.seq"
