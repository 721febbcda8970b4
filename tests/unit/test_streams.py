"""The stream parsers: fed in pieces as agents write, they yield typed signals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchd.streams import Answered, ApiError, Limit, Spend, parser_for, tells_answers
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


# ------------------------------------------------------------ the real CLIs, recorded live

LIVE = FIXTURES.parent / "agents"
NOW = 1_796_580_000.0  # a fixed clock (2026-12-06 18:00 UTC) for the waits a stream names


def told(agent: str, case: str) -> list[str]:
    """What a live recording (tests/e2e/record_live.py) signals, one word per signal, repeats
    counted: ["10x auth 401 retrying", "auth 401", ...]; spend left out."""
    parser = parser_for(agent)
    parser.clock = lambda: NOW
    data = (LIVE / agent / "live" / f"{case}.txt").read_bytes()
    words: list[str] = []
    counts: list[int] = []
    for signal in feed_in_pieces(parser, data, 4096):
        if isinstance(signal, ApiError):
            word = " ".join(
                str(w)
                for w in (signal.category, signal.status, "retrying" * signal.retrying)
                if w not in (None, "")
            )
        elif isinstance(signal, Limit):
            word = f"limit {signal.resets_at:.0f}" if signal.resets_at else "limit"
        elif isinstance(signal, Spend):
            continue
        else:
            word = type(signal).__name__.lower()
        if words and words[-1] == word:
            counts[-1] += 1
        else:
            words.append(word)
            counts.append(1)
    return [f"{n}x {w}" if n > 1 else w for n, w in zip(counts, words)]


RESET = "limit 1900000000"  # the recordings' far-off reset (record_fixtures.RESET)
MIDNIGHT_PACIFIC = "limit 1796630400"  # after NOW
LIVE_SIGNALS = [
    ("claude", "success", ["answered"]),
    ("claude", "slow", ["answered"]),
    ("claude", "success_near_limit", ["answered"]),  # allowed_warning: nothing to act on
    ("claude", "auth_401", ["10x auth 401 retrying", "auth 401"]),
    ("claude", "forbidden_403", ["auth 403"]),  # not retried
    ("claude", "rate_limited", ["10x rate_limit 429 retrying", "rate_limit 429"]),
    ("claude", "retry_after", ["10x rate_limit 429 retrying", "rate_limit 429"]),
    ("claude", "retry_after_then_ok", ["rate_limit 429 retrying", "answered"]),
    ("claude", "retry_after_long", ["rate_limit 429"]),  # over 60 s: it gives up at once
    ("claude", "no_retry_429", ["rate_limit 429"]),  # x-should-retry: false
    ("claude", "overloaded", ["2x overload 529 retrying", "overload 529"]),
    ("claude", "server_error_500", ["10x overload 500 retrying", "overload 500"]),
    ("claude", "unavailable_503", ["10x overload 503 retrying", "overload 503"]),
    ("claude", "usage_limit", [RESET, "usage_limit 429"]),
    ("codex", "success", ["answered"]),
    ("codex", "slow", ["answered"]),
    ("codex", "auth_401", ["5x auth 401 retrying", "auth 401"]),
    ("codex", "forbidden_403", ["5x auth 403 retrying", "auth 403"]),
    ("codex", "rate_limited", ["rate_limit 429"]),  # no Retry-After: Codex gives up at once
    ("codex", "retry_after", ["5x rate_limit 429 retrying", "rate_limit 429"]),
    ("codex", "retry_after_then_ok", ["rate_limit 429 retrying", "answered"]),
    ("codex", "overloaded", ["5x overload 503 retrying", "overload 503"]),
    ("codex", "server_error_500", ["5x overload retrying", "overload"]),  # "high demand"
    ("codex", "unavailable_503", ["5x overload 503 retrying", "overload 503"]),
    ("codex", "quota", ["billing"]),  # insufficient_quota: no credits
    ("codex", "usage_limit", ["usage_limit", "limit 1900000020"]),  # the minute's end
    ("gemini", "success", ["answered"]),
    ("gemini", "slow", ["answered"]),
    ("gemini", "auth_401", ["auth"]),  # 400 API_KEY_INVALID, not retried
    ("gemini", "forbidden_403", ["auth"]),
    ("gemini", "rate_limited", ["9x rate_limit 429 retrying", "rate_limit"]),
    ("gemini", "retry_after", ["9x rate_limit retrying", "rate_limit"]),
    ("gemini", "retry_after_then_ok", ["rate_limit retrying", "answered"]),
    ("gemini", "overloaded", ["9x overload 503 retrying", "overload"]),
    ("gemini", "server_error_500", ["9x overload 500 retrying", "overload"]),
    ("gemini", "retry_in_long", ["rate_limit", f"limit {NOW + 3600:.0f}"]),  # over 300 s: at once
    ("gemini", "daily_quota", ["usage_limit", MIDNIGHT_PACIFIC]),
    ("gemini", "usage_limit", ["usage_limit", MIDNIGHT_PACIFIC]),
    ("gemini", "no_quota", ["rate_limit"]),  # limit: 0, given up at once
]


@pytest.mark.parametrize(("agent", "case", "signals"), LIVE_SIGNALS)
def test_each_real_stream_yields_what_it_says(agent: str, case: str, signals: list[str]) -> None:
    assert told(agent, case) == signals


def test_retry_delays_and_counts_come_from_the_stream() -> None:
    claude = [
        s
        for s in parser_for("claude").feed(live("claude", "retry_after"))
        if isinstance(s, ApiError)
    ]
    assert [s.attempt for s in claude[:10]] == list(range(1, 11))
    # Retry-After 5 (plus up to 25 %), until its own backoff (0.5 s doubling, to 32 s) is longer
    assert all(s.max_retries == 10 and 5.0 <= s.retry_in <= 6.25 for s in claude[:4])
    assert all(s.retry_in > 6.25 for s in claude[4:10])
    codex = [
        s for s in parser_for("codex").feed(live("codex", "retry_after")) if isinstance(s, ApiError)
    ]
    assert [(s.attempt, s.max_retries) for s in codex[:5]] == [(n, 5) for n in range(1, 6)]
    gemini = [
        s
        for s in parser_for("gemini").feed(live("gemini", "retry_after"))
        if isinstance(s, ApiError)
    ]
    assert [s.attempt for s in gemini[:9]] == list(range(1, 10))
    assert all(s.retry_in is not None and s.retry_in >= 5.0 for s in gemini[:9])  # retryDelay 5s
    assert gemini[-1].retry_in == 5.0  # the wait it named when it gave up


def live(agent: str, case: str) -> bytes:
    return (LIVE / agent / "live" / f"{case}.txt").read_bytes()


def test_which_streams_tell_the_providers_answers() -> None:
    assert all(tells_answers(a) for a in ("claude", "codex", "gemini", "opencode", "copilot"))
    assert not tells_answers("aider") and not tells_answers("command")  # their limit: the caps
    for agent, fixture in (("opencode", "ok.jsonl"), ("copilot", "ok.jsonl")):
        signals = parser_for(agent).feed((FIXTURES / agent / fixture).read_bytes())
        assert signals.count(Answered()) == 1, (agent, signals)
