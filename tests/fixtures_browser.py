"""Fixtures for the browser tests: Debian's chromium driven by Playwright, one tab on the
session's ComfyUI (tests/fixtures_comfyui.py) per test module."""
from __future__ import annotations

from collections.abc import Iterator

import pytest

from browser_support import VIEWPORT, ComfyPage, launch_chromium


@pytest.fixture(scope="module")
def browser() -> Iterator:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("Playwright is missing: it is in requirements-dev.txt (scripts/bootstrap.sh installs it).",
                    pytrace=False)
    with sync_playwright() as playwright:
        chromium = launch_chromium(playwright)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def ui(browser, comfyui) -> Iterator[ComfyPage]:
    """A tab on the session's ComfyUI (key in its environment, strict emulator)."""
    context = browser.new_context(viewport=VIEWPORT)
    page = ComfyPage(context.new_page(), comfyui.server).open()
    yield page
    context.close()
