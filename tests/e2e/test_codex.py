"""Codex end to end: the real CLI (tests/e2e/node_modules) against a stub OpenAI Responses API, behind a real orchd."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import Daemon
from tests.e2e import scenarios

pytestmark = pytest.mark.timeout(180)


def test_success_tokens_rate_limit_auth_and_edit(rig: Callable) -> None:
    tasks = scenarios.mixed_plan(rig("codex"))
    assert tasks["answer"]["cost_usd"] is None  # Codex reports tokens, not money
    assert "OPENAI_API_KEY" in tasks["denied"]["reason"]


def test_twelve_tasks_at_concurrency_three(rig: Callable) -> None:
    scenarios.concurrency(rig("codex", hold=2.0))


def test_not_installed_fails_at_once(
    tmp_path: Path, make_daemon: Callable[..., Daemon], monkeypatch: pytest.MonkeyPatch
) -> None:
    scenarios.not_installed("codex", tmp_path, make_daemon, monkeypatch)


def test_resume_continues_the_thread(rig: Callable) -> None:
    scenarios.resumed(rig("codex"))
