"""The real agent CLIs (pinned in tests/e2e/package.json) and the environment that points each at its stub.

Install them with `npm ci --prefix tests/e2e`; tests find them in
tests/e2e/node_modules/.bin (or on PATH). Every CLI gets its own HOME and
config directory inside the test's tmp dir, a dummy key, and a base URL on
loopback, so nothing leaves the machine and nothing of the user's is read.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from tests.e2e.stubs.base import StubServer

BIN = Path(__file__).resolve().parent / "node_modules" / ".bin"
PACKAGES = {
    "claude": "@anthropic-ai/claude-code",
    "codex": "@openai/codex",
    "gemini": "@google/gemini-cli",
}
CLAUDE_KEY = "sk-ant-api03-orch-test-dummy"
OPENAI_KEY = "sk-orch-test-dummy"
CODEX_MODEL = "gpt-5.5"  # a model Codex knows, so it offers the apply_patch tool
GEMINI_KEY = "AIza-orch-test-dummy"
GEMINI_MODEL = "gemini-2.5-flash"  # named, so Gemini CLI does not first ask a model to pick one


def find_cli(name: str) -> str | None:
    """The path of an agent CLI: the pinned one under tests/e2e, else one on PATH."""
    local = BIN / name
    return str(local) if local.exists() else shutil.which(name)


def require_cli(name: str) -> str:
    """The CLI's path; skip the test when it is missing, or fail under CI=true (where .ci/run installs it)."""
    path = find_cli(name)
    if path is None:
        why = f"{name} CLI not installed (npm ci --prefix tests/e2e installs {PACKAGES[name]})"
        if os.environ.get("CI") == "true":
            pytest.fail(why)
        pytest.skip(why)
    return path


def claude_env(stub: StubServer, home: Path, retries: int | None = 0) -> dict[str, str]:
    """Environment that points Claude Code at `stub`, with its config under `home`.

    Claude Code's own retries are turned off (CLAUDE_CODE_MAX_RETRIES) so
    that an error the stub returns reaches orch at once; `retries=None` leaves
    them as users have them (10).
    """
    (home / "claude").mkdir(parents=True, exist_ok=True)
    return {
        "HOME": str(home),
        "CLAUDE_CONFIG_DIR": str(home / "claude"),
        "ANTHROPIC_BASE_URL": stub.url,
        "ANTHROPIC_API_KEY": CLAUDE_KEY,
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_TELEMETRY": "1",
        "DISABLE_ERROR_REPORTING": "1",
        "DISABLE_AUTOUPDATER": "1",
        **({} if retries is None else {"CLAUDE_CODE_MAX_RETRIES": str(retries)}),
    }


def codex_env(stub: StubServer, home: Path, retries: int | None = 0) -> dict[str, str]:
    """Environment that points Codex at `stub`: a CODEX_HOME whose config.toml names a provider on
    loopback (`retries`: Codex's request and stream retries; None: its defaults)."""
    codex_home = home / "codex"
    codex_home.mkdir(parents=True, exist_ok=True)
    (codex_home / "config.toml").write_text(
        f'model = "{CODEX_MODEL}"\n'
        'model_provider = "stub"\n\n'
        "[model_providers.stub]\n"
        'name = "orch test stub"\n'
        f'base_url = "{stub.url}/v1"\n'
        'env_key = "OPENAI_API_KEY"\n'
        'wire_api = "responses"\n'
        + (
            f"request_max_retries = {retries}\nstream_max_retries = {retries}\n"
            if retries is not None
            else ""
        )
    )
    return {"HOME": str(home), "CODEX_HOME": str(codex_home), "OPENAI_API_KEY": OPENAI_KEY}


def gemini_env(stub: StubServer, home: Path, retries: int | None = None) -> dict[str, str]:
    """Environment that points Gemini CLI at `stub`: a HOME whose .gemini/settings.json picks API-key auth.

    Without `security.auth.selectedType` headless Gemini CLI exits 41 ("Invalid
    auth method selected."); the model is named so that it does not route the
    prompt first; update checks and usage statistics are off (no traffic off
    the machine). Gemini CLI has no setting to turn its retries off
    (`general.maxAttempts`, `retries`, takes 1 to 10; 10 by default).
    """
    (home / ".gemini").mkdir(parents=True, exist_ok=True)
    (home / ".gemini" / "settings.json").write_text(
        json.dumps(
            {
                "security": {"auth": {"selectedType": "gemini-api-key"}},
                "model": {"name": GEMINI_MODEL},
                "general": {
                    "enableAutoUpdate": False,
                    "enableAutoUpdateNotification": False,
                    **({} if retries is None else {"maxAttempts": retries}),
                },
                "privacy": {"usageStatisticsEnabled": False},
            }
        )
    )
    return {"HOME": str(home), "GEMINI_API_KEY": GEMINI_KEY, "GOOGLE_GEMINI_BASE_URL": stub.url}


def path_with(cli: str) -> str:
    """PATH with the directory of `cli` first."""
    return f"{Path(cli).parent}{os.pathsep}{os.environ.get('PATH', '')}"
