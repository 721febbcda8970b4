"""Each benchmark part runs on a tiny size, so the benchmarks cannot rot. No timing is asserted."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

# part -> (does it need GNU parallel for a reference, keys its JSON must hold)
PARTS = {
    "dispatch": (True, ("results", "ratios")),
    "refill": (True, ("results", "method")),
    "eventlog": (False, ("appends", "replay", "ratios")),
    "restart": (False, ("orch", "reference", "ratios")),
    "cli": (False, ("median_s", "imports", "ratios")),
    "sessions": (True, ("orch", "parallel", "ratios")),
    "large": (True, ("results", "growth")),
    "providers": (False, ("rows", "targets")),  # the Claude CLI of tests/e2e (skipped without it)
}


def _bench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "bench", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _figures(out: Path, part: str) -> dict:
    path = out / f"{part}-smoke.json"
    assert path.exists(), f"{part} wrote no {path.name}"
    figures = json.loads(path.read_text())
    assert figures["bench"] == part and figures["params"]["smoke"] is True
    assert figures["table"] and figures["machine"]["cpus"]
    return figures


@pytest.mark.parametrize("part", list(PARTS))
def test_part_smoke(part: str, tmp_path: Path) -> None:
    needs_parallel, keys = PARTS[part]
    if needs_parallel and shutil.which("parallel") is None and not os.environ.get("CI"):
        pytest.skip("GNU parallel is not installed (apt-get install parallel)")
    result = _bench(part, "--smoke", "--output", str(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    figures = _figures(tmp_path, part)
    for key in keys:
        assert key in figures, (key, figures)
    text = json.dumps(figures)
    assert '"failed"' not in text, figures
    assert '"skipped"' not in text or not os.environ.get("CI"), figures
    if part == "sessions":  # the run is cancelled at the end, and none of its agents may remain
        assert figures["orch"]["agents_left"] == 0 and figures["orch"]["cancelled"] == 20, figures[
            "orch"
        ]


def test_all_runs_the_parts_it_is_given(tmp_path: Path) -> None:
    result = _bench("all", "--smoke", "--only", "eventlog,restart", "--output", str(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert {p.name for p in tmp_path.iterdir()} == {"eventlog-smoke.json", "restart-smoke.json"}
