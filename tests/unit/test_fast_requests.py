"""The CLI's fast path builds its requests without msgspec (import time): each is a request of
the typed protocol, field for field, or orchd would refuse it (it forbids unknown fields)."""

from __future__ import annotations

import pytest

from orchctl import fast
from orchd import protocol as p


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (fast._request("Status", indent=2), p.Status(indent=2, id=1)),
        (fast._request("Status", indent=2, run="r-1"), p.Status(run="r-1", indent=2, id=1)),
        (
            fast._request("Status", run="r-1", indent=2, alone=True),
            p.Status(run="r-1", indent=2, alone=True, id=1),
        ),
        (
            fast._request("Submit", plan="{}", source="p.json", base_dir="/w"),
            p.Submit(plan="{}", source="p.json", base_dir="/w", id=1),
        ),
        (
            fast._request("Events", run="r-1", kinds=["RunFinished"], wait=30.0, after=5, limit=1),
            p.Events(run="r-1", kinds=["RunFinished"], wait=30.0, after=5, limit=1, id=1),
        ),
    ],
)
def test_the_fast_path_speaks_the_typed_protocol(body: bytes, expected: p.Request) -> None:
    assert p.decode_request(body) == expected
