"""The Ray actor that owns one attempt's process on its node (`AttemptActor`).

It starts the agent (argv, own process group) with PR_SET_PDEATHSIG, so the agent dies with it,
keeps the agent's output in memory and its exit status, and answers long-polled
`read(offset, wait)` calls from the daemon's RayExecutor (ray.py).
"""

from __future__ import annotations

import asyncio
import ctypes
import errno
import os
import shutil
import signal
import subprocess
import tempfile
from typing import Any

import ray

from orchd.procs import start_ticks

CHUNK = 1 << 20  # bytes a read returns at most
EOF_GRACE = 2.0  # seconds to wait for the end of output after the group is killed (an escapee holds the pipe)
_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)


def _die_with_keeper() -> None:
    """In the agent before exec: SIGKILL it when its keeper dies (the node's Ray went away)."""
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


class AttemptActor:
    """The Ray actor that owns one attempt's process on its node (an async actor: one event loop)."""

    def __init__(self) -> None:
        self.popen: subprocess.Popen | None = None
        self.pgid = 0
        self.buffer = bytearray()
        self.base = (
            0  # offset of buffer[0] in the attempt's output (the daemon has everything before)
        )
        self.status: tuple[int | None, int | None] | None = None  # (exit_code, signal) once reaped
        self.eof = False
        self.changed = asyncio.Event()

    async def start(
        self, argv: list[str], env: dict[str, str], cwd: str, stdin: str | None
    ) -> tuple[Any, ...]:
        """Start the agent, `stdin` as its input; ("ok", pid, pgid, start_ticks, node) or ("error", errno, message)."""
        node = ray.get_runtime_context().get_node_id()
        program = (
            os.path.join(cwd, argv[0]) if os.sep in argv[0] else argv[0]
        )  # ./run.sh: in cwd, as for exec
        if (
            shutil.which(program, path=env.get("PATH", os.defpath)) is None
        ):  # as the local keeper says it
            return (
                "error",
                errno.ENOENT,
                f"not found on Ray node {node[:12]} (is it installed there, and on orchd's PATH?)",
            )
        source: Any = subprocess.DEVNULL
        if (
            stdin is not None
        ):  # an unnamed file on the node: a long prompt cannot fill a pipe and block
            source = tempfile.TemporaryFile()
            source.write(stdin.encode())
            source.seek(0)
        read_end, write_end = os.pipe2(os.O_CLOEXEC)
        try:
            self.popen = subprocess.Popen(
                argv,
                cwd=cwd,
                env={**env, "ORCH_NODE": node},
                stdin=source,
                stdout=write_end,
                stderr=write_end,
                process_group=0,
                close_fds=True,
                preexec_fn=_die_with_keeper,
            )
        except OSError as exc:
            os.close(read_end)
            return "error", exc.errno or errno.EIO, exc.strerror or str(exc)
        finally:
            os.close(write_end)
            if stdin is not None:
                source.close()
        self.pgid = self.popen.pid
        loop = asyncio.get_running_loop()
        os.set_blocking(read_end, False)
        loop.add_reader(read_end, self._output, read_end)
        pidfd = os.pidfd_open(self.popen.pid)
        loop.add_reader(pidfd, self._exited, pidfd, read_end)
        return "ok", self.popen.pid, self.pgid, start_ticks(self.popen.pid) or 0, node

    def _output(self, fd: int) -> None:
        try:
            data = os.read(fd, 1 << 16)
        except BlockingIOError:
            return
        if data:
            self.buffer += data
        else:
            self._close_output(fd)
        self._changed()

    def _close_output(self, fd: int) -> None:
        if not self.eof:
            self.eof = True
            asyncio.get_running_loop().remove_reader(fd)
            os.close(fd)
            self._changed()

    def _exited(self, pidfd: int, output_fd: int) -> None:
        loop = asyncio.get_running_loop()
        loop.remove_reader(pidfd)
        os.close(pidfd)
        # the leader is a zombie until reaped, so its group id is still ours: kill what it left behind
        _killpg(self.pgid, signal.SIGKILL)
        assert self.popen is not None
        code = self.popen.wait()
        self.status = (None, -code) if code < 0 else (code, None)
        loop.call_later(EOF_GRACE, self._close_output, output_fd)
        self._changed()

    def _changed(self) -> None:
        self.changed.set()
        self.changed = asyncio.Event()

    async def read(
        self, offset: int, wait: float
    ) -> tuple[int, bytes, bool, int | None, int | None]:
        """Output from `offset` on, waiting up to `wait` s for some: (start, data, ended, exit_code, signal).

        The daemon has everything before `offset`, so that part is dropped. `ended` is true once the
        process has exited and `data` is the last of its output.
        """
        if offset > self.base:
            del self.buffer[: offset - self.base]
            self.base = offset
        if not self.buffer and not self.done:
            try:
                await asyncio.wait_for(self.changed.wait(), wait)
            except TimeoutError:
                pass
        start = max(offset, self.base)
        data = bytes(self.buffer[start - self.base : start - self.base + CHUNK])
        ended = self.done and start + len(data) == self.base + len(self.buffer)
        code, sig = self.status if self.status is not None else (None, None)
        return start, data, ended, code, sig

    @property
    def done(self) -> bool:
        return self.status is not None and self.eof

    async def signal(self, sig: int) -> None:
        """Signal the attempt's process group, unless it has ended."""
        if self.status is None and self.pgid > 0:
            _killpg(self.pgid, sig)

    async def info(self) -> tuple[int, int, int, str] | None:
        """(pid, pgid, start_ticks, node) of the attempt's process, or None when it never started."""
        if self.popen is None:
            return None
        return (
            self.popen.pid,
            self.pgid,
            start_ticks(self.popen.pid) or 0,
            ray.get_runtime_context().get_node_id(),
        )


def _killpg(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass
