"""Protocol fuzzing: thousands of hostile messages on the real socket of a live orchd.

Random bytes, truncated and mutated requests, wrong field types, wrong versions,
unknown kinds, deep nesting, messages over `max_message_bytes`, and valid
requests naming runs that do not exist. Each gets an error reply (never an
`internal` one) or is dropped; real requests keep succeeding in between; the
daemon never dies and its memory stays bounded. Seeded like tests/unit/test_plan_fuzz.py
(`ORCH_FUZZ_SEED=N` or `random`).
"""

from __future__ import annotations

import json
import random
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pynng

from orchd import protocol as p
from tests.conftest import Daemon, wait_until
from tests.unit.test_plan_fuzz import fuzz_seed

MAX_MESSAGE = 64 << 10  # the daemon's max_message_bytes in this test: oversize messages stay cheap
FUZZ_MESSAGES = 15_000
WARMUP = 3000  # messages before the first RSS reading (caches, SQLite pages, thread stacks settle)
REAL_EVERY = 40  # a real request after this many fuzzed ones
SUBMIT_EVERY = 1000  # a multiple of REAL_EVERY

TEMPLATES: list[dict[str, Any]] = [
    {"op": "Ping"},
    {"op": "Status"},
    {"op": "Status", "run": "~nope"},
    {"op": "Runs"},
    {"op": "TaskInfo", "run": "~nope", "task": "a"},
    {"op": "Cancel", "run": "~nope"},
    {"op": "Retry", "run": "~nope", "task": "a"},
    {"op": "Events", "after": 0, "limit": 5},
    {"op": "Replay", "at": 3},
    {"op": "Audit"},
    {
        "op": "Submit",
        "plan": json.dumps(
            {"defaults": {"agent": "command"}, "tasks": [{"id": "a", "command": ["true"]}]}
        ),
        "fmt": "json",
        "base_dir": "/",
    },
]
FIELDS = {
    "v": 1,
    "id": 1,
    "run": "x",
    "task": "x",
    "after": 0,
    "limit": 1,
    "wait": 0.0,
    "at": 0,
    "plan": "",
    "source": "",
    "base_dir": "",
    "fmt": "json",
}


def _valid(rng: random.Random) -> dict[str, Any]:
    request = dict(rng.choice(TEMPLATES))
    request.update(v=p.PROTOCOL_VERSION, id=rng.randint(1, 1 << 31))
    return request


def _junk_value(rng: random.Random, depth: int = 0) -> Any:
    """A random JSON value: the wrong type for almost any field."""
    kind = rng.randrange(9 if depth < 3 else 6)
    if kind == 0:
        return None
    if kind == 1:
        return rng.choice([True, False])
    if kind == 2:
        return rng.choice([-1, 0, 2**63, -(2**63) - 1, 2**64 + 1, 10**30, rng.randint(-1000, 1000)])
    if kind == 3:
        return rng.choice([1.5, -0.0, 1e308, -1e308, 1e-320, rng.uniform(-1e6, 1e6)])
    if kind == 4:
        return "".join(
            chr(
                rng.choice(
                    [rng.randint(0, 0x7F), rng.randint(0x80, 0xD7FF), rng.randint(0xE000, 0x10FFFF)]
                )
            )
            for _ in range(rng.randint(0, 40))
        )
    if kind == 5:
        return rng.choice(["", "\x00", "last", "@", "../..", "a" * 5000, "~nope"])
    if kind in (6, 7):
        return [_junk_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    return {rng.choice(list(FIELDS)): _junk_value(rng, depth + 1) for _ in range(rng.randint(0, 4))}


def _mutate(rng: random.Random, data: bytes) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 6)):
        i = rng.randrange(len(buf) + 1)
        op = rng.randrange(3)
        if op == 0 and i < len(buf):
            buf[i] = rng.randrange(256)
        elif op == 1 and i < len(buf):
            del buf[i]
        else:
            buf.insert(i, rng.choice(b'{}[]",:0123456789.-eE\\ \x00\xff'))
    return bytes(buf)


def _dump(obj: Any) -> bytes:
    text = json.dumps(obj, ensure_ascii=False)
    return (json.dumps(obj) if len(text) % 2 else text).encode()  # unicode both escaped and raw


Gen = Callable[[random.Random], bytes]
GENERATORS: dict[str, Gen] = {
    "random_bytes": lambda rng: rng.randbytes(rng.randint(0, 600)),
    "random_json": lambda rng: _dump(_junk_value(rng)),
    "truncated": lambda rng: (lambda d: d[: rng.randrange(len(d))])(_dump(_valid(rng))),
    "mutated": lambda rng: _mutate(rng, _dump(_valid(rng))),
    "wrong_types": lambda rng: _dump({**_valid(rng), rng.choice(list(FIELDS)): _junk_value(rng)}),
    "wrong_version": lambda rng: _dump(
        {**_valid(rng), "v": rng.choice([0, 2, -1, 99, 2**40, "1", 1.5, [1]])}
    ),
    "unknown_kind": lambda rng: _dump(
        {
            **_valid(rng),
            "op": rng.choice(
                ["Nope", "", "ping", "Shutdown ", 7, None, "_Request", "Error", "Pong"]
            ),
        }
    ),
    "missing_op": lambda rng: _dump({k: v for k, v in _valid(rng).items() if k != "op"}),
    "nested": lambda rng: (lambda n: b'{"op":"Status","run":' + b"[" * n + b"]" * n + b"}")(
        rng.choice([50, 500, 5000, 30_000])
    ),
    "bad_plan": lambda rng: _dump(
        {
            "op": "Submit",
            "plan": _mutate(
                rng,
                _dump(
                    {
                        "workdir": "/",
                        "tasks": [
                            {"id": "a", "agent": "command", "command": ["true"], "timeout": "1s"}
                        ],
                    }
                ),
            ).decode("utf-8", "replace"),
            "fmt": rng.choice([None, "json", "toml", "yaml"]),
            "base_dir": rng.choice(["/", "\x00", "/nonexistent", ""]),
        }
    ),
    "bad_run": lambda rng: _dump(
        {
            **_valid(rng),
            "op": rng.choice(["Status", "TaskInfo", "Cancel", "Retry", "Events"]),
            "run": "~" + str(_junk_value(rng))[:200],
            "task": "a",
        }
    ),
    "over_limit": lambda rng: _dump(
        {"op": "Ping", "id": 1, "pad": "x" * rng.randint(MAX_MESSAGE, 2 * MAX_MESSAGE - 64)}
    ),
    "far_over_limit": lambda rng: b"x" * rng.randint(2 * MAX_MESSAGE + 1, 4 * MAX_MESSAGE),
}
WEIGHTS = {"nested": 0.3, "over_limit": 0.3, "far_over_limit": 0.02}
# What the fuzzer found once (each got an internal error or killed a server worker), sent first every time
EDGES: list[bytes] = [
    b'{"op":"Audit","\xe8":1}',
    b'{"op":"Status","run":"\xff"}',
    b'{"op":"Submi\xfft"}',
    b'{"op":"Status","run":' + b"[" * 5000 + b"]" * 5000 + b"}",
    b'{"op":"Ping","x":' + b"{" * 20_000 + b"}" * 20_000 + b"}",
    b'{"op":"Events","after":9223372036854775808}',
    b'{"op":"Events","after":18446744073709551615,"wait":0.1}',
    b'{"op":"Replay","at":9223372036854775808}',
    b'{"op":"Submit","plan":"x","base_dir":"\\u0000"}',
    json.dumps(
        {
            "op": "Submit",
            "plan": json.dumps({"workdir": "a\x00b", "tasks": [{"id": "a", "prompt": "p"}]}),
        }
    ).encode(),
    json.dumps(
        {
            "op": "Submit",
            "plan": '[defaults]\nbackoff = { factor = nan }\n[[tasks]]\nid = "a"\nprompt = "p"\n',
            "base_dir": "/",
        }
    ).encode(),
]


def rss_kib(pid: int) -> int:
    """The resident set size of a process, from /proc/PID/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


class Fuzzer:
    """Sends raw messages on one Req0 socket; a fresh socket after a drop.

    A drop shows as orchd closing the connection (nng refuses a message over its
    size cap that way): a pipe-removal callback tells it apart from a slow reply.
    """

    def __init__(self, address: str) -> None:
        self.address = address
        self.closed_by_peer = threading.Event()
        self.socket = self._open()
        self.sent: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()  # error code -> count
        self.dropped: Counter[str] = Counter()
        self.other: Counter[str] = (
            Counter()
        )  # replies that are not errors (a mutation left the request valid)

    def _open(self) -> pynng.Req0:
        self.closed_by_peer.clear()
        socket = pynng.Req0(recv_timeout=10_000, send_timeout=10_000)
        socket.add_post_pipe_remove_cb(lambda pipe: self.closed_by_peer.set())
        socket.dial(self.address, block=True)
        return socket

    def _reopen(self, kind: str) -> None:
        self.dropped[kind] += 1
        self.socket.close()
        self.socket = self._open()

    def send(self, kind: str, data: bytes) -> p.Response | None:
        """Send one message: its reply, or None when orchd dropped it (closed the connection)."""
        self.sent[kind] += 1
        self.socket.send(data)
        if (
            kind == "far_over_limit"
        ):  # nng drops these unread; waiting for a reply would only time out
            assert self.closed_by_peer.wait(10), (
                "orchd kept a connection open after a message over its cap"
            )
            self._reopen(kind)
            return None
        try:
            raw = self.socket.recv()
        except pynng.Timeout:
            self._reopen(kind)
            return None
        reply = msgspec.json.decode(raw, type=p.Response)
        if isinstance(reply, p.Error):
            assert reply.code.value != "internal", (kind, data[:300], reply)
            self.errors[reply.code.value] += 1
        else:
            self.other[type(reply).__name__] += 1
        return reply

    def close(self) -> None:
        self.socket.close()


def _real_requests(orchd: Daemon, plan: str | None) -> str | None:
    """Ping and Status always, Submit when `plan` is given; all must succeed."""
    with orchd.client(timeout=10) as client:
        assert isinstance(client.call(p.Ping()), p.Pong)
        assert isinstance(client.call(p.Status()), p.StatusReply)
        if plan is not None:
            reply = client.call(p.Submit(plan=plan, fmt="json", base_dir="/"))
            assert isinstance(reply, p.Submitted) and reply.tasks == 2
            return reply.run_id
    return None


def test_fuzzed_messages_get_errors_and_orchd_keeps_serving(
    make_daemon: Callable[..., Daemon],
) -> None:
    seed = fuzz_seed()
    print(f"protocol fuzz seed {seed} (ORCH_FUZZ_SEED={seed} replays it)", file=sys.stderr)
    rng = random.Random(seed)
    orchd = make_daemon(max_message_bytes=MAX_MESSAGE)
    assert orchd.proc is not None
    pid = orchd.proc.pid
    plan = json.dumps(
        {
            "defaults": {"agent": "command", "max_retries": 0},
            "tasks": [{"id": "a", "command": ["true"]}, {"id": "b", "command": ["true"]}],
        }
    )
    kinds = list(GENERATORS)
    weights = [WEIGHTS.get(k, 1.0) for k in kinds]
    fuzzer = Fuzzer(f"ipc://{orchd.home}/run/orchd.sock")
    runs = [_real_requests(orchd, plan)]  # the log is not empty: a fuzzed long-poll returns at once
    rss = [rss_kib(pid)]  # KiB, at the start and after every 1,000 messages
    started = time.monotonic()
    try:
        for data in EDGES:
            assert fuzzer.send("edge", data) is not None, data[
                :100
            ]  # an answer, not an internal error
        for n in range(1, FUZZ_MESSAGES + 1):
            kind = rng.choices(kinds, weights)[0]
            reply = fuzzer.send(kind, GENERATORS[kind](rng))
            if kind == "over_limit":
                assert isinstance(reply, p.Error) and reply.code.value == "limit", reply
                assert "max_message_bytes" in reply.message and str(MAX_MESSAGE) in reply.message, (
                    reply
                )
            elif kind in (
                "truncated",
                "wrong_version",
                "unknown_kind",
                "missing_op",
                "nested",
                "random_bytes",
            ):
                assert isinstance(reply, p.Error), (kind, reply)
            if n % REAL_EVERY == 0:
                run_id = _real_requests(orchd, plan if n % SUBMIT_EVERY == 0 else None)
                runs += [run_id] if run_id else []
            if n % 1000 == 0:
                rss.append(rss_kib(pid))
    finally:
        fuzzer.close()
    elapsed = time.monotonic() - started
    assert orchd.proc.poll() is None, orchd.log()
    with orchd.client() as client:
        wait_until(
            lambda: all(
                r.summary.state == "completed"
                for r in client.call(p.Status()).runs  # type: ignore[union-attr]
                if r.summary.run_id in runs
            ),
            timeout=60,
            what="the real runs to complete",
        )
    print(
        f"fuzzed {sum(fuzzer.sent.values())} messages in {elapsed:.1f}s: sent {dict(fuzzer.sent)}; "
        f"error replies {dict(fuzzer.errors)}; non-error replies {dict(fuzzer.other)}; "
        f"dropped {dict(fuzzer.dropped)}; real runs {len(runs)}; "
        f"RSS (KiB) every 1,000 messages: {rss}",
        file=sys.stderr,
    )
    assert set(fuzzer.dropped) <= {"far_over_limit"}, (
        fuzzer.dropped
    )  # everything else got an answer
    warm, end = rss[WARMUP // 1000], rss[-1]
    assert end < warm * 1.5 + 32 * 1024, (
        f"RSS grew from {warm} KiB after {WARMUP} messages to {end} KiB: {rss}"
    )
