"""schemas/ is generated from the types, and what `--json` prints validates against it."""

from __future__ import annotations

import json

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
