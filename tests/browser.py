"""Headless Debian chromium through Playwright, for tests of the pages herd makes (skips when chromium is absent)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]


@contextmanager
def chromium() -> Iterator[Any]:
    """Headless chromium (a Playwright Browser); one `new_context()` per simulated person keeps cookies apart."""
    path = shutil.which("chromium")
    if path is None:
        pytest.skip("chromium is not installed (make test installs it with apt-get)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=path, args=ARGS)
        try:
            yield browser
        finally:
            browser.close()


def watch_errors(page: Any) -> list[str]:
    """The page's console errors and uncaught exceptions, collected as they happen."""
    errors: list[str] = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    return errors


@contextmanager
def browser_page(width: int = 1200, height: int = 900) -> Iterator[tuple[Any, list[str]]]:
    """(page, console errors) in a fresh headless chromium."""
    with chromium() as browser:
        page = browser.new_page(viewport={"width": width, "height": height})
        yield page, watch_errors(page)
