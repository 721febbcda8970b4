"""Each benchmark part runs on a tiny size, so the benchmarks cannot rot. No timing is asserted."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.conftest import ROOT


def test_dispatch_smoke(tmp_path) -> None:
    if shutil.which("parallel") is None and not os.environ.get("CI"):
        pytest.skip("GNU parallel is not installed (apt-get install parallel)")
    out = tmp_path / "dispatch.json"
    result = subprocess.run([sys.executable, "-m", "bench", "dispatch", "--smoke", "--output", str(out)],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    figures = json.loads(out.read_text())
    text = json.dumps(figures)
    for key in ("orch", "parallel", "xargs"):
        assert f'"{key}"' in text, figures
    assert "skipped" not in text or not os.environ.get("CI"), figures
