"""The stream parsers: fed in pieces as agents write, they yield typed signals."""

from __future__ import annotations

import json
from pathlib import Path

from orchd.streams import ApiError, Limit, Spend, parser_for
from orchd.streams.claude import ClaudeStream

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "agents"


def lines(*events: dict) -> bytes:
    return b"".join(json.dumps(e).encode() + b"\n" for e in events)


def feed_in_pieces(parser, data: bytes, size: int = 7) -> list:
    signals = []
    for i in range(0, len(data), size):
        signals += parser.feed(data[i : i + size])
    return signals


def test_claude_api_retry_is_a_retrying_api_error() -> None:
    retry = {
        "type": "system",
        "subtype": "api_retry",
        "attempt": 1,
        "max_retries": 10,
        "retry_delay_ms": 560,
        "error_status": 401,
        "error": "authentication_failed",
        "session_id": "s1",
    }
    signals = feed_in_pieces(ClaudeStream(), lines(retry))
    assert signals == [
        ApiError(
            "auth",
            status=401,
            message="authentication_failed",
            retrying=True,
            attempt=1,
            max_retries=10,
            retry_in=0.56,
        )
    ]
    overloaded = {**retry, "error_status": 529, "error": "server_error"}
    assert ClaudeStream().feed(lines(overloaded))[0].category == "overload"
    limited = {**retry, "error_status": 429, "error": "rate_limit"}
    assert ClaudeStream().feed(lines(limited))[0].category == "rate_limit"


def test_claude_usage_limit_from_a_recorded_stream() -> None:
    data = (FIXTURES / "claude" / "usage_limit.jsonl").read_bytes()
    signals = feed_in_pieces(ClaudeStream(), data, 100)
    assert Limit(1900000000.0, "five_hour limit reached") in signals


def test_claude_spend_from_messages_then_the_result() -> None:
    data = (FIXTURES / "claude" / "success.jsonl").read_bytes()
    parser = ClaudeStream()
    signals = feed_in_pieces(parser, data, 64)
    spends = [s for s in signals if isinstance(s, Spend)]
    assert spends and spends[-1].cost_usd is not None and spends[-1].cost_usd > 0
    assert parser.session_id and parser.activity


def test_an_incomplete_line_waits_for_its_end() -> None:
    parser = parser_for("claude")
    event = lines({"type": "system", "subtype": "api_retry", "error_status": 401, "error": "x"})
    assert parser.feed(event[:-5]) == []
    assert len(parser.feed(event[-5:])) == 1


def test_text_agents_yield_no_signals_but_an_activity() -> None:
    parser = parser_for("command")
    assert parser.feed(b"compiling\nlinking...\n") == []
    assert parser.activity == "linking..."


def test_what_the_checks_print_is_not_the_agents_stream() -> None:
    """After the attempt's process says its agent exited 0 (orchd/verify.py's first marker), the
    log holds the checks' output: a test suite that prints an API error is not the agent's."""
    from orchd import verify

    refused = {
        "type": "system",
        "subtype": "api_retry",
        "attempt": 1,
        "max_retries": 10,
        "error_status": 401,
        "error": "authentication_failed",
    }
    checks = f"{verify.start(1)}\n{verify.check(1, 1, ['pytest'])}\n".encode() + lines(refused)
    assert feed_in_pieces(ClaudeStream(), checks) == []
    parser = ClaudeStream()
    assert parser.feed(lines(refused))[0].category == "auth"  # the agent's own: acted on
    assert parser.feed(checks) == [] and parser.feed(lines(refused)) == []
