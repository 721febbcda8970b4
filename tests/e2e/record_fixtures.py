"""Record what the real CLIs print against the stubs, as unit-test fixtures.

    npm ci --prefix tests/e2e && python -m tests.e2e.record_fixtures

writes tests/fixtures/agents/{claude,codex}/SCENARIO.jsonl (and gemini/SCENARIO.txt,
Gemini CLI's stream among its warnings on stderr): the output of the
argv the adapter builds, run in a scratch directory, with paths, ports and
the dummy keys replaced by fixed placeholders (no secrets, stable diffs).
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

from orchd.agents import ADAPTERS
from orchd.plan import TaskSpec
from tests.e2e import clis
from tests.e2e.stubs.anthropic import AnthropicStub
from tests.e2e.stubs.base import Fail, Reply, Step, StubServer, WriteFile
from tests.e2e.stubs.google import GoogleStub
from tests.e2e.stubs.openai import OpenAIStub

OUT = Path(__file__).resolve().parent.parent / "fixtures" / "agents"
RESET = 1_900_000_000  # a fixed future instant for usage-limit resets (2030-03-17)
MISSING_SESSION = "0f0f0f0f-0000-4000-8000-000000000000"

CLAUDE: dict[str, list[Step]] = {
    "success": [Reply("The answer is 42.", tokens_in=1200, tokens_out=80)],
    "edit": [WriteFile("notes.txt", "written by the agent\n"), Reply("I wrote notes.txt.")],
    "rate_limited": [
        Fail(
            429,
            "rate_limit_error",
            "Number of request tokens has exceeded your per-minute rate limit",
            {"retry-after": "30"},
        )
    ],
    "auth": [Fail(401, "authentication_error", "invalid x-api-key")],
    "overloaded": [Fail(529, "overloaded_error", "Overloaded")],
    "prompt_too_long": [
        Fail(400, "invalid_request_error", "prompt is too long: 250000 tokens > 200000 maximum")
    ],
    "billing": [
        Fail(
            400,
            "invalid_request_error",
            "Your credit balance is too low to access the Anthropic API.",
        )
    ],
    "resume_missing": [Reply("unused")],
}
# a Claude subscription (OAuth) hits its 5-hour window: a rate_limit_event with the reset time
CLAUDE_USAGE_LIMIT = [
    Fail(
        429,
        "rate_limit_error",
        "rate limited",
        {
            "anthropic-ratelimit-unified-status": "rejected",
            "anthropic-ratelimit-unified-reset": str(RESET),
            "anthropic-ratelimit-unified-representative-claim": "five_hour",
        },
    )
]

CODEX: dict[str, list[Step]] = {
    "success": [Reply("The answer is 42.", tokens_in=1200, tokens_out=80)],
    "edit": [WriteFile("notes.txt", "written by the agent\n"), Reply("I wrote notes.txt.")],
    "rate_limited": [Fail(429, "rate_limit_exceeded", "Rate limit reached for requests")],
    "usage_limit": [
        Fail(
            429,
            "usage_limit_reached",
            "The usage limit has been reached",
            {},
            {"plan_type": "plus", "resets_at": RESET},
        )
    ],
    "quota": [Fail(429, "insufficient_quota", "You exceeded your current quota.")],
    "auth": [Fail(401, "invalid_api_key", "Incorrect API key provided.")],
    "server_error": [
        Fail(500, "server_error", "The server had an error while processing your request.")
    ],
    "context_too_long": [
        Fail(400, "context_length_exceeded", "Your input exceeds the context window.")
    ],
    "resume_missing": [Reply("unused")],
}
# the other Gemini fixtures were recorded by hand (see tests/fixtures/agents/gemini/README.md)
GEMINI: dict[str, list[Step]] = {
    "edit": [
        WriteFile("src/core.py", "def double(x: int) -> int:\n    return 2 * x\n"),
        Reply("Done: added type hints to src/core.py.", tokens_in=1200, tokens_out=80),
    ],
}


def scrub(text: str, work: Path, home: Path, tmp: Path, stub: StubServer) -> str:
    """`text` with the scratch paths, the stub's port and the dummy keys replaced by fixed
    placeholders (no secrets, stable diffs)."""
    for old, new in [
        (str(work), "/work/repo"),
        (re.sub(r"[^A-Za-z0-9]", "-", str(work)), "-work-repo"),
        (str(home), "/home/user"),
        (str(tmp), "/tmp/rec"),
        (stub.url, "http://127.0.0.1:8080"),
        (stub.url.split("//")[1], "127.0.0.1:8080"),
        (clis.CLAUDE_KEY, "sk-ant-dummy"),
        (clis.OPENAI_KEY, "sk-dummy"),
        (clis.GEMINI_KEY, "AIza-dummy"),
    ]:
        text = text.replace(old, new)
    return text


def record(
    agent: str,
    scenario: str,
    steps: list[Step],
    stub_class: type[StubServer],
    env_for: Callable[[StubServer, Path], dict[str, str]],
    extra_env: dict[str, str] | None = None,
    resume: str | None = None,
    suffix: str = ".jsonl",
) -> None:
    """Run one scenario and write its scrubbed output."""
    cli = clis.require_cli(agent)
    with tempfile.TemporaryDirectory(prefix="orch-rec-") as tmp, stub_class() as stub:
        stub.script("[task]", *steps)
        work, home = Path(tmp) / "work", Path(tmp) / "home"
        work.mkdir()
        env = {"PATH": clis.path_with(cli), **env_for(stub, home), **(extra_env or {})}
        task = TaskSpec(id="t", agent=agent, cwd=str(work), prompt="[task] Do the thing.")
        launch = ADAPTERS[agent].launch(task, 1, resume)
        done = subprocess.run(
            launch.argv,
            cwd=work,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=120,
        )
        text = scrub(done.stdout, work, home, Path(tmp), stub)
        path = OUT / agent / f"{scenario}{suffix}"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(
            f"{path.relative_to(OUT.parent.parent.parent)}: exit {done.returncode}, {len(text.splitlines())} lines"
        )


def main() -> None:
    """Record every scenario of the CLIs."""
    for scenario, steps in CLAUDE.items():
        record(
            "claude",
            scenario,
            steps,
            AnthropicStub,
            clis.claude_env,
            resume=MISSING_SESSION if scenario == "resume_missing" else None,
        )
    record(
        "claude",
        "usage_limit",
        CLAUDE_USAGE_LIMIT,
        AnthropicStub,
        lambda stub, home: {
            k: v for k, v in clis.claude_env(stub, home).items() if k != "ANTHROPIC_API_KEY"
        },
        {"CLAUDE_CODE_OAUTH_TOKEN": "sk-ant-oat01-dummy"},
    )
    for scenario, steps in CODEX.items():
        record(
            "codex",
            scenario,
            steps,
            OpenAIStub,
            clis.codex_env,
            resume=MISSING_SESSION if scenario == "resume_missing" else None,
        )
    for scenario, steps in GEMINI.items():
        record("gemini", scenario, steps, GoogleStub, clis.gemini_env, suffix=".txt")
    print("done")


if __name__ == "__main__":
    main()
