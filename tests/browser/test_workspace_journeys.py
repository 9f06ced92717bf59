"""Workspaces in headless Chromium: typed work survives a reload, opens from its URL in another tab, tells a tab
when another one saved, and survives the server being killed in the middle of a save.

The page's workspace is read from disk only to know when a save has landed (the saver writes 0.4 s
after a change); what the tests check is what the page shows.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from playground.presets import load_preset
from playground.workspace import WORKSPACE_FILE

from browser_helpers import (ROOT, SERVER_START_SECONDS, STREAMLIT_ARGS, check_cards, click_button, edit_cell,
                             expect_grid, inputs_box, new_page, results, server_env, wait_for_app)
from live_server import free_port, running

pytestmark = pytest.mark.browser

SEED = load_preset("review-sentiment")
SAVE_SECONDS = 15


def saved_inputs(folder: Path, name: str, expected: str) -> None:
    """Wait (bounded) until the workspace on disk holds ``expected`` as its inputs."""
    path = folder / name / WORKSPACE_FILE
    deadline = time.monotonic() + SAVE_SECONDS
    while time.monotonic() < deadline:
        try:
            if json.loads(path.read_text(encoding="utf-8"))["inputs"] == expected:
                return
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.2)
    pytest.fail(f"the workspace {name!r} was not saved with inputs {expected!r} within {SAVE_SECONDS} s")


def type_inputs(page: Page, text: str) -> None:
    inputs_box(page).fill(text)
    inputs_box(page).press("Control+Enter")
    wait_for_app(page)


def test_typed_work_survives_a_reload_and_opens_from_its_url_in_another_tab(
        page: Page, browser: Browser, server_url: str, browser_workspaces: Path, workspace_name: str):
    rows = [(ex.text, ex.label) for ex in SEED.examples]
    rows[0] = ("Typed into the grid: it came early and works", "positive")
    edit_cell(page, 0, 0, rows[0][0])
    inputs = ["First typed input, it broke in a week", "Second typed input, lovely and fast"]
    type_inputs(page, "\n".join(inputs))
    click_button(page, "Classify")
    before = results(page)
    check_cards(before, inputs, {"negative", "positive"})
    saved_inputs(browser_workspaces, workspace_name, "\n".join(inputs))
    expect(page).to_have_url(f"{server_url}/?w={workspace_name}")

    page.reload()  # a stray F5
    wait_for_app(page)
    expect_grid(page, rows)
    expect(inputs_box(page)).to_have_value("\n".join(inputs))
    assert results(page) == before

    other = new_page(browser, server_url, workspace_name)  # the copied link, in another tab or another person's
    try:
        expect_grid(other, rows)
        expect(inputs_box(other)).to_have_value("\n".join(inputs))
        assert results(other) == before
        type_inputs(other, "Changed in the other tab")
        saved_inputs(browser_workspaces, workspace_name, "Changed in the other tab")
        # the first tab is told (its status checks every 2 s) and offered a reload
        warning = page.get_by_test_id("stSidebar").get_by_text("was changed in another tab or window")
        expect(warning).to_be_visible(timeout=20_000)
        expect(inputs_box(page)).to_have_value("\n".join(inputs))  # nothing replaced under the user's hands
        click_button(page, "Reload the saved workspace")
        expect(inputs_box(page)).to_have_value("Changed in the other tab")
        expect(warning).to_have_count(0)
    finally:
        other.context.close()


KILL_DURING_SAVE = """
import os, signal, sys
import playground._files as files
_write_temp = files.write_temp
def _die_during_save(path, text):
    temp = _write_temp(path, text)  # the new state is in the temp file, not yet renamed over the old one
    if "KILL THE SERVER" in text:
        os.kill(os.getpid(), signal.SIGKILL)
    return temp
files.write_temp = _die_during_save
from streamlit.web.cli import main
sys.argv = ["streamlit", *sys.argv[1:]]
main()
"""


def test_killing_the_server_during_a_save_keeps_the_previous_state(browser: Browser, tmp_path: Path):
    folder, models = tmp_path / "workspaces", tmp_path / "models"
    env = server_env(models, folder)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-c", KILL_DURING_SAVE, *STREAMLIT_ARGS, "--server.port", str(port)]
    with running(command, health_url=url + "/_stcore/health", cwd=ROOT, env=env, log_path=tmp_path / "first.log",
                 timeout=SERVER_START_SECONDS) as server:
        page = new_page(browser, url, "crash")
        try:
            edit_cell(page, 1, 0, "negative")
            type_inputs(page, "Saved before the kill")
            saved_inputs(folder, "crash", "Saved before the kill")
            before = (folder / "crash" / WORKSPACE_FILE).read_bytes()
            inputs_box(page).fill("KILL THE SERVER while this is saved")
            inputs_box(page).press("Control+Enter")
            assert server.wait(timeout=60) == -signal.SIGKILL
        finally:
            page.context.close()
    leftovers = [p.name for p in (folder / "crash").iterdir() if p.name != WORKSPACE_FILE]
    assert len(leftovers) == 1 and ".tmp-" in leftovers[0]  # killed between writing the new state and the rename
    assert (folder / "crash" / WORKSPACE_FILE).read_bytes() == before

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "streamlit", *STREAMLIT_ARGS, "--server.port", str(port)]
    with running(command, health_url=url + "/_stcore/health", cwd=ROOT, env=env, log_path=tmp_path / "second.log",
                 timeout=SERVER_START_SECONDS):
        page = new_page(browser, url, "crash")
        try:
            expect(inputs_box(page)).to_have_value("Saved before the kill")
            rows = [(ex.text, ex.label) for ex in SEED.examples]
            rows[0] = (rows[0][0], "negative")
            expect_grid(page, rows)
            expect(page.get_by_test_id("stSidebar").get_by_test_id("stAlert")).to_have_count(0)  # nothing damaged
        finally:
            page.context.close()
