"""Exponential backoff with optional full jitter."""

from __future__ import annotations

import random

from orchd.spec import BackoffSpec


def delay(spec: BackoffSpec, retry: int, rand: random.Random | None = None) -> float:
    """Seconds to wait before retry number `retry` (1-based).

    min(max, initial × factor^(retry-1)); with full jitter, uniform in [0, that].
    """
    try:
        grown = spec.initial * spec.factor ** max(0, retry - 1)
    except (
        OverflowError
    ):  # factor^n past any float (2.0 ** 1100): far past the ceiling, unless initial is 0
        grown = spec.max if spec.initial else 0.0
    ceiling = min(spec.max, grown)
    if spec.jitter == "full":
        return (rand or random).uniform(0.0, ceiling)
    return ceiling
