"""nng's req/rep wire format over a Unix socket, in the standard library alone.

pynng (and the cffi and asyncio it loads) costs ~60 ms to import: more than the
whole answer to `orchctl status --json`. A client that sends one request and
exits speaks the protocol itself. The format (nng's IPC transport, SP 1.0):

- on connect, each side sends 8 bytes: 00 'S' 'P' 00, its protocol (u16,
  big-endian: REQ = 0x30, REP = 0x31), 00 00;
- then every message is 0x01, its length (u64, big-endian), its bytes;
- a REQ message starts with a 4-byte request id, high bit set, which the REP
  echoes before its answer.
"""

from __future__ import annotations

import socket
import struct

REQ, REP = 0x30, 0x31
_GREETING = struct.Struct(">4sH2s")
_FRAME = struct.Struct(">BQ")
USER_MESSAGE = 1


class SPError(OSError):
    """The peer is not an nng REP socket, or broke the format."""


def _exactly(sock: socket.socket, size: int) -> bytes:
    chunks, missing = [], size
    while missing:
        chunk = sock.recv(min(missing, 1 << 20))
        if not chunk:
            raise SPError("the connection closed mid-message")
        chunks.append(chunk)
        missing -= len(chunk)
    return b"".join(chunks)


def request(path: str, body: bytes, timeout: float = 30.0, request_id: int = 1) -> bytes:
    """Send one request to the REP socket at `path` (a Unix socket); return the reply's body.

    Raises:
        OSError: nothing listens there, the peer is not a REP socket, or it did not answer in time.
    """
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(path)
        sock.sendall(_GREETING.pack(b"\x00SP\x00", REQ, b"\x00\x00"))
        magic, protocol, _ = _GREETING.unpack(_exactly(sock, _GREETING.size))
        if magic != b"\x00SP\x00" or protocol != REP:
            raise SPError(f"{path} is not an nng REP socket")
        header = struct.pack(">I", 0x80000000 | request_id)
        sock.sendall(_FRAME.pack(USER_MESSAGE, len(header) + len(body)) + header + body)
        while True:
            kind, size = _FRAME.unpack(_exactly(sock, _FRAME.size))
            message = _exactly(sock, size)
            if kind == USER_MESSAGE and message[:4] == header:
                return message[4:]
            # anything else (a control message, a stale reply) is not our answer
