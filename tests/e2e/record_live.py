"""Record what the real CLIs do, with their own retries on, against stubs that answer as the APIs do.

    npm ci --prefix tests/e2e && python -m tests.e2e.record_live [AGENT[:CASE]] ...

For each agent and case (a 401, a 403, a 429 with and without Retry-After, a
usage limit, an overload, a 500, a 503, a slow answer, a success), runs the argv
orch's adapter builds, as users run it (no retry settings changed), and writes:

- tests/fixtures/agents/AGENT/live/CASE.txt: what it printed (stdout and stderr, as
  orch's log keeps them), scrubbed like record_fixtures' recordings;
- tests/fixtures/agents/live.json: per case, the CLI's version, its exit code, how
  long it ran, and each model request it made (seconds after the start, and the
  HTTP status it was answered with). docs/providers.md is written from these.

Cases run a few at a time: most of their time is the CLIs' own backoff.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from orchd.agents import ADAPTERS
from orchd.plan import TaskSpec
from tests.e2e import clis
from tests.e2e.record_fixtures import OUT, RESET, scrub
from tests.e2e.stubs.anthropic import AnthropicStub, unified_headers
from tests.e2e.stubs.base import Fail, Reply, Slow, Step, StubServer
from tests.e2e.stubs.google import GoogleStub
from tests.e2e.stubs.openai import OpenAIStub

SUMMARY = OUT / "live.json"
LIMIT = 600.0  # seconds a case may run before it is killed (a CLI that would retry for ever)
AT_ONCE = 4  # cases run at once
SOON = 25.0  # seconds until the reset of a usage limit that a CLI may wait out


@dataclass(frozen=True)
class Case:
    """One way the API answers: `steps(stub, started)` gives the script (the last step repeats)."""

    name: str
    steps: Callable[[StubServer, float], list[Step]]
    env: dict[str, str] = field(default_factory=dict)  # more environment (or "" to unset)


def persistent(answer: Callable[[StubServer], Fail]) -> Callable[[StubServer, float], list[Step]]:
    """The same error for every request."""
    return lambda stub, started: [answer(stub)]


OK = Reply("The answer is 42.", tokens_in=1200, tokens_out=80)
COMMON = [
    Case("success", lambda stub, started: [OK]),
    Case("slow", lambda stub, started: [Slow(30.0, OK)]),
    Case("auth_401", persistent(lambda stub: stub.unauthorized)),
    Case("forbidden_403", persistent(lambda stub: stub.forbidden)),
    Case("rate_limited", persistent(lambda stub: stub.rate_limited)),
    Case("retry_after", persistent(lambda stub: stub.too_many(5))),
    Case("retry_after_then_ok", lambda stub, started: [stub.too_many(5), OK]),
    Case("retry_after_long", persistent(lambda stub: stub.too_many(120))),
    Case("overloaded", persistent(lambda stub: stub.overloaded)),
    Case("server_error_500", persistent(lambda stub: stub.server_error)),
    Case("unavailable_503", persistent(lambda stub: stub.unavailable)),
    Case("usage_limit", persistent(lambda stub: stub.usage_limit(RESET))),
    Case("usage_limit_soon", lambda stub, started: [stub.usage_limit(started + SOON), OK]),
]
SUBSCRIPTION = {"ANTHROPIC_API_KEY": "", "CLAUDE_CODE_OAUTH_TOKEN": "sk-ant-oat01-dummy"}
CASES: dict[str, list[Case]] = {
    "claude": [
        *(case for case in COMMON if not case.name.startswith("usage_limit")),
        # a Claude subscription's usage windows come with an OAuth token, not an API key
        Case("usage_limit", persistent(lambda stub: stub.usage_limit(RESET)), SUBSCRIPTION),
        Case(
            "usage_limit_soon",
            lambda stub, started: [stub.usage_limit(started + SOON), OK],
            SUBSCRIPTION,
        ),
        Case(
            "success_near_limit",
            lambda stub, started: [
                Reply("The answer is 42.", 1200, 80, unified_headers("allowed_warning", RESET))
            ],
            SUBSCRIPTION,
        ),
        Case(
            "no_retry_429",
            persistent(
                lambda stub: Fail(
                    429,
                    "rate_limit_error",
                    "rate limited",
                    {**stub.too_many(5).headers, "x-should-retry": "false"},
                )
            ),
        ),
    ],
    "codex": [*COMMON, Case("quota", persistent(lambda stub: OpenAIStub.quota))],
    "gemini": [
        *COMMON,
        Case("retry_in_long", persistent(lambda stub: stub.too_many(3600))),
        Case("daily_quota", persistent(lambda stub: GoogleStub.daily_quota)),
        Case("no_quota", persistent(lambda stub: GoogleStub.final_rate_limit)),
    ],
}
STUBS: dict[str, type[StubServer]] = {
    "claude": AnthropicStub,
    "codex": OpenAIStub,
    "gemini": GoogleStub,
}
ENVS: dict[str, Callable[[StubServer, Path], dict[str, str]]] = {
    "claude": lambda stub, home: clis.claude_env(stub, home, retries=None),
    "codex": lambda stub, home: clis.codex_env(stub, home, retries=None),
    "gemini": clis.gemini_env,
}


def version(agent: str) -> str:
    """The CLI's version, as it says it."""
    cli = clis.require_cli(agent)
    done = subprocess.run([cli, "--version"], capture_output=True, text=True, timeout=60)
    return done.stdout.strip().splitlines()[-1] if done.stdout.strip() else "?"


def record(agent: str, case: Case, cli_version: str) -> dict:
    """Run one case; write its output; what the summary keeps of it."""
    cli = clis.require_cli(agent)
    with tempfile.TemporaryDirectory(prefix="orch-live-") as tmp, STUBS[agent]() as stub:
        started = time.time()
        stub.script("[task]", *case.steps(stub, started))
        work, home = Path(tmp) / "work", Path(tmp) / "home"
        work.mkdir()
        env = {"PATH": clis.path_with(cli), **ENVS[agent](stub, home), **case.env}
        env = {k: v for k, v in env.items() if v != ""}
        task = TaskSpec(id="t", agent=agent, cwd=str(work), prompt="[task] Do the thing.")
        launch = ADAPTERS[agent].launch(task, 1, None)
        process = subprocess.Popen(
            launch.argv,
            cwd=work,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Gemini CLI relaunches itself: kill its whole group
        )
        killer = threading.Timer(LIMIT, lambda: os.killpg(process.pid, signal.SIGKILL))
        killer.start()
        output, _ = process.communicate()
        killer.cancel()
        seconds = time.time() - started
        text = scrub(output.decode("utf-8", "replace"), work, home, Path(tmp), stub)
        path = OUT / agent / "live" / f"{case.name}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        requests = [
            [round(r.at - started, 2), r.answer.status if isinstance(r.answer, Fail) else 200]
            for r in stub.model_requests()
        ]
        print(
            f"{agent}:{case.name}: exit {process.returncode} after {seconds:.1f}s, "
            f"{len(requests)} model requests",
            flush=True,
        )
        return {
            "version": cli_version,
            "exit": process.returncode,
            "killed": process.returncode == -signal.SIGKILL,
            "seconds": round(seconds, 1),
            "requests": requests,
        }


def main(selection: list[str]) -> None:
    """Record the selected cases (AGENT or AGENT:CASE; all of them by default) into the summary."""
    wanted = [
        (agent, case)
        for agent, cases in CASES.items()
        for case in cases
        if not selection or agent in selection or f"{agent}:{case.name}" in selection
    ]
    versions = {agent: version(agent) for agent in {a for a, _ in wanted}}
    summary = json.loads(SUMMARY.read_text()) if SUMMARY.exists() else {}
    with ThreadPoolExecutor(AT_ONCE) as pool:
        done = {
            (agent, case.name): pool.submit(record, agent, case, versions[agent])
            for agent, case in wanted
        }
        for (agent, name), future in done.items():
            summary.setdefault(agent, {})[name] = future.result()
    SUMMARY.write_text(dumps(summary))


def dumps(summary: dict[str, dict[str, dict]]) -> str:
    """The summary as JSON, one case a line (readable diffs)."""
    agents = []
    for agent in sorted(summary):
        cases = [
            f"  {json.dumps(name)}: {json.dumps(summary[agent][name], sort_keys=True)}"
            for name in sorted(summary[agent])
        ]
        agents.append(f" {json.dumps(agent)}: {{\n" + ",\n".join(cases) + "\n }")
    return "{\n" + ",\n".join(agents) + "\n}\n"


if __name__ == "__main__":
    main(sys.argv[1:])
