"""What the browser tests share: finding Chromium, skipping (or, in CI, failing) without one.

The tests drive Debian's Chromium with Playwright (`executable_path`): Playwright's own browser
download is not used. Set STABLETRAIN_CHROMIUM to use another Chromium or Chrome binary.
"""

from __future__ import annotations

import os
import shutil

import pytest

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
INSTALL_HINT = "install it with `apt-get install chromium` (Debian) and `make setup` for Playwright"


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def chromium_path() -> str | None:
    override = os.environ.get("STABLETRAIN_CHROMIUM")
    if override:
        return override if os.path.exists(override) else None
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


def why_no_browser() -> str | None:
    """None when the browser tests can run; otherwise the reason they cannot."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the Python package playwright is not installed"
    if chromium_path() is None:
        return f"no Chromium found (looked for {', '.join(CHROMIUM_NAMES)} on PATH and $STABLETRAIN_CHROMIUM)"
    return None


def require_browser() -> str:
    """The Chromium to use; skip the test with the reason when there is none, fail in CI."""
    reason = why_no_browser()
    if reason is None:
        return chromium_path()
    message = f"browser tests skipped: {reason}; {INSTALL_HINT}"
    if in_ci():
        pytest.fail(f"CI=true and the browser tests cannot run: {reason}; {INSTALL_HINT}", pytrace=False)
    pytest.skip(message)


def launch(playwright, executable: str):
    return playwright.chromium.launch(
        executable_path=executable, headless=True,
        args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--allow-file-access-from-files"])


# Fixtures shared by the browser test modules (import them there by name).

@pytest.fixture(scope="module")
def chromium():
    return require_browser()


@pytest.fixture(scope="module")
def browser(chromium):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = launch(p, chromium)
        yield b
        b.close()


class PageLog:
    """Console errors, page errors and failed requests of one page."""

    def __init__(self, page) -> None:
        self.errors: list[str] = []
        self.failed: list[str] = []
        page.on("console", lambda msg: msg.type == "error" and self.errors.append(f"console: {msg.text}"))
        page.on("pageerror", lambda exc: self.errors.append(f"page error: {exc}"))
        page.on("requestfailed", lambda req: self.failed.append(f"{req.url} ({req.failure})"))
        page.on("response", lambda res: res.status >= 400 and self.failed.append(f"{res.url} (HTTP {res.status})"))
