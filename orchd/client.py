"""The typed client of orchd: one nng req socket, a request in, its typed reply out.

It speaks the protocol of `orchd.protocol` and imports nothing of the daemon's store or actors.
"""

from __future__ import annotations

import itertools
from typing import Any, TypeVar, overload

from orchd.errors import ErrorCode, OrchError
from orchd.protocol import Error, Events, Request, Response, decode_response, encode

R = TypeVar("R", bound=Response)


class Client:
    """A connection to orchd. `call` returns the typed response or raises OrchError."""

    def __init__(self, address: str, timeout: float = 30.0) -> None:
        import pynng

        self._pynng = pynng
        self.address = address
        self.timeout = timeout
        self._ids = itertools.count(1)
        self._socket = pynng.Req0(
            recv_timeout=int(timeout * 1000), send_timeout=int(timeout * 1000)
        )
        try:
            self._socket.dial(address, block=True)
        except pynng.NNGException as exc:
            self._socket.close()
            raise OrchError(
                f"orchd is not running (no answer on {address}: {exc})", ErrorCode.UNAVAILABLE
            ) from None

    @overload
    def call(self, request: Request, expect: type[R], timeout: float | None = None) -> R: ...

    @overload
    def call(self, request: Request, *, timeout: float | None = None) -> Response: ...

    def call(
        self, request: Request, expect: type[Any] | None = None, timeout: float | None = None
    ) -> Any:
        """Send `request`, wait for its reply (of type `expect`, when given); raise OrchError for
        an Error reply, and for a reply of another type (orchd and orchctl disagree)."""
        request.id = next(self._ids) if not request.id else request.id
        wait = timeout if timeout is not None else self.timeout
        if isinstance(request, Events):
            wait += request.wait
        self._socket.recv_timeout = int(wait * 1000)
        data = encode(request)
        try:
            self._socket.send(data)
            reply = decode_response(self._socket.recv())
        except self._pynng.Timeout:
            hint = (
                (
                    f" (the request was {len(data) / (1 << 20):.1f} MiB: orchd drops a request over twice its "
                    "max_message_bytes unanswered)"
                )
                if len(data) > 1 << 20
                else ""
            )
            raise OrchError(
                f"orchd did not answer within {wait:g}s{hint}", ErrorCode.UNAVAILABLE
            ) from None
        except self._pynng.NNGException as exc:
            raise OrchError(f"lost the connection to orchd: {exc}", ErrorCode.UNAVAILABLE) from None
        if isinstance(reply, Error):
            raise OrchError(reply.message, reply.code)
        if expect is not None and not isinstance(reply, expect):
            raise OrchError(
                f"orchd answered {type(reply).__name__} where {expect.__name__} was due: "
                "upgrade orchctl and orchd together",
                ErrorCode.VERSION_MISMATCH,
            )
        return reply

    def close(self) -> None:
        self._socket.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
