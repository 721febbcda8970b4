"""The dashboard's server: uvicorn running the app on one thread of orchd, its own asyncio loop.

Started on the first `orchctl dashboard` (the web stack is imported then, not at orchd's start)
and kept until orchd stops; asking again returns the same URL. Open pages cost no thread: each is
a coroutine on the loop, woken by the hub (live.py). One more thread starts only when a page
first asks for a diff (git runs there, off the loop).

The socket is bound here, before uvicorn starts, so that a port in use is an error of the
request that asked for it, and the URL is good as soon as it is printed (connections wait in
the listen queue while the loop starts).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import socket
import threading
from collections.abc import Callable

import uvicorn

from orchd import protocol as p
from orchd.dashboard.app import Dashboard, make_app
from orchd.errors import ErrorCode, OrchError
from orchd.journal import Journal
from orchd.paths import Paths

log = logging.getLogger(__name__)
HOST = "127.0.0.1"


class DashboardServer:
    """The dashboard of one orchd, on 127.0.0.1:`port` (0: a free port)."""

    def __init__(
        self,
        journal: Journal,
        paths: Paths,
        diff: Callable[[str, str], p.DiffReply],
        port: int = 0,
    ) -> None:
        self.journal, self.paths, self.port = journal, paths, port
        self.dashboard = Dashboard(journal, paths.db, diff)
        self._token = secrets.token_urlsafe(32)
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def url(self) -> str:
        """The URL to open: with the token, which the page trades for a cookie at once."""
        return f"http://{HOST}:{self.port}/?token={self._token}"

    def start(self) -> DashboardServer:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, self.port))
        except OSError as exc:
            sock.close()
            raise OrchError(
                f"cannot serve the dashboard on {HOST}:{self.port}: {exc.strerror} "
                f"(the port is `[dashboard] port` in {self.paths.config_file}; 0 picks a free one)",
                ErrorCode.CONFLICT,
            ) from None
        sock.listen(128)
        self.port = sock.getsockname()[1]
        app = make_app(self.dashboard, self._token, cookie=f"orch-dashboard-{self.port}")
        config = uvicorn.Config(
            app,
            http="h11",
            ws="none",
            lifespan="off",
            log_config=None,  # orchd's logging as it is
            access_log=False,  # the first request's URL carries the token
            timeout_graceful_shutdown=2,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._serve, args=(sock,), name="dashboard", daemon=True
        )
        self._thread.start()
        log.info(
            "dashboard on http://%s:%d/ (its URL with the token: orchctl dashboard)",
            HOST,
            self.port,
        )
        return self

    def _serve(self, sock: socket.socket) -> None:
        assert self._server is not None

        async def serve() -> None:
            self._loop = asyncio.get_running_loop()
            assert self._server is not None
            await self._server.serve(sockets=[sock])

        try:
            asyncio.run(serve())
        except Exception:  # a bug: orchd goes on without its dashboard
            log.exception("the dashboard stopped")

    def stop(self) -> None:
        """End the open pages' streams, then the server; wait a little for its thread."""
        if self._server is None or self._thread is None:
            return
        if self._loop is not None:
            try:
                self._loop.call_soon_threadsafe(self.dashboard.close)
            except RuntimeError:  # the loop has already ended
                pass
        self._server.should_exit = True
        self._thread.join(timeout=5)
