"""Browser fixtures: one ``streamlit run app.py`` per session, a fresh Chromium context per test.

Why a real browser: AppTest cannot drive the file chooser, the data editor's canvas grid, the
copy button or downloads, and those are the paths users take. The server is a subprocess on
127.0.0.1 and a free port, stopped in the fixture's teardown (so also when a test fails).
Chromium is Debian's (``apt-get install -y chromium``), never ``playwright install``.

``SCREENSHOTS=1 .venv/bin/python -m pytest -m browser`` also refreshes ``docs/screenshots/``.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from browser_helpers import SERVER_START_SECONDS, STREAMLIT_ARGS, VIEWPORT, new_page, server_env
from live_server import free_port, running
from playwright.sync_api import Browser, Page, expect, sync_playwright

from playground.presets import DEFAULT_PRESET, load_preset
from playground.workspace import Workspace, create_workspace

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOT_DIR = ROOT / "docs" / "screenshots"
CHROMIUM = os.environ.get("PLAYGROUND_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]

expect.set_options(timeout=30_000)


@pytest.fixture(scope="session")
def browser_workspaces(tmp_path_factory) -> Path:
    """The session server's workspaces folder (each journey opens its own workspace in it)."""
    return tmp_path_factory.mktemp("browser-workspaces")


@pytest.fixture(scope="session")
def server_url(tmp_path_factory, browser_workspaces) -> Iterator[str]:
    """``streamlit run app.py`` from the project root; its log is printed if it never comes up."""
    port = free_port()
    log_path = tmp_path_factory.mktemp("streamlit") / "server.log"
    models_dir = tmp_path_factory.mktemp("models")  # journeys train into a throwaway folder
    command = [sys.executable, "-m", "streamlit", *STREAMLIT_ARGS, "--server.port", str(port)]
    url = f"http://127.0.0.1:{port}"
    with running(command, health_url=url + "/_stcore/health", cwd=ROOT, env=server_env(models_dir, browser_workspaces),
                 log_path=log_path, timeout=SERVER_START_SECONDS):
        yield url


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).is_file():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's Chromium with `apt-get install -y chromium` "
                    "(never `playwright install`); scripts/test.sh does this when it can")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def workspace_name(request) -> str:
    """The journey's own workspace (``?w=``), named after the test: a new one, from the seed preset."""
    return re.sub(r"[^A-Za-z0-9_-]", "-", request.node.name.removeprefix("test_"))[:64]


@pytest.fixture
def page(browser: Browser, server_url: str, browser_workspaces: Path, workspace_name: str) -> Iterator[Page]:
    """A new context per test is a new Streamlit session on its own workspace: each journey starts from the seed preset."""
    create_workspace(workspace_name, Workspace.from_preset(load_preset(DEFAULT_PRESET)), browser_workspaces)
    page = new_page(browser, server_url, workspace_name)
    try:
        yield page
    finally:
        page.context.close()


@pytest.fixture
def screenshot():
    """``screenshot(page, "name")`` writes docs/screenshots/name.png when SCREENSHOTS=1.

    Streamlit scrolls inside its main area, so a "full page" shot is only the viewport: the
    viewport is stretched to the content's height for the shot, then put back.
    """
    def take(page: Page, name: str) -> None:
        if os.environ.get("SCREENSHOTS") != "1":
            return
        SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
        height = page.evaluate("document.querySelector('[data-testid=stMain]').scrollHeight")
        page.set_viewport_size({"width": VIEWPORT["width"], "height": max(VIEWPORT["height"], min(height, 4000))})
        grids = page.get_by_test_id("stDataFrame").filter(visible=True)
        for index in range(grids.count()):  # show grids from their first row
            grids.nth(index).hover()
            page.mouse.wheel(0, -100_000)
        page.mouse.move(0, 0)
        page.wait_for_timeout(800)  # reflow, bars and fonts settle
        page.screenshot(path=str(SCREENSHOT_DIR / f"{name}.png"))
        page.set_viewport_size(VIEWPORT)
        page.wait_for_timeout(300)
    return take
