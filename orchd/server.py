"""The request server: nng rep on an ipc socket (0600 in a 0700 directory).

Several workers, each on its own nng context, serve clients concurrently; a
long-poll holds only its own worker. A request that cannot be decoded gets an
error reply; nothing a client sends stops the daemon.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from collections.abc import Callable

import pynng

from orchd import protocol as p
from orchd.actors.context import Context
from orchd.dispatch import Dispatcher
from orchd.errors import ErrorCode, OrchError

log = logging.getLogger(__name__)


def peer_uid(pipe: pynng.Pipe) -> int | None:
    """The uid of the process at the other end of an ipc connection (nng's `ipc:peer-uid`), if nng can tell."""
    uid = pynng.ffi.new("uint64_t *")
    if pynng.lib.nng_pipe_get_uint64(pipe.pipe, b"ipc:peer-uid", uid) != 0:
        return None
    return int(uid[0])


def admits(uid: int | None, own_uid: int) -> bool:
    """Only orchd's own user may connect; where the peer is unknown, the 0600 socket is the only guard."""
    return uid is None or uid == own_uid


class Server:
    """Serves the protocol for one daemon."""

    def __init__(
        self,
        ctx: Context,
        on_shutdown: Callable[[], None],
        *,
        settle: Callable[[bool], tuple[int, int]] | None = None,
        workers: int = 16,
        max_message: int = 16 << 20,
        max_runs: int = 10_000,
        dashboard_port: int = 0,
    ) -> None:
        self.ctx, self.on_shutdown = ctx, on_shutdown
        self.workers, self.max_message = workers, max_message
        self.dispatcher = Dispatcher(
            ctx,
            settle=settle,
            workers=workers,
            max_message=max_message,
            max_runs=max_runs,
            dashboard_port=dashboard_port,
        )
        self._socket: pynng.Rep0 | None = None
        self._threads: list[threading.Thread] = []

    def start(self) -> Server:
        path = self.ctx.paths.socket
        if path.exists():
            path.unlink()  # stale: we hold the daemon lock, so no other orchd owns it
        old = os.umask(0o177)
        try:
            # nng drops (closes the pipe of) anything over twice the limit unread; a request between
            # the limit and that is read and refused with an error that names the limit
            self._socket = pynng.Rep0(recv_max_size=2 * self.max_message)
            self._socket.add_pre_pipe_connect_cb(self._check_peer)
            self._socket.listen(self.ctx.paths.address)
        finally:
            os.umask(old)
        os.chmod(path, 0o600)
        for i in range(self.workers):
            thread = threading.Thread(target=self._work, name=f"server-{i}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    @staticmethod
    def _check_peer(pipe: pynng.Pipe) -> None:
        uid = peer_uid(pipe)
        if not admits(uid, os.getuid()):
            log.warning("refused a connection from uid %s (orchd runs as uid %d)", uid, os.getuid())
            pipe.close()

    def stop(self) -> None:
        if self._socket is not None:
            self._socket.close()
        for thread in self._threads:
            thread.join(timeout=5)
        self.dispatcher.close()

    def _work(self) -> None:
        assert self._socket is not None
        context = self._socket.new_context()
        conn = self.ctx.reader()
        try:
            while True:
                try:
                    data = context.recv()
                except pynng.Closed:
                    return
                except pynng.NNGException:
                    continue
                reply = self.handle(data, conn)
                try:
                    context.send(reply if isinstance(reply, bytes) else p.encode(reply))
                except pynng.Closed:
                    return
                except pynng.NNGException:
                    continue  # the client went away
                if self.dispatcher.shutdown_requested.is_set():
                    self.on_shutdown()  # only once the reply is on its way
        finally:
            conn.close()
            try:
                context.close()
            except pynng.NNGException:
                pass  # closed with the socket

    def handle(self, data: bytes, conn: sqlite3.Connection) -> p.Response | bytes:
        """Answer one request; every failure becomes an Error reply. Bytes: a reply already encoded."""
        rid = 0
        try:
            if len(data) > self.max_message:
                raise OrchError(
                    f"request of {len(data)} bytes is over orchd's limit of {self.max_message} bytes "
                    "(max_message_bytes in config.toml)",
                    ErrorCode.LIMIT,
                )
            request = p.decode_request(data)
            rid = request.id
            reply = self.dispatcher.dispatch(request, conn)
            if isinstance(request, p.Status) and request.indent > 0:
                reply.id = rid
                if request.alone and isinstance(reply, p.StatusReply) and len(reply.runs) == 1:
                    return p.encode_raw(reply.runs[0], indent=min(request.indent, 8))
                return p.encode(reply, indent=min(request.indent, 8))
        except OrchError as exc:
            reply = p.Error(code=exc.code, message=exc.message)
        except Exception as exc:  # a bug: say so, keep serving
            log.exception("request failed")
            reply = p.Error(code=ErrorCode.INTERNAL, message=f"internal error: {exc}")
        reply.id = rid or p.request_id(data)
        return reply
