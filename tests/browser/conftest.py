"""Fixtures of the browser journeys: Debian's chromium driven by Playwright against pytest-django's live server.

The browser is the system's ``chromium`` (never a downloaded build): without it every test here is skipped
with the reason. One browser process serves the whole module run; each test gets a fresh context (cookies,
storage) whose locale is zh-CN, so its Accept-Language header selects zh-hans exactly as a Chinese
visitor's browser does (LocaleMiddleware). Every step's screenshot goes to ``$BROWSER_SCREENSHOTS``
(default ``.data/browser-screenshots/``), one folder per test.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from django.conf import settings as django_settings
from django.utils import translation
from playwright.sync_api import expect, sync_playwright

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Download, Page

CHROMIUM = shutil.which("chromium")
NO_CHROMIUM = "chromium is not installed (apt-get install chromium fonts-noto-cjk): the browser journeys need it"

#: How long one expectation or action may wait for the page (the machine may be busy; nothing here sleeps).
TIMEOUT_MS = 15_000


def zh(message: str, context: str | None = None) -> str:
    """``message`` as the zh-hans catalogue says it: the tests look for what a Chinese visitor reads."""
    with translation.override("zh-hans"):
        text = translation.pgettext(context, message) if context else translation.gettext(message)
    assert text != message or not re.search("[A-Za-z]", message), f"no zh-hans translation for {message!r}"
    return text


def screenshot_root() -> Path:
    root = Path(
        os.environ.get("BROWSER_SCREENSHOTS") or Path(django_settings.BASE_DIR) / ".data" / "browser-screenshots"
    )
    root.mkdir(parents=True, exist_ok=True)
    return root


class Steps:
    """One journey's numbered full-page screenshots (``shot("catalogue")`` → ``01-catalogue.png``) and downloads."""

    def __init__(self, page: Page, folder: Path) -> None:
        self.page = page
        self.folder = folder
        self.count = 0

    def shot(self, name: str) -> Path:
        self.count += 1
        path = self.folder / f"{self.count:02d}-{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path

    def keep(self, download: Download) -> Path:
        """Save a download next to the screenshots under the name the server gave it."""
        path = self.folder / download.suggested_filename
        download.save_as(path)
        return path


@pytest.fixture(autouse=True)
def _plain_http(settings):
    """The live server speaks plain HTTP on localhost: no HTTPS redirect, cookies without the Secure flag.

    The production defaults (DJANGO_DEBUG=0) would redirect every request to https:// and keep the session
    and CSRF cookies off plain HTTP; the journeys test the pages, not the TLS set-up (tests/security does).
    """
    settings.SECURE_SSL_REDIRECT = False
    settings.SESSION_COOKIE_SECURE = False
    settings.CSRF_COOKIE_SECURE = False
    settings.LANGUAGE_COOKIE_SECURE = False
    settings.SECURE_HSTS_SECONDS = 0


@pytest.fixture(scope="module")
def browser(django_db_setup) -> Iterator[Browser]:
    """chromium for one test module, started after the test database exists.

    Playwright's sync API keeps an asyncio loop running in the test's thread while it is started, and
    Django's async-safety check then refuses every ORM call of the test (arranging rows, the services
    called between browser steps, the flush after a transactional test). Those calls are plain
    synchronous calls in the test's own thread, so the check is switched off while the browser runs and
    restored after the module; the browser is per module so nothing else in a run sees the switch.
    """
    if CHROMIUM is None:
        pytest.skip(NO_CHROMIUM)
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
            yield browser
            browser.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def page(browser, live_server) -> Iterator[Page]:
    """A zh-CN page on the live server that fails the test on a script error or a CSP violation."""
    context = browser.new_context(
        base_url=live_server.url,
        locale="zh-CN",
        timezone_id="Asia/Shanghai",
        viewport={"width": 1280, "height": 900},
        accept_downloads=True,
    )
    context.set_default_timeout(TIMEOUT_MS)
    expect.set_options(timeout=TIMEOUT_MS)
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(f"script error: {error}"))
    page.on(
        "console",
        lambda message: (
            problems.append(f"console: {message.text}")
            if message.type == "error" and "Content Security Policy" in message.text
            else None
        ),
    )
    yield page
    context.close()
    assert not problems, "the browser reported problems:\n" + "\n".join(problems)


@pytest.fixture
def steps(page, request) -> Steps:
    folder = screenshot_root() / request.node.name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return Steps(page, folder)
