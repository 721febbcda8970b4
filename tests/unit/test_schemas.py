"""schemas/ is generated from the types, and what `--json` prints validates against it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from orchd import schemas


@pytest.mark.parametrize("name", sorted(schemas.SCHEMAS))
def test_schema_file_is_current(name: str) -> None:
    path = schemas.SCHEMA_DIR / name
    assert path.exists(), f"schemas/{name} is missing: run `python -m orchd.schemas`"
    assert path.read_text() == schemas.generate()[name], (
        f"schemas/{name} is stale: run `python -m orchd.schemas`"
    )


def test_plan_schema_rejects_unknown_fields() -> None:
    plan = json.loads((schemas.SCHEMA_DIR / "plan.schema.json").read_text())
    raw_plan = plan["$defs"]["RawPlan"]
    assert raw_plan["additionalProperties"] is False
    assert "tasks" in raw_plan["properties"]


def _msgspec_range() -> str:
    """The msgspec requirement pyproject.toml states (the range orch is tested with)."""
    project = tomllib.loads((schemas.SCHEMA_DIR.parent / "pyproject.toml").read_text())["project"]
    (spec,) = [d for d in project["dependencies"] if d.startswith("msgspec")]
    return spec


@pytest.mark.parametrize("end", ["oldest", "newest"])
def test_schemas_are_the_same_with_every_msgspec_in_range(end: str, tmp_path: Path) -> None:
    """Both ends of pyproject's msgspec range write the files in schemas/ byte for byte."""
    spec = _msgspec_range()
    if end == "oldest":
        spec = "msgspec==" + spec.split(">=")[1].split(",")[0]
    target = tmp_path / "site"
    pip = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), spec],
        capture_output=True,
        text=True,
        timeout=240,
    )
    if pip.returncode != 0:
        if os.environ.get("CI") == "true":
            pytest.fail(f"pip could not install {spec}: {pip.stderr[-2000:]}")
        pytest.skip(f"pip could not install {spec} (no package index?)")
    probe = (
        "import json, msgspec, sys; from orchd import schemas; "
        "print(json.dumps({'version': msgspec.__version__, 'files': schemas.generate()}))"
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(target), str(schemas.SCHEMA_DIR.parent)]),
    }
    out = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    generated = json.loads(out.stdout)
    assert generated["version"] in (spec.split("==")[1] if "==" in spec else generated["version"])
    for name, text in generated["files"].items():
        assert (schemas.SCHEMA_DIR / name).read_text() == text, (
            f"msgspec {generated['version']} writes schemas/{name} differently"
        )
