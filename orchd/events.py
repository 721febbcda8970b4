"""Every fact orch records, as frozen msgspec Structs in one tagged union.

Events are data: they are persisted as `(seq, ts, run_id, task_id, kind,
payload)` rows, where `payload` is the msgspec JSON of the event. Nothing else
is persisted. Kinds this version does not know (written by a newer version)
decode to `None` and are skipped by the fold, never a crash.
"""

from __future__ import annotations

import shlex
from typing import Union

import msgspec

from orchd.spec import RunSpec
from orchd.streams.base import ApiError, Limit, Spend


class AgentReport(msgspec.Struct, frozen=True, omit_defaults=True, gc=False):
    """What an agent said about an attempt: its final text, its own session id, cost and tokens."""

    result: str = ""
    session_id: str = ""
    cost_usd: float | None = None
    tokens_in: int | None = None
    tokens_out: int | None = None
    files: list[str] = []  # worktree isolation: the files the task's branch changed since the base
    session_totals: list[
        str
    ] = []  # fields above that are running totals of the agent session, not of the attempt


class VerifyResult(msgspec.Struct, frozen=True, omit_defaults=True, gc=False):
    """How the task's verify commands went, after an attempt's agent exited 0 (orchd/verify.py)."""

    result: str  # passed | failed | timeout | not_found (the check cannot be started: permanent)
    checks: int = 0  # the checks that ran, the one that did not pass included
    argv: list[str] = []  # the check that did not pass
    detail: str = ""  # how it ended: "exit 1", "killed by SIGSEGV", "timed out after 600s", ...
    output: str = ""  # the tail of its output
    log_offset: int = 0  # where the checks' output starts in the attempt's log (the agent's ends)

    @property
    def passed(self) -> bool:
        """Whether every check passed."""
        return self.result == "passed"

    @property
    def reason(self) -> str:
        """`verify: python3 -m pytest -q: exit 1`, or `verify: 2 checks passed`."""
        if self.passed:
            return f"verify: {self.checks} check{'s' * (self.checks != 1)} passed"
        return f"verify: {shlex.join(self.argv)}: {self.detail}"


class _Event(msgspec.Struct, frozen=True, tag=True, tag_field="kind", omit_defaults=True, gc=False):
    """Base of all events: every event belongs to a run, most to a task; an event of the whole
    daemon (DaemonStarted, DaemonStopped) has the run id ""."""

    run_id: str


class RunSubmitted(_Event, frozen=True):
    """A plan was accepted; its tasks are resolved and pending."""

    spec: RunSpec
    source: str = ""


class AttemptLaunching(_Event, frozen=True):
    """An attempt is about to be spawned (written before the spawn)."""

    task_id: str
    attempt: int
    argv: list[str]
    cwd: str
    log_path: str


class AttemptStarted(_Event, frozen=True):
    """The attempt's process is alive."""

    task_id: str
    attempt: int
    pid: int
    pgid: int
    start_ticks: int = (
        0  # process start time (/proc/PID/stat field 22), to recognise it after a restart
    )


class AttemptAdopted(_Event, frozen=True):
    """After a restart, orchd took the attempt's process over again (or, `ended`, what it left behind)."""

    task_id: str
    attempt: int
    pid: int
    pgid: int
    start_ticks: int = 0
    ended: bool = False  # it had already ended: its exit status came from the file its keeper wrote


class AttemptFinished(_Event, frozen=True):
    """An attempt ended. `outcome` is how its adapter classified it.

    outcome: success | retry | park | permanent | timeout | cancelled | lost | disk_full |
    outcome: success | retry | park | permanent | timeout | cancelled | lost | disk_full |
    verify_failed | deferred | interrupted. `verify`: how the task's checks went, when its agent
    exited 0 and it has any.
    """

    task_id: str
    attempt: int
    outcome: str
    exit_code: int | None = None
    signal: int | None = None
    reason: str = ""
    duration: float = 0.0
    report: AgentReport = AgentReport()
    verify: VerifyResult | None = None


class AttemptSignaled(_Event, frozen=True):
    """What a running attempt's stream said that is worth keeping: an API error (or a retry of one),
    a usage limit, or what it has spent so far (at most every few seconds)."""

    task_id: str
    attempt: int
    signal: ApiError | Limit | Spend


class ProviderHeld(_Event, frozen=True):
    """No new session of `provider` starts until it is released, or until `until` (unix seconds).

    `cause`: auth, billing (until the user acts: `orchctl retry`), usage_limit (until its reset).
    `run_id`/`task_id` name the attempt that showed it.
    """

    provider: str
    cause: str
    reason: str
    until: float | None = None
    task_id: str | None = None


class ProviderLimited(_Event, frozen=True):
    """How many sessions of `provider` may run at once changed (adaptive: its rate limits);
    None: no limit but the caps."""

    provider: str
    limit: int | None
    reason: str = ""


class ProviderReleased(_Event, frozen=True):
    """A held provider may start sessions again (its reset came, or the user retried)."""

    provider: str
    reason: str = ""


class DaemonStarted(_Event, frozen=True):
    """orchd started. An event of the whole daemon: its `run_id` is "" (it belongs to no run).

    `running`: the attempts the log showed running, which it takes over (re-adopted through the
    keeper, or recorded lost if nothing of them is left). `previous`: how the daemon before it
    ended: "stopped" (its DaemonStopped says how), "crashed" (it left no DaemonStopped: killed,
    crashed, or the machine went down), "" (none before it in the log).
    """

    version: str
    pid: int
    running: int = 0
    previous: str = ""


class DaemonStopped(_Event, frozen=True):
    """orchd stopped cleanly (`orchctl daemon stop`, SIGTERM). `run_id` is "", as for DaemonStarted.

    `left_running`: sessions it left running under the keeper, for the next start to take over;
    `ended`: sessions it ended first (`orchctl daemon stop --end-sessions`: recorded interrupted,
    run again at the next start without spending a retry).
    """

    version: str
    pid: int
    left_running: int = 0
    ended: int = 0


class TaskRetrying(_Event, frozen=True):
    """The task will be attempted again at `due_at` (unix seconds)."""

    task_id: str
    due_at: float
    delay: float
    reason: str = ""
    spends_retry: bool = True


class TaskCompleted(_Event, frozen=True):
    task_id: str


class TaskFailed(_Event, frozen=True):
    task_id: str
    reason: str = ""


class TaskCancelled(_Event, frozen=True):
    task_id: str


class CancelRequested(_Event, frozen=True):
    """The user asked to cancel these tasks (all of the run when `task_ids` is empty)."""

    task_ids: list[str] = []


class RetryRequested(_Event, frozen=True):
    """The user asked to run these failed or cancelled tasks again, with a fresh retry budget."""

    task_ids: list[str]


class RunFinished(_Event, frozen=True):
    """Every task of the run is completed, failed or cancelled."""

    state: str


class WorkspacesRemoved(_Event, frozen=True):
    """`orchctl clean`: the run's worktrees are gone (and its branches, with `branches`)."""

    branches: bool = False


Event = Union[
    RunSubmitted,
    AttemptLaunching,
    AttemptStarted,
    AttemptAdopted,
    AttemptFinished,
    AttemptSignaled,
    ProviderHeld,
    ProviderLimited,
    ProviderReleased,
    DaemonStarted,
    DaemonStopped,
    TaskRetrying,
    TaskCompleted,
    TaskFailed,
    TaskCancelled,
    CancelRequested,
    RetryRequested,
    RunFinished,
    WorkspacesRemoved,
]

EVENT_TYPES: tuple[type, ...] = Event.__args__  # type: ignore[attr-defined]
KINDS: dict[str, type] = {t.__name__: t for t in EVENT_TYPES}

_encoder = msgspec.json.Encoder()
DECODERS: dict[str, msgspec.json.Decoder] = {k: msgspec.json.Decoder(t) for k, t in KINDS.items()}


def kind_of(event: _Event) -> str:
    """The tag of an event, as stored in the `kind` column."""
    return type(event).__name__


def encode(event: _Event) -> bytes:
    """The JSON payload of an event (includes its `kind` tag)."""
    return _encoder.encode(event)


decode_stored = msgspec.json.Decoder(
    Event
).decode  # by the payload's own `kind` tag: no kind column needed


class _Kind(msgspec.Struct):
    kind: str


def unknown_kind(payload: bytes | str) -> None:
    """After `decode_stored` refused `payload`: None if it is an event of a kind this version does
    not know (kept in the log, skipped by the fold); a payload of a known kind that does not decode
    raises (the log is damaged: `orchctl audit` says where)."""
    kind = msgspec.json.decode(payload, type=_Kind).kind
    if kind in KINDS:
        DECODERS[kind].decode(payload)  # raises with the reason
    return None


def decode(kind: str, payload: bytes | str) -> Event | None:
    """Decode a stored event; `None` for a kind this version does not know."""
    decoder = DECODERS.get(kind)
    return None if decoder is None else decoder.decode(payload)


class Record(msgspec.Struct, frozen=True, gc=False):
    """One row of the log: an event with its sequence number and time."""

    seq: int
    ts: float
    kind: str
    event: Event | None


class Row(msgspec.Struct, frozen=True):
    """A stored event as it travels to clients: the payload stays raw JSON."""

    seq: int
    ts: float
    run_id: str
    task_id: str | None
    kind: str
    payload: msgspec.Raw
