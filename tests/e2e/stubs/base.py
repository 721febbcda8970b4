"""Shared scaffolding of the provider stubs: a loopback HTTP server, scripted replies, session counting.

A test scripts what the "model" does for each task by a tag that appears in
the task's prompt: `stub.script("[edit]", WriteFile("notes.txt", "hi"), Reply("done"))`.
Every model request whose conversation contains the tag takes the next step;
the last step repeats. Requests that match no script get `Reply("ok")`.
Steps are provider-neutral; each provider module renders them in its own
wire format (Anthropic Messages SSE, OpenAI Responses SSE).

The stub also counts sessions: a session (one agent conversation, named by a
header the CLI sends) is in flight while one of its model requests is being
served. `peak_sessions` is the most sessions it saw in flight at once. To make
overlaps observable, a request may be held (`hold`) until another session
is in flight too, or until the hold time passes.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

REQUEST_TIMEOUT = 30.0  # a client that stalls mid-request is dropped after this


@dataclass(frozen=True)
class Reply:
    """The model answers with text and ends its turn (`delay`: after thinking that many seconds)."""

    text: str
    tokens_in: int = 120
    tokens_out: int = 30
    delay: float = 0.0


@dataclass(frozen=True)
class WriteFile:
    """The model calls the CLI's file-writing tool to create `path` (relative to the cwd) with `content`."""

    path: str
    content: str


@dataclass(frozen=True)
class Fail:
    """The API answers with an HTTP error."""

    status: int
    kind: str = "rate_limit_error"
    message: str = "stub error"
    headers: dict[str, str] = field(default_factory=dict)
    fields: dict[str, Any] = field(default_factory=dict)  # more members of the error object


Step = Reply | WriteFile | Fail


@dataclass
class Request:
    """A request the stub received."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any
    session: str | None
    at: float  # when it arrived (time.time())
    answer: Step | None = None


class StubServer:
    """A provider stub on 127.0.0.1 (a random port), serving from a thread until `close()`."""

    rate_limited: Fail  # this provider's HTTP 429
    unauthorized: Fail  # this provider's HTTP 401

    def __init__(self, hold: float = 0.0) -> None:
        self.hold = hold
        self.requests: list[Request] = []
        self.peak_sessions = 0
        self._scripts: dict[str, list[Step]] = {}
        self._lock = threading.Condition()
        self._in_flight: dict[str, int] = {}
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"{type(self).__name__}",
            daemon=True,
        )

    # ------------------------------------------------------------ lifecycle

    def __enter__(self) -> StubServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        """Stop serving and close the socket."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    @property
    def url(self) -> str:
        """`http://127.0.0.1:PORT`, without a trailing slash."""
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    # ------------------------------------------------------------ scripting

    def script(self, tag: str, *steps: Step) -> None:
        """Requests whose conversation contains `tag` take `steps` in order; the last one repeats."""
        assert steps, "a script needs at least one step"
        with self._lock:
            self._scripts[tag] = list(steps)

    def next_step(self, conversation: str) -> Step:
        """The step for a model request whose conversation text is `conversation`."""
        with self._lock:
            for tag, steps in self._scripts.items():
                if tag in conversation:
                    return steps.pop(0) if len(steps) > 1 else steps[0]
        return Reply("ok")

    def model_requests(self, tag: str = "") -> list[Request]:
        """The model requests served so far, or those whose conversation held `tag`."""
        return [r for r in self.requests if r.answer is not None and tag in json.dumps(r.body)]

    # ------------------------------------------------------------ sessions

    def enter_session(self, session: str | None) -> None:
        """Mark `session` in flight; hold up to `hold` seconds for another session to be in flight too."""
        if session is None:
            return
        with self._lock:
            self._in_flight[session] = self._in_flight.get(session, 0) + 1
            self.peak_sessions = max(self.peak_sessions, len(self._in_flight))
            self._lock.notify_all()
            deadline = time.monotonic() + self.hold
            while len(self._in_flight) < 2 and (left := deadline - time.monotonic()) > 0:
                self._lock.wait(left)

    def leave_session(self, session: str | None) -> None:
        """The request of `session` is answered."""
        if session is None:
            return
        with self._lock:
            self._in_flight[session] -= 1
            if not self._in_flight[session]:
                del self._in_flight[session]

    # ------------------------------------------------------------ provider hooks

    def session_of(self, headers: dict[str, str], body: Any) -> str | None:
        """The agent session a request belongs to (None: not a model request)."""
        raise NotImplementedError

    def route(self, http: Handler, request: Request) -> None:
        """Answer one request."""
        raise NotImplementedError

    def _handler_class(self) -> type[Handler]:
        stub = self

        class Bound(Handler):
            owner = stub

        return Bound


class Handler(BaseHTTPRequestHandler):
    """Reads a request, records it, hands it to the stub's `route`; small helpers to answer."""

    protocol_version = "HTTP/1.1"
    timeout = REQUEST_TIMEOUT
    owner: StubServer

    def _serve(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        headers = {k.lower(): v for k, v in self.headers.items()}
        request = Request(
            self.command,
            self.path,
            headers,
            body,
            self.owner.session_of(headers, body),
            time.time(),
        )
        self.owner.requests.append(request)
        self.owner.enter_session(request.session)
        try:
            self.owner.route(self, request)
        finally:
            self.owner.leave_session(request.session)

    do_GET = do_POST = do_HEAD = do_PUT = do_DELETE = _serve

    def send_json(self, status: int, document: Any, headers: dict[str, str] | None = None) -> None:
        """Answer with a JSON document."""
        payload = json.dumps(document).encode()
        self.send_response(status)
        for name, value in {"content-type": "application/json", **(headers or {})}.items():
            self.send_header(name, value)
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def send_sse(
        self, events: list[tuple[str | None, Any]], headers: dict[str, str] | None = None
    ) -> None:
        """Answer with a complete server-sent-event stream of (event name, JSON data) pairs."""
        chunks = []
        for name, data in events:
            chunks.append((f"event: {name}\n" if name else "") + f"data: {json.dumps(data)}\n\n")
        payload = "".join(chunks).encode()
        self.send_response(200)
        for name, value in {
            "content-type": "text/event-stream",
            "cache-control": "no-cache",
            **(headers or {}),
        }.items():
            self.send_header(name, value)
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: the stub keeps its own record of requests
