"""The real browser the tests (and the README screenshots) use: Debian's Chromium via Playwright.

Playwright's own browser download does not work everywhere (it needs its CDN), so the
tests drive the distribution's Chromium: ``apt-get install chromium``.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
LAUNCH_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


def chromium_path() -> str | None:
    """Debian's Chromium, or another ``chromium`` on PATH, or None."""
    if Path(CHROMIUM).exists():
        return CHROMIUM
    return shutil.which("chromium")


def why_no_browser() -> str | None:
    """Why browser tests cannot run here (what to install), or None when they can."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "needs Playwright: pip install playwright (the browser is Debian's chromium)"
    if chromium_path() is None:
        return f"needs Chromium at {CHROMIUM}: apt-get install chromium"
    return None


def launch(playwright):
    """A headless Chromium from a started ``sync_playwright()``."""
    return playwright.chromium.launch(executable_path=chromium_path(), headless=True, args=LAUNCH_ARGS)


@contextmanager
def started() -> Iterator:
    """A headless Chromium, started with Playwright and closed at the end (:func:`why_no_browser` first)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = launch(pw)
        try:
            yield browser
        finally:
            browser.close()


def browser_fixture() -> Iterator:
    """The body of a test module's browser fixture: a started Chromium, or the tests skipped saying what
    to install (``browser = pytest.fixture(scope="module", name="browser")(browser_fixture)``)."""
    import pytest

    reason = why_no_browser()
    if reason:
        pytest.skip(reason)
    with started() as browser:
        yield browser
