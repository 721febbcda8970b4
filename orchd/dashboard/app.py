"""The dashboard's web application: a token gate in front of a few read-only routes.

Every request must carry the token: `?token=` on the URL `orchctl dashboard` prints, then the
cookie the first answer sets (so that the page's other URLs never carry it), or an
`Authorization: Bearer` header for scripts. No token: 401; a wrong one: 403; compared in
constant time. Answers say `no-store`, send no referrer, and forbid any script but the page's
own (Content-Security-Policy): agent output is put in the page as text, never as markup, and
even a slip there would run nothing.

Routes: `/` (the page), `/static/...` (its script and style), `/api/view` (a page's document as
JSON), `/api/stream` (the same, then its deltas, as server-sent events), `/api/diff` (a task's
change, as `orchctl diff` shows it).
"""

from __future__ import annotations

import asyncio
import hmac
import http.cookies
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from pathlib import Path
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from orchd import protocol as p
from orchd.dashboard import live, pages
from orchd.errors import ErrorCode, OrchError
from orchd.journal import Journal

SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        b"img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    ),
    (b"referrer-policy", b"no-referrer"),
    (b"x-content-type-options", b"nosniff"),
    (b"cache-control", b"no-store"),
]
STATIC = {"app.js": "text/javascript", "app.css": "text/css"}
HTTP_STATUS = {ErrorCode.NOT_FOUND: 404, ErrorCode.BAD_REQUEST: 400, ErrorCode.CONFLICT: 409}


def _plain(status: int, text: str) -> Response:
    return Response(text + "\n", status_code=status, media_type="text/plain")


class TokenGate:
    """ASGI middleware: refuses every request without the token; exchanges the URL's token for a
    cookie (HttpOnly, SameSite=Strict) on the answer."""

    def __init__(self, app: ASGIApp, token: str, cookie: str) -> None:
        self.app, self.token, self.cookie = app, token.encode(), cookie

    def _given(self, scope: Scope) -> tuple[bytes | None, bool]:
        """The token the request carries, and whether it came on the URL."""
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        if "token" in query:
            return query["token"][0].encode(), True
        for name, value in scope.get("headers", []):
            if name == b"authorization" and value[:7].lower() == b"bearer ":
                return value[7:].strip(), False
            if name == b"cookie":
                morsel = http.cookies.SimpleCookie(value.decode("latin-1")).get(self.cookie)
                if morsel is not None:
                    return morsel.value.encode(), False
        return None, False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return  # no websockets, no lifespan
        given, on_url = self._given(scope)
        if given is None:
            refusal = _plain(401, "orch dashboard: the URL needs its token (orchctl dashboard)")
        elif not hmac.compare_digest(given, self.token):
            refusal = _plain(403, "orch dashboard: wrong token (orchctl dashboard prints the URL)")
        else:
            refusal = None
        headers = SECURITY_HEADERS
        if refusal is None and on_url:
            headers = [
                *SECURITY_HEADERS,
                (
                    b"set-cookie",
                    f"{self.cookie}={self.token.decode()}; HttpOnly; SameSite=Strict; Path=/".encode(),
                ),
            ]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *headers]
            await send(message)

        await (refusal or self.app)(scope, receive, send_with_headers)


def _int(request: Request, name: str, default: int | None) -> int | None:
    value = request.query_params.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise OrchError(f"{name} must be a number, not {value!r}", ErrorCode.BAD_REQUEST) from None


class Dashboard:
    """The application's state: the journal it reads, the hub, the one worker for git."""

    def __init__(self, journal: Journal, db: Path, diff: Callable[[str, str], p.DiffReply]) -> None:
        self.journal, self.db, self._diff = journal, db, diff
        self._hub: live.Hub | None = None
        self._git = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dashboard-git")

    @property
    def hub(self) -> live.Hub:
        if self._hub is None:  # made on the loop, on the first request
            self._hub = live.Hub(self.journal, self.db, asyncio.get_running_loop())
        return self._hub

    def close(self) -> None:
        """On the loop: end the open streams."""
        if self._hub is not None:
            self._hub.close()
        self._git.shutdown(wait=False, cancel_futures=True)

    def page(self, request: Request) -> pages.Page:
        """The page a request names; refused when its run or task is not in the log."""
        q = request.query_params
        view, summaries = q.get("view", "runs"), self.hub.summaries
        offset, limit = _int(request, "offset", 0) or 0, _int(request, "limit", pages.PAGE)
        page: pages.Page
        if view == "runs":
            page = pages.RunsPage(summaries, offset, limit or pages.PAGE)
        elif view == "run":
            try:
                page = pages.RunPage(
                    summaries, q.get("run", ""), q.get("state") or None, offset, limit or pages.PAGE
                )
            except ValueError as exc:
                raise OrchError(str(exc), ErrorCode.BAD_REQUEST) from None
        elif view == "task":
            page = pages.TaskPage(
                summaries, q.get("run", ""), q.get("task", ""), _int(request, "attempt", None)
            )
        else:
            raise OrchError("view must be runs, run or task", ErrorCode.BAD_REQUEST)
        with self.journal.lock:
            try:
                page.snapshot(self.journal.state)  # a page of a run the log holds (runs stay)
            except pages.NotFound as exc:
                raise OrchError(str(exc), ErrorCode.NOT_FOUND) from None
        return page

    async def index(self, request: Request) -> Response:
        return Response(_static("index.html"), media_type="text/html")

    async def static(self, request: Request) -> Response:
        name = request.path_params["name"]
        if name not in STATIC:
            return _plain(404, "not found")
        return Response(_static(name), media_type=STATIC[name])

    async def view(self, request: Request) -> Response:
        page = self.page(request)
        with self.journal.lock:
            return Response(
                p.encode(page.snapshot(self.journal.state)), media_type="application/json"
            )

    async def stream(self, request: Request) -> Response:
        stream = live.Stream(self.hub, self.page(request))
        return StreamingResponse(
            stream.events(),
            media_type="text/event-stream",
            headers={"x-accel-buffering": "no"},
        )

    async def diff(self, request: Request) -> Response:
        run, task = request.query_params.get("run", ""), request.query_params.get("task", "")
        # git may take a while in a large repository: on the one worker, never on the loop
        reply = await asyncio.get_running_loop().run_in_executor(self._git, self._diff, run, task)
        return Response(p.encode(reply), media_type="application/json")


_STATIC_CACHE: dict[str, bytes] = {}


def _static(name: str) -> bytes:
    if name not in _STATIC_CACHE:
        _STATIC_CACHE[name] = (resources.files("orchd.dashboard") / "static" / name).read_bytes()
    return _STATIC_CACHE[name]


async def _errors(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, OrchError)
    body = p.encode(p.Error(code=exc.code, message=exc.message))
    return Response(body, status_code=HTTP_STATUS.get(exc.code, 500), media_type="application/json")


def make_app(dashboard: Dashboard, token: str, cookie: str) -> ASGIApp:
    """The dashboard's ASGI application, behind its token gate."""
    app = Starlette(
        routes=[
            Route("/", dashboard.index),
            Route("/static/{name}", dashboard.static),
            Route("/api/view", dashboard.view),
            Route("/api/stream", dashboard.stream),
            Route("/api/diff", dashboard.diff),
        ],
        exception_handlers={OrchError: _errors},
    )
    return TokenGate(app, token, cookie)
