"""Plan fuzzing: thousands of random and mutated TOML/JSON plans through the loader.

Random structures built from the plan's own field names, structural and
textual mutations of real plans (examples/ and the tests'), deep nesting, huge
strings, wrong types, unicode, NUL bytes and invalid UTF-8. The loader must
return a plan or raise a `PlanError` that names the source (and the line, for a
TOML error that has one); never another exception, never an env value echoed.
The seed is fixed (the suite is reproducible); `ORCH_FUZZ_SEED=N` picks another and
`ORCH_FUZZ_SEED=random` a fresh one each run; the seed is printed either way.
"""

from __future__ import annotations

import json
import math
import os
import random
import re
import sys
import time
import tomllib
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest

from orchd.errors import PlanError
from orchd.plan import RunSpec, load_plan
from tests.unit.test_plan import BASIC

ROOT = Path(__file__).resolve().parents[2]
CASES = 3000
SOURCE = "fuzz.plan"
ENV_MARKER = "envvalue-7f3a"  # every env value carries it; no error may echo it
PLAN_KEYS = ["name", "concurrency", "workdir", "isolation", "defaults", "tasks"]
TASK_KEYS = [
    "id",
    "prompt",
    "command",
    "for_each",
    "agent",
    "max_retries",
    "timeout",
    "backoff",
    "agent_args",
    "env",
    "resume",
    "model",
]
BACKOFF_KEYS = ["initial", "factor", "max", "jitter"]
GOOD_VALUES: dict[str, list[Any]] = {
    "name": ["x", "ünï", ""],
    "concurrency": [1, 4, 0, -1],
    "workdir": [".", "src", "/", "nowhere", "~", "\x00"],
    "isolation": ["none", "worktree", "both"],
    "id": ["a", "b-{stem}", "Bad Id", "a" * 200],
    "prompt": ["do it", "{path} {braces}", "", "x" * 100],
    "command": [["true"], [], ["echo", "{path}"]],
    "for_each": ["src/*.py", "**/*", "/etc/*", "../*", "[", "*.nothing"],
    "agent": ["command", "claude", "gpt", ""],
    "max_retries": [0, 3, -1, 2**63],
    "resume": [True, False],
    "timeout": ["90s", "1h30m", "soon", 7, -1, 1e308, "30d"],
    "initial": ["2s", 0, "x"],
    "factor": [2.0, 0.5, 1e308, float("nan"), float("inf")],
    "max": ["5m", -3],
    "jitter": ["full", "none", "some"],
    "model": ["m", None],
    "agent_args": [["--x"], [1]],
    "env": [{"A": ENV_MARKER}, {"OPENAI_API_KEY": ENV_MARKER}, {"": ENV_MARKER}],
}


def fuzz_seed(default: int = 20261125) -> int:
    """The fuzzers' seed: ORCH_FUZZ_SEED (a number, or `random`), else `default`."""
    value = os.environ.get("ORCH_FUZZ_SEED", "")
    if value == "random":
        return random.SystemRandom().randrange(1, 1 << 32)
    return int(value) if value else default


def _seeds() -> list[str]:
    """Valid plans to mutate: the examples and the tests' own."""
    # the other examples name real directories (test_plan checks they load); their shapes are in BASIC
    texts = [(ROOT / "examples" / "quickstart.toml").read_text(), BASIC]
    texts.append(
        json.dumps(
            {
                "name": "j",
                "defaults": {"agent": "claude", "env": {"A": ENV_MARKER}},
                "tasks": [
                    {"id": "hints-{stem}", "for_each": "src/*.py", "prompt": "Hints for {path}."},
                    {"id": "lint", "agent": "command", "command": ["ruff", "{x}"]},
                ],
            }
        )
    )
    return texts


def _junk(rng: random.Random, depth: int = 0) -> Any:
    """A random value: usually the wrong type, sometimes huge, deep or odd unicode."""
    kind = rng.randrange(12 if depth < 4 else 8)
    if kind == 0:
        return rng.choice([True, False])
    if kind == 1:
        return rng.choice([0, -1, 1, 2**63 - 1, -(2**63), rng.randint(-(10**6), 10**6)])
    if kind == 2:
        return rng.choice([0.5, -0.0, 1e308, float("inf"), float("nan"), rng.uniform(-1e9, 1e9)])
    if kind in (3, 4):
        return "".join(
            chr(
                rng.choice(
                    [rng.randint(0, 0x7F), rng.randint(0x80, 0xD7FF), rng.randint(0xE000, 0x10FFFF)]
                )
            )
            for _ in range(rng.randint(0, 24))
        )
    if kind == 5:
        huge = (
            1_100_000 if rng.random() < 0.03 else 10_000
        )  # over MAX_PROMPT_BYTES, now and then (slow in tomllib)
        return rng.choice(["", "\x00", "a\x00b", "x" * huge, "{path}", "..", "~root"])
    if kind in (6, 7):
        return rng.choice(list(GOOD_VALUES.values()))[0]
    if kind in (8, 9):
        return [_junk(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    keys = PLAN_KEYS + TASK_KEYS + BACKOFF_KEYS + ["zzz", ""]
    return {rng.choice(keys): _junk(rng, depth + 1) for _ in range(rng.randint(0, 5))}


def _random_plan(rng: random.Random) -> dict[str, Any]:
    """A plan-shaped document with random (mostly plausible) values."""

    def fields(keys: list[str]) -> dict[str, Any]:
        out = {}
        for key in rng.sample(keys, rng.randint(0, len(keys))):
            pool = GOOD_VALUES.get(key)
            out[key] = rng.choice(pool) if pool and rng.random() < 0.7 else _junk(rng, 1)
        return out

    plan = fields(PLAN_KEYS[:4])
    plan["defaults"] = (
        {**fields(TASK_KEYS[4:]), "backoff": fields(BACKOFF_KEYS)}
        if rng.random() < 0.7
        else _junk(rng)
    )
    plan["tasks"] = (
        [fields(TASK_KEYS) for _ in range(rng.randint(0, 4))] if rng.random() < 0.9 else _junk(rng)
    )
    return plan


def _mutate_tree(rng: random.Random, doc: Any) -> Any:
    """Replace, delete or add one entry somewhere in a parsed plan."""
    if isinstance(doc, dict) and doc and rng.random() < 0.7:
        key = rng.choice(list(doc))
        if rng.random() < 0.6:
            return {**doc, key: _mutate_tree(rng, doc[key])}
        if rng.random() < 0.5:
            return {k: v for k, v in doc.items() if k != key}
        return {**doc, rng.choice(TASK_KEYS + ["promt", "zz"]): _junk(rng)}
    if isinstance(doc, list) and doc and rng.random() < 0.7:
        i = rng.randrange(len(doc))
        return doc[:i] + [_mutate_tree(rng, doc[i])] + doc[i + 1 :] * rng.randint(0, 2)
    return _junk(rng)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return (
            "nan"
            if math.isnan(value)
            else ("inf" if value > 0 else "-inf")
            if math.isinf(value)
            else repr(value)
        )
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(
            value, ensure_ascii=False
        )  # JSON string escapes are TOML basic-string escapes
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value if v is not None) + "]"
    if isinstance(value, dict):
        return (
            "{"
            + ", ".join(
                f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items() if v is not None
            )
            + "}"
        )
    raise TypeError(value)


def _toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


def to_toml(doc: Any) -> str:
    """A small TOML writer: top-level scalars, then [defaults], then [[tasks]] tables (inline below that)."""
    if not isinstance(doc, dict):
        return f"x = {_toml_value(doc)}\n"
    lines = [
        f"{_toml_key(k)} = {_toml_value(v)}"
        for k, v in doc.items()
        if v is not None
        and not (k == "defaults" and isinstance(v, dict))
        and not (k == "tasks" and isinstance(v, list) and all(isinstance(t, dict) for t in v) and v)
    ]
    if isinstance(doc.get("defaults"), dict):
        lines += ["", "[defaults]"] + [
            f"{_toml_key(k)} = {_toml_value(v)}"
            for k, v in doc["defaults"].items()
            if v is not None
        ]
    tasks = doc.get("tasks")
    if isinstance(tasks, list) and tasks and all(isinstance(t, dict) for t in tasks):
        for task in tasks:
            lines += ["", "[[tasks]]"] + [
                f"{_toml_key(k)} = {_toml_value(v)}" for k, v in task.items() if v is not None
            ]
    return "\n".join(lines) + "\n"


def _emit(rng: random.Random, doc: Any) -> tuple[str, str]:
    if rng.random() < 0.5:
        return json.dumps(doc, ensure_ascii=rng.random() < 0.5), "json"
    return to_toml(doc), "toml"


def _mutate_text(rng: random.Random, text: str) -> bytes:
    data = bytearray(text.encode())
    for _ in range(rng.randint(1, 10)):
        i = rng.randrange(len(data) + 1)
        op = rng.randrange(4)
        if op == 0 and i < len(data):
            data[i] = rng.randrange(256)  # invalid UTF-8 and NUL bytes too
        elif op == 1 and i < len(data):
            del data[i : i + rng.randint(1, 20)]
        elif op == 2:
            data[i:i] = rng.choice(
                [
                    b"[",
                    b"]",
                    b"{",
                    b"}",
                    b'"',
                    b"=",
                    b"\n",
                    b",",
                    b"\x00",
                    b"\xff",
                    b"\\u0000",
                    b"[[tasks]]\n",
                    b'id = "z"\n',
                    b"\xc3",
                    "é".encode(),
                    b"'''",
                ]
            )
        else:
            j = rng.randrange(len(data) + 1)
            data[i:i] = data[min(i, j) : max(i, j)][:200]  # repeat a slice
    return bytes(data)


def _deep(rng: random.Random) -> tuple[str | bytes, str | None]:
    n = rng.choice([100, 900, 1100, 5000, 50_000])
    return rng.choice(
        [
            ("[" * n + "]" * n, "json"),
            ('{"tasks": ' + "[" * n + "]" * n + "}", None),
            ('{"defaults": ' + '{"env": ' * n + "{}" + "}" * n + "}", "json"),
            ("tasks = " + "[" * n + "]" * n + "\n", "toml"),
            ("defaults = " + "{a = " * n + "1" + "}" * n + "\n", "toml"),
            (
                "[" + ".".join(["a"] * min(n, 5000)) + "]\n",
                "toml",
            ),  # tomllib is quadratic in dotted keys
        ]
    )


Case = Callable[[random.Random, list[str]], tuple[str | bytes, str | None]]
GENERATORS: dict[str, Case] = {
    "random_structure": lambda rng, seeds: _emit(rng, _random_plan(rng)),
    "random_value": lambda rng, seeds: _emit(rng, _junk(rng)),
    "tree_mutation": lambda rng, seeds: _emit(rng, _mutate_tree(rng, _parsed(rng.choice(seeds)))),
    "text_mutation": lambda rng, seeds: (
        _mutate_text(rng, rng.choice(seeds)),
        rng.choice([None, "toml", "json"]),
    ),
    "deep_nesting": lambda rng, seeds: _deep(rng),
}
WEIGHTS = {"deep_nesting": 0.05}


def _parsed(text: str) -> Any:
    return json.loads(text) if text.lstrip().startswith("{") else tomllib.loads(text)


def _check(message: str, text: str | bytes, fmt: str | None) -> None:
    assert message.startswith(SOURCE), message
    assert ENV_MARKER not in message, message
    assert len(message) < 1000, message[:2000]  # values echoed are cut short
    line = re.match(rf"{re.escape(SOURCE)}:(\d+):", message)
    if line:  # a line it names exists
        assert 1 <= int(line.group(1)) <= max(1, len(text.splitlines())), message


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A workdir with a few files for `for_each` to match."""
    (tmp_path / "src").mkdir()
    for name in ("a.py", "b.py", "c.txt"):
        (tmp_path / "src" / name).write_text("x\n")
    return tmp_path


def test_fuzzed_plans_raise_only_plan_errors(workdir: Path) -> None:
    seed = fuzz_seed()
    print(f"plan fuzz seed {seed} (ORCH_FUZZ_SEED={seed} replays it)", file=sys.stderr)
    rng = random.Random(seed)
    seeds = _seeds()
    for text in seeds:  # the seeds themselves are valid plans
        load_plan(
            text, source=SOURCE, base_dir=ROOT / "examples" if "quickstart" in text else workdir
        )
    kinds = list(GENERATORS)
    weights = [WEIGHTS.get(k, 1.0) for k in kinds]
    counts: Counter[str] = Counter()
    outcomes: Counter[str] = Counter()
    failures: list[str] = []
    started = time.monotonic()
    for n in range(CASES):
        kind = rng.choices(kinds, weights)[0]
        text, fmt = GENERATORS[kind](rng, seeds)
        counts[kind] += 1
        try:
            spec = load_plan(text, source=SOURCE, base_dir=workdir, fmt=fmt)
            outcomes["valid"] += 1
            # what the journal writes must read back the same (NaN would be written as null)
            assert msgspec.json.decode(msgspec.json.encode(spec), type=RunSpec) == spec, text[:300]
        except PlanError as exc:
            outcomes["plan_error"] += 1
            _check(str(exc), text, fmt)
        except Exception as exc:
            failures.append(
                f"case {n} ({kind}, fmt={fmt}): {type(exc).__name__}: {exc!s:.200} <- {text[:300]!r}"
            )
    elapsed = time.monotonic() - started
    print(
        f"fuzzed {CASES} plans in {elapsed:.1f}s: {dict(counts)}; outcomes {dict(outcomes)}; "
        f"other exceptions {len(failures)}",
        file=sys.stderr,
    )
    assert not failures, (
        f"seed {seed}: {len(failures)} cases raised something else than PlanError:\n"
        + "\n".join(failures[:15])
    )


@pytest.mark.parametrize(
    "text, fmt, needle",
    [
        (
            '{"workdir": "a\\u0000b", "tasks": [{"id": "a", "prompt": "p"}]}',
            "json",
            "workdir: invalid path",
        ),
        (
            '{"workdir": "' + "x" * 5000 + '", "tasks": [{"id": "a", "prompt": "p"}]}',
            "json",
            "workdir: invalid path",
        ),
        (
            'workdir = "~no-such-user-x/y"\n[[tasks]]\nid = "a"\nprompt = "p"\n',
            "toml",
            "workdir: invalid path",
        ),
        (
            '[defaults]\nbackoff = { factor = nan }\n[[tasks]]\nid = "a"\nprompt = "p"\n',
            "toml",
            "factor: must be at least 1",
        ),
        (
            '[defaults]\nbackoff = { factor = inf }\n[[tasks]]\nid = "a"\nprompt = "p"\n',
            "toml",
            "factor: must be at least 1",
        ),
        (
            '{"defaults": {"backoff": {"factor": NaN}}, "tasks": [{"id": "a", "prompt": "p"}]}',
            "json",
            "factor: must be",
        ),
        (
            '[defaults]\nagent = "command"\n[[tasks]]\nid = "a"\ncommand = ["x"\n',
            None,
            "invalid TOML",
        ),
    ],
)
def test_what_the_fuzzer_found(workdir: Path, text: str, fmt: str | None, needle: str) -> None:
    """Each of these raised something else than a PlanError, or was accepted and poisoned the log."""
    with pytest.raises(PlanError, match=re.escape(needle)):
        load_plan(text, source=SOURCE, base_dir=workdir, fmt=fmt)


def test_toml_starting_with_a_table_is_not_sniffed_as_json(workdir: Path) -> None:
    spec = load_plan(
        '[defaults]\nagent = "command"\n[[tasks]]\nid = "a"\ncommand = ["x"]\n', base_dir=workdir
    )
    assert spec.tasks[0].command == ["x"]
