"""Debian's chromium, driven by Playwright for Python (no browser download): for the dashboard's
tests and its screenshot (docs/screenshots.py)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

CHROMIUM = "/usr/bin/chromium"
# root needs --no-sandbox; the rest keep a machine without network quiet
ARGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


def missing() -> str | None:
    """Why a browser test cannot run here, or None."""
    if shutil.which(CHROMIUM) is None:
        return f"needs Debian's chromium at {CHROMIUM} (apt-get install chromium; .ci/run does)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "needs playwright (pip install -e '.[test]')"
    return None


def skip_unless_ci() -> Any:
    """The mark for a browser test: skipped where chromium is missing, failed under CI=true."""
    import pytest

    why = missing()
    return pytest.mark.skipif(
        why is not None and not os.environ.get("CI"), reason=why or "chromium is here"
    )


@contextmanager
def chromium(width: int = 1280, height: int = 800) -> Iterator[Any]:
    """A new page in a headless chromium, closed afterwards."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield browser.new_page(viewport={"width": width, "height": height})
        finally:
            browser.close()
