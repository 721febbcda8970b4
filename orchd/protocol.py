"""The wire protocol between orchctl and orchd: tagged msgspec unions over nng req/rep.

The protocol is not the events: requests and responses are their own types,
with a version and a request id; codecs are built once at import. The typed
client that speaks it is `orchd.client.Client`.
"""

from __future__ import annotations

from typing import Union

import msgspec

from orchd import PROTOCOL_VERSION
from orchd.errors import ErrorCode, OrchError
from orchd.events import Row
from orchd.reports import ConflictForecast, MergeResult
from orchd.state import AttemptState
from orchd.views import RunRecord, RunSummary, RunView, TaskView

MAX_WAIT = 30.0  # seconds a long-poll may hold a request


class _Request(msgspec.Struct, tag=True, tag_field="op", kw_only=True, forbid_unknown_fields=True):
    v: int = PROTOCOL_VERSION
    id: int = 0


class Ping(_Request):
    pass


class Submit(_Request):
    plan: str
    source: str = "<plan>"  # the plan's path, or "<stdin>": errors name it
    base_dir: str = "."  # what its relative paths (workdir, prompt_file) are relative to
    fmt: str | None = None  # "toml" | "json"; None: what the suffix of `source` says, else guessed


class Status(_Request):
    run: str | None = None
    alone: bool = False  # with `run` and `indent`: the reply is the run's view alone, formatted
    indent: int = (
        0  # > 0: the reply comes pre-formatted, indented so: what `orchctl status --json` prints
    )


class Runs(_Request):
    pass


class TaskInfo(_Request):
    run: str
    task: str


class Cancel(_Request):
    run: str
    task: str | None = None


class Retry(_Request):
    run: str
    task: str | None = None


class Events(_Request):
    after: int = 0
    run: str | None = None
    task: str | None = None
    limit: int = 1000
    wait: float = 0.0  # seconds to hold the request until there is something after `after`
    kinds: list[str] = []  # only events of these kinds (all when empty)


class Replay(_Request):
    at: int | None = None


class Audit(_Request):
    pass


class Shutdown(_Request, omit_defaults=True):
    """Stop orchd. Its running sessions keep running under the keeper, for the next start to take
    over, unless `end_sessions` (TERM, then KILL after kill_grace; recorded interrupted). The reply
    (Done) comes once orchd is at rest: `count` is the sessions left running, or with
    `end_sessions` the sessions ended. (Defaults are left out on the wire: an orchd from before
    `end_sessions` reads a plain stop.)"""

    end_sessions: bool = False


class Diff(_Request):
    run: str
    task: str


class Merge(_Request):
    run: str
    into: str | None = None  # default: the branch checked out in the plan's repository
    verify: bool = False  # run each task's verify commands on the integrated tree after its merge


class Conflicts(_Request):
    """Which completed branches of a run would conflict, with each other or with `into`."""

    run: str
    into: str | None = None  # default: the branch checked out in each repository


class Clean(_Request):
    run: str
    branches: bool = False


class Dashboard(_Request):
    """Serve the dashboard (once; asking again returns the same URL)."""


class Export(_Request):
    """One run with its tasks and every attempt, for `orchctl export`."""

    run: str


Request = Union[
    Ping,
    Submit,
    Status,
    Runs,
    TaskInfo,
    Cancel,
    Retry,
    Events,
    Replay,
    Audit,
    Shutdown,
    Diff,
    Merge,
    Conflicts,
    Clean,
    Dashboard,
    Export,
]


class _Response(msgspec.Struct, tag=True, tag_field="type", kw_only=True):
    v: int = PROTOCOL_VERSION
    id: int = 0


class Pong(_Response):
    pid: int
    version: str
    started_at: float
    seq: int
    held: str | None = None  # why no session starts now, e.g. "held: disk full (0 B free on /)"


class Submitted(_Response):
    run_id: str
    tasks: int
    warnings: list[str] = []


class StatusReply(_Response):
    seq: int
    runs: list[RunView]
    held: str | None = None  # why no session starts now (see Pong)


class RunsReply(_Response):
    seq: int
    runs: list[RunSummary]


class TaskReply(_Response):
    run_id: str
    task: TaskView
    attempts: list[AttemptState]


class Done(_Response):
    count: int
    message: str


class EventsReply(_Response):
    seq: int  # the last sequence number in the log when the reply was made
    events: list[Row]
    busy: bool = False  # orchd had no worker free to hold a long-poll: ask again a little later
    held: str | None = None  # why no session starts now (see Pong)


class AuditReply(_Response):
    events: int  # events verified
    head: str  # hex sha256 of the last verified event
    first_bad: int | None  # the first event that does not verify, if any
    problem: str


class DiffReply(_Response):
    run_id: str
    task: str
    branch: str
    diff: str


class MergeReply(_Response):
    run_id: str
    results: list[MergeResult]  # one per repository, in order


class ConflictsReply(_Response):
    run_id: str
    repos: list[ConflictForecast]  # one per repository with completed branches


class DashboardReply(_Response):
    url: str  # with its token: a secret, as good as a password while orchd runs


class ExportReply(_Response):
    seq: int
    run: RunRecord


class Error(_Response):
    code: ErrorCode
    message: str


Response = Union[
    Pong,
    Submitted,
    StatusReply,
    RunsReply,
    TaskReply,
    Done,
    EventsReply,
    AuditReply,
    DiffReply,
    MergeReply,
    ConflictsReply,
    DashboardReply,
    ExportReply,
    Error,
]

# Keys sorted: a reply is byte for byte what `orchctl ... --json` prints (re-indented), so the CLI's
# fast path (orchctl/fast.py) can pass it through without decoding it.
_encoder = msgspec.json.Encoder(order="sorted")
_request_decoder = msgspec.json.Decoder(Request)
_response_decoder = msgspec.json.Decoder(Response)


class _Envelope(msgspec.Struct):
    """Just enough of any request to answer it with an error."""

    v: int | None = None
    id: int = 0


_envelope_decoder = msgspec.json.Decoder(_Envelope)
# msgspec raises UnicodeDecodeError, not DecodeError, for invalid UTF-8 inside a string, and
# RecursionError for JSON nested too deeply
_UNDECODABLE = (msgspec.DecodeError, UnicodeDecodeError, RecursionError)


def encode(message: msgspec.Struct, indent: int = 0) -> bytes:
    """JSON with sorted keys (indented by `indent` spaces when > 0)."""
    data = _encoder.encode(message)
    return msgspec.json.format(data, indent=indent) if indent > 0 else data


def encode_raw(document: object, indent: int = 0) -> bytes:
    """Any document (a view, encoded ahead as Raw) as JSON with sorted keys, indented when > 0."""
    data = _encoder.encode(document)
    return msgspec.json.format(data, indent=indent) if indent > 0 else data


def decode_request(data: bytes) -> Request:
    """Decode a request; raise OrchError (bad request or version mismatch) otherwise."""
    try:
        request = _request_decoder.decode(data)
    except _UNDECODABLE as exc:
        try:
            envelope = _envelope_decoder.decode(data)
        except _UNDECODABLE:
            raise OrchError(f"malformed request: {exc}", ErrorCode.BAD_REQUEST) from None
        _check_version(envelope.v)
        raise OrchError(f"malformed request: {exc}", ErrorCode.BAD_REQUEST) from None
    _check_version(request.v)
    return request


def _check_version(version: int | None) -> None:
    if version is not None and version != PROTOCOL_VERSION:
        raise OrchError(
            f"protocol version {version} is not supported (this orchd speaks "
            f"{PROTOCOL_VERSION}); upgrade orchctl and orchd together",
            ErrorCode.VERSION_MISMATCH,
        )


def decode_response(data: bytes) -> Response:
    """Decode a reply of orchd; raise msgspec.DecodeError for anything else."""
    return _response_decoder.decode(data)


def request_id(data: bytes) -> int:
    """The id of a request, if it is readable at all (for error replies)."""
    try:
        return _envelope_decoder.decode(data).id
    except (*_UNDECODABLE, TypeError):
        return 0


# ------------------------------------------------------------ what `orchctl ... --json` prints besides the replies


class SubmittedRun(msgspec.Struct, kw_only=True):
    """`orchctl submit --json` (without --wait): the new run."""

    run_id: str
    tasks: int
    state: str = "running"
    warnings: list[str] = []


class EventLine(msgspec.Struct, kw_only=True):
    """One line of `orchctl events --json`: an event of the log with its place in it.

    `event` is the event's payload, one of the kinds in schemas/events.schema.json
    (or a kind a newer orch wrote, kept as it is).
    """

    seq: int
    ts: float
    run_id: str
    task_id: str | None
    kind: str
    event: msgspec.Raw


class DashboardUrl(msgspec.Struct, kw_only=True):
    """`orchctl dashboard --json`: where the dashboard is, with its token."""

    url: str
