"""What an agent's output stream says, read one line at a time: typed signals and readable lines.

No I/O: orchd feeds a running attempt's new output to its agent's
`StreamParser` as it is written and acts on the signals (a rejected credential,
a usage limit, a rate limit, what was spent so far); orchctl and the dashboard
render the same events as a conversation with `describe`. One parser per stream
family, used by both. The parser's `clock` (time.time, replaceable in tests) is
read only to turn a wait the agent names ("retry in 3600s", "try again at 5:46
PM") into an instant.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from typing import Any

import msgspec

# What kind of API failure a stream names: one vocabulary for every agent.
AUTH, BILLING, INVALID, MODEL, CONTEXT = "auth", "billing", "invalid", "model", "context"
RATE_LIMIT, USAGE_LIMIT, OVERLOAD, NETWORK = "rate_limit", "usage_limit", "overload", "network"
CATEGORIES = (AUTH, BILLING, INVALID, MODEL, CONTEXT, RATE_LIMIT, USAGE_LIMIT, OVERLOAD, NETWORK)


class Signal(msgspec.Struct, frozen=True, tag=True, tag_field="signal"):
    """Something an agent's stream said that orch may act on."""


class ApiError(Signal, frozen=True):
    """The provider's API refused or failed a request (`retrying`: the agent will try again itself)."""

    category: str  # one of CATEGORIES, or "" when the stream does not say
    status: int | None = None  # the HTTP status, when the stream gives it
    message: str = ""
    retrying: bool = False
    attempt: int | None = None  # the agent's own retry count, and its limit
    max_retries: int | None = None
    retry_in: float | None = (
        None  # seconds until the agent's next try (Retry-After, or its backoff)
    )


class Limit(Signal, frozen=True):
    """A usage limit (a subscription's window, a daily quota): nothing passes until `resets_at`."""

    resets_at: float | None  # unix seconds; None when the stream names no time
    message: str = ""


class Answered(Signal, frozen=True):
    """The provider answered the agent (its first model response of the attempt): a session it
    serves. Each parser yields it once, at the first answer."""


class Spend(Signal, frozen=True):
    """What the attempt has spent so far (running totals, None where the stream does not say)."""

    cost_usd: float | None = None
    tokens_in: int | None = None
    tokens_out: int | None = None


class Activity(Signal, frozen=True):
    """The latest thing the agent did, on one line (a tool call, a message)."""

    text: str


# ------------------------------------------------------------ failures told in words

# What kind of failure an agent's error text names, most decisive first: a billing message beats a 429.
FAILURE_PATTERNS = (
    (
        CONTEXT,
        r"context.{0,20}(window|length)|prompt is too long|maximum context|too many tokens|"
        r"ContextWindowExceeded",
    ),
    (
        BILLING,
        r"credit balance|insufficient.{0,10}(credit|quota|fund|balance)|out of (free )?credits|"
        r"billing|payment required|\b402\b",
    ),
    (
        AUTH,
        r"api.?key (not valid|is invalid)|invalid.{0,20}(api.?key|token|credential)|incorrect api key|"
        r"authenticat|unauthori[sz]ed|\b401\b|\b403\b|forbidden|not logged in|\blogin\b",
    ),
    (MODEL, r"model.{0,40}(not found|does not exist|not supported)|ModelNotFound|NotFoundError"),
    (INVALID, r"BadRequestError|invalid.?request|INVALID_ARGUMENT|\b400\b"),
    (RATE_LIMIT, r"rate.?limit|too many requests|\b429\b|RESOURCE_EXHAUSTED|quota|usage limit"),
    (
        OVERLOAD,
        r"overloaded|unavailable|internal server error|server error|\b50[0-9]\b|\b529\b|capacity|"
        r"high demand",
    ),
    (
        NETWORK,
        r"ECONNREFUSED|ECONNRESET|ETIMEDOUT|ENOTFOUND|EAI_AGAIN|fetch failed|connect|network|"
        r"timed? ?out|socket hang up",
    ),
)
FAILURE_KINDS = tuple((kind, re.compile(pattern, re.I)) for kind, pattern in FAILURE_PATTERNS)
STATUS_CATEGORIES = {400: INVALID, 401: AUTH, 402: BILLING, 403: AUTH, 404: MODEL, 413: INVALID}


def failure_kind(text: str) -> str | None:
    """The category (one of CATEGORIES) that an agent's error text names, or None."""
    return next((kind for kind, pattern in FAILURE_KINDS if pattern.search(text)), None)


PARK_AFTER = 60.0  # a named wait shorter than this is a retry: a backoff waits about as long
_WAIT_RE = re.compile(
    r"(?:retry|try again|resets?)\s+(?:in|after)\s+"
    r"((?:\d+(?:\.\d+)?\s*(?:ms|h|m|s)[a-z]*[\s,]*)+)",
    re.I,
)
_RETRY_DELAY_RE = re.compile(
    r"\"?retry[-_ ]?(?:after|delay)\"?\s*[:=]\s*\"?(\d+(?:\.\d+)?)\s*s?\"?", re.I
)
_WAIT_PART_RE = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|h|m|s)", re.I)
_WAIT_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def named_wait(text: str) -> float | None:
    """The seconds a provider said to wait before trying again ("Please retry in 3600s",
    "try again in 6m0s", "retry-after: 30", `"retryDelay": "43200s"`), or None."""
    if match := _WAIT_RE.search(text):
        return sum(
            float(n) * _WAIT_UNITS[unit.lower()]
            for n, unit in _WAIT_PART_RE.findall(match.group(1))
        )
    if match := _RETRY_DELAY_RE.search(text):
        return float(match.group(1))
    return None


def status_category(status: int | None) -> str:
    """The category of an HTTP error status ("" for none known)."""
    if status is None:
        return ""
    if status == 429:
        return RATE_LIMIT
    if status >= 500:
        return OVERLOAD
    return STATUS_CATEGORIES.get(status, "")


# ------------------------------------------------------------ readable lines

RESULT_CHARS = 300  # a tool's output is cut to this in the conversation
# the argument that says most about a tool call, by the names agents give it
MAIN_ARGUMENTS = (
    "command",
    "cmd",
    "file_path",
    "path",
    "filePath",
    "absolute_path",
    "pattern",
    "query",
    "url",
    "description",
    "prompt",
    "paths",
    "args",
)


def one_line(text: str, limit: int = 200) -> str:
    """`text` on one line, cut to `limit` characters with an ellipsis."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def main_argument(arguments: Any) -> str:
    """The most telling argument of a tool call (its command, file, pattern…), as text."""
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except ValueError:
            return arguments
    if not isinstance(arguments, dict):
        return "" if arguments is None else str(arguments)
    for key in MAIN_ARGUMENTS:
        value = arguments.get(key)
        if value:
            return " ".join(map(str, value)) if isinstance(value, list) else str(value)
    return next((str(v) for v in arguments.values() if isinstance(v, str) and v), "")


def tool_call(name: str, arguments: Any) -> str:
    argument = main_argument(arguments)
    return f"→ {name} {argument}".rstrip()


def text_of(content: Any) -> str:
    """The text of a tool result's content: a string, or a list of text parts."""
    if isinstance(content, list):
        return " ".join(
            text_of(part.get("text", "") if isinstance(part, dict) else part) for part in content
        )
    return "" if content is None else str(content)


def usage_text(tokens_in: Any, tokens_out: Any) -> str:
    return (
        f"{tokens_in} in / {tokens_out} out"
        if tokens_in is not None or tokens_out is not None
        else ""
    )


def parse(line: bytes | str) -> dict | None:
    """The JSON event on `line` (an object with a string `type`), or None."""
    line = line.strip()
    if line[:1] not in (b"{", "{"):
        return None
    try:
        value = json.loads(line)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) and isinstance(value.get("type"), str) else None


def number(value: Any) -> float | None:
    """`value` if it is a number (not a bool), else None."""
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


# ------------------------------------------------------------ the incremental parser

Describe = Callable[[dict, dict[str, str]], list[str] | None]
MAX_LINE = 4 << 20  # a line longer than this is skipped, not buffered for ever
# the line after which an attempt's log holds its checks' output, no longer its agent's
# (orchd/verify.py writes it): nothing the checks print is taken for the agent's stream
CHECKS_START = b"orch: verify: the agent exited 0; "


class StreamParser:
    """Reads one attempt's output as it is written: complete lines only, each once.

    Subclasses read one event at a time (`on_event`, `on_text`) into signals; the
    running totals they keep (`spend`, `session_id`) are the attempt's so far.
    """

    describe: Describe | None = None  # the family's readable lines for one event
    answers = False  # whether it tells the provider's first answer (Answered): a limit clocks on it

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock  # when a named wait ends: now + the wait
        self._partial = b""
        self._skipping = False  # inside a line over MAX_LINE
        self.tools: dict[str, str] = {}  # tool call id -> name (for the readable lines)
        self.session_id = ""
        self.cost_usd: float | None = None
        self.tokens_in: int | None = None
        self.tokens_out: int | None = None
        self.activity = ""
        self.checking = False  # the agent's output ended: its checks run
        self.answered = False  # the first model response was seen (Answered yielded)

    def feed(self, data: bytes) -> list[Signal]:
        """The signals in the complete lines of `data` (with what was left of the last feed)."""
        if self.checking:
            return []
        spent = self.spend()
        data = self._partial + data
        end = data.rfind(b"\n") + 1
        self._partial = data[end:]
        if len(self._partial) > MAX_LINE:
            self._partial, self._skipping = b"", True
        signals: list[Signal] = []
        for line in data[:end].splitlines():
            if self._skipping:  # the tail of an over-long line
                self._skipping = False
                continue
            if line.startswith(CHECKS_START):
                self.checking = True
                break
            event = parse(line)
            if event is None:
                text = line.decode("utf-8", "replace").strip()
                if text:
                    signals.extend(self.on_text(text))
                continue
            signals.extend(self.on_event(event))
            if self.describe is not None:
                said = [t for t in self.describe(event, self.tools) or [] if t.strip()]
                if said:
                    self.activity = one_line(said[-1])
        if self.spend() != spent:
            signals.append(self.spend())
        return signals

    def spend(self) -> Spend:
        return Spend(self.cost_usd, self.tokens_in, self.tokens_out)

    def answer(self) -> list[Signal]:
        """[Answered()] at the attempt's first model response, [] after (parsers call it at each)."""
        if self.answered:
            return []
        self.answered = True
        return [Answered()]

    def on_event(self, event: dict) -> list[Signal]:
        """Signals of one JSON event (none by default)."""
        return []

    def on_text(self, text: str) -> list[Signal]:
        """Signals of one line that is not a JSON event (the activity by default)."""
        self.activity = one_line(text)
        return []
