"""What the journeys do on the page, written the way Streamlit's own e2e tests drive it.

See e2e_playwright/conftest.py (wait_for_app_run) and shared/dataframe_utils.py (click_on_cell,
get_open_cell_overlay) in github.com/streamlit/streamlit.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

from playwright.sync_api import Browser, Locator, Page, expect
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from playground.store import MODELS_DIR_ENV
from playground.workspace import WORKSPACES_DIR_ENV

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
RUN_TIMEOUT_MS = 180_000
"""A script run may include the first model load of the session (seconds, on a shared CPU)."""
ROW_PX = 35
"""glide-data-grid's row height in Streamlit, header included (as in Streamlit's e2e helpers)."""
VIEWPORT = {"width": 1400, "height": 1000}
SERVER_START_SECONDS = 90
STREAMLIT_ARGS = ["run", "app.py", "--server.headless", "true", "--server.address", "127.0.0.1",
                  "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"]


def server_env(models_dir: Path, workspaces_dir: Path) -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONUNBUFFERED": "1",
            MODELS_DIR_ENV: str(models_dir), WORKSPACES_DIR_ENV: str(workspaces_dir)}


def wait_for_app(page: Page, settle_ms: int = 300) -> None:
    """Wait until the websocket is up and the script has finished its run."""
    page.locator("[data-testid='stApp'][data-test-connection-state='CONNECTED']").wait_for(
        state="attached", timeout=60_000)
    page.wait_for_timeout(200)  # widgets debounce before they trigger a rerun
    page.locator("[data-testid='stApp'][data-test-script-state='notRunning']").wait_for(
        state="attached", timeout=RUN_TIMEOUT_MS)
    page.wait_for_timeout(settle_ms)


def new_page(browser: Browser, server_url: str, workspace: str) -> Page:
    """A new browser context (a new Streamlit session) on ``?w=workspace``, the app loaded; close its ``.context``."""
    context = browser.new_context(viewport=VIEWPORT, base_url=server_url, accept_downloads=True,
                                  permissions=["clipboard-read", "clipboard-write"])
    context.set_default_timeout(30_000)
    page = context.new_page()
    page.goto(f"{server_url}/?w={workspace}")
    wait_for_app(page)
    return page


def click_button(page: Page, name: str) -> None:
    page.get_by_role("button", name=name, exact=True).click()
    wait_for_app(page)


def open_expander(page: Page, title: str) -> Locator:
    expander = page.get_by_test_id("stExpander").filter(has_text=title)
    summary = expander.locator("summary")
    if expander.locator("details").get_attribute("open") is None:
        summary.click()
    return expander


def grid(page: Page) -> Locator:
    """The examples grid: the main area's first table (the sidebar lists the workspaces in one too)."""
    return page.get_by_test_id("stMain").get_by_test_id("stDataFrame").first


ROWS_JS = "rows => rows.map(r => [r.getAttribute('aria-rowindex'), [...r.querySelectorAll('td')].map(c => c.innerText)])"


def grid_rows(page: Page) -> list[tuple[str, str]]:
    """Every row of the examples grid, read from glide-data-grid's accessible table.

    That table holds only the rows in view, so scroll the grid from top to bottom (bounded)
    and collect rows by their ``aria-rowindex``; it ends scrolled back to the top.
    """
    seen: dict[int, tuple[str, str]] = {}
    table_rows = grid(page).locator("table tbody tr")
    # a new tab's first script run can still be drawing after the app reports "not running" (seen under load):
    # hover waits for the grid to be visible, as long as a script run may take
    grid(page).hover(timeout=RUN_TIMEOUT_MS)
    page.mouse.wheel(0, -100_000)
    if table_rows.count():  # an empty grid has no rows to wait for
        expect(table_rows.first).to_have_attribute("aria-rowindex", "2")  # scrolled to the top
    unchanged = 0
    for _ in range(100):
        page.wait_for_timeout(150)
        before = len(seen)
        for index, cells in table_rows.evaluate_all(ROWS_JS):  # one snapshot: rows come and go
            seen[int(index)] = tuple(cells[-3:-1])  # text and label (the description column is last)
        unchanged = unchanged + 1 if len(seen) == before else 0
        if unchanged == 3:  # scrolled three times and nothing new: this was the bottom
            break
        page.mouse.wheel(0, 5 * ROW_PX)
    page.mouse.wheel(0, -100_000)  # leave it as the user found it: rows from the top
    page.wait_for_timeout(200)
    return [seen[index] for index in sorted(seen)]


RESULT_CARD = ("[data-testid='stVerticalBlock']"
               ":has(> [data-testid='stElementContainer'] > [data-testid='stProgress'])")


def results(page: Page) -> list[dict]:
    """Each result card as shown: its input, the prediction line, the bars' texts and values."""
    expect(page.locator(RESULT_CARD).first).to_be_visible()  # the run that draws them may still be going
    cards = []
    for card in page.locator(RESULT_CARD).all():
        texts = [t.strip() for t in card.get_by_test_id("stMarkdownContainer").all_inner_texts()]
        bars = card.get_by_test_id("stProgress").all()
        cards.append({
            "input": texts[0],
            "prediction": texts[1],
            "bars": [bar.inner_text().strip() for bar in bars],
            "values": [int(bar.get_by_role("progressbar").get_attribute("aria-valuenow")) for bar in bars],
        })
    return cards


FILE_CHOOSER_TIMEOUT_MS = 15_000


def upload_to(page: Page, uploader: Locator, path: Path, tries: int = 3) -> None:
    """Through the uploader's button ("Upload", or "Add files" once a file is there) and the file chooser.

    A click that lands while the page is still drawing a run (seen once on a fresh tab, in a full CI run under
    load) can open no file dialog; so the app is let settle first and the click is tried again, a
    bounded number of times, before the miss is reported.
    """
    dropzone = uploader.get_by_test_id("stFileUploaderDropzone")
    button = dropzone.get_by_role("button", name=re.compile(r"^(Upload|Add files)$"))
    for attempt in range(1, tries + 1):
        wait_for_app(page, settle_ms=100)
        expect(button).to_be_enabled()  # a missing or disabled button fails here, as itself, and is not retried
        try:
            with page.expect_file_chooser(timeout=FILE_CHOOSER_TIMEOUT_MS) as chooser:
                button.click()
            break
        except PlaywrightTimeoutError:
            if attempt == tries:
                raise AssertionError(f"the uploader's button opened no file dialog in {tries} clicks "
                                     f"({FILE_CHOOSER_TIMEOUT_MS // 1000} s each)") from None
    chooser.value.set_files(str(path))
    expect(dropzone.get_by_test_id("stFileChip")).to_have_attribute("aria-label", re.compile("^" + re.escape(path.name)))
    wait_for_app(page)


def upload(page: Page, path: Path) -> None:
    """The Classify page's labelled-CSV uploader."""
    upload_to(page, open_expander(page, "Presets and CSV upload").get_by_test_id("stFileUploader"), path)


def model_box(page: Page) -> Locator:
    return page.get_by_role("combobox", name="Model", exact=True)


def pick_option(page: Page, box: Locator, option: str, tries: int = 3) -> None:
    """Open the select ``box`` and pick ``option``. A rerun that lands while the list is open redraws the box and
    closes its list (seen after switching pages and after a preset's click, on a slower CPU), so the box is opened
    again, a bounded number of times; a miss names the options the list showed."""
    target = page.get_by_role("option", name=option, exact=True)
    for _ in range(tries):
        wait_for_app(page)
        box.click()
        try:
            target.wait_for(state="visible", timeout=10_000)
        except PlaywrightTimeoutError:
            page.keyboard.press("Escape")
            continue
        target.click()
        wait_for_app(page)
        return
    shown = page.get_by_role("option").all_inner_texts()
    raise AssertionError(f"the select box offered no {option!r} in {tries} tries; its list showed {shown}")


def choose_model(page: Page, option: str) -> None:
    pick_option(page, model_box(page), option)


def inputs_box(page: Page) -> Locator:
    return page.get_by_role("textbox", name="One input per line")


BAR_TEXT = re.compile(r"^(?P<label>.+): (?P<pct>\d{1,3}\.\d)%$")


def check_cards(cards: list[dict], inputs, labels: set[str]) -> None:
    """Every input has a card with one bar per label, percentages shown and summing to ~100."""
    assert [card["input"] for card in cards] == list(inputs), cards
    for card in cards:
        parsed = [BAR_TEXT.match(text) for text in card["bars"]]
        assert all(parsed), card["bars"]
        assert {m["label"] for m in parsed} == labels, card
        percentages = [float(m["pct"]) for m in parsed]
        assert abs(sum(percentages) - 100) < 0.5, card
        for pct, value in zip(percentages, card["values"]):
            assert abs(pct - value) <= 1, card  # the bar's length is the percentage it prints
        best = max(parsed, key=lambda m: float(m["pct"]))
        assert card["prediction"].startswith(f"Prediction: {best['label']} · confidence {best['pct']}%"), card


def selected_cell(page: Page) -> tuple[int, int]:
    """(column, row) of the grid's selected cell, from the accessible table's ``glide-cell-C-R`` id."""
    cell = grid(page).locator("td[aria-selected='true']")
    expect(cell).to_have_count(1, timeout=5_000)
    _, column, row = cell.get_attribute("id").rsplit("-", 2)
    return int(column) - 1, int(row)  # glide counts the (hidden) row-marker column as 0


def edit_cell(page: Page, column: int, row: int, value: str) -> None:
    """Type ``value`` into a cell (0-based column and data row) as a keyboard user would.

    Click a visible cell of the text column, walk right to the column and down to the row with the
    arrow keys (so column widths and page or grid scrolling cannot make us hit the wrong cell),
    Enter opens glide's overlay editor, fill, Enter.
    """
    grid(page).click(position={"x": 200, "y": ROW_PX * 1.5})
    expect(grid(page).locator("td[aria-selected='true'][aria-colindex='1']")).to_have_count(1)
    for step in range(column):
        page.keyboard.press("ArrowRight")
        expect(grid(page).locator(f"td[aria-selected='true'][aria-colindex='{step + 2}']")).to_have_count(1)
    current = selected_cell(page)
    for _ in range(200):
        if current[1] == row:
            break
        page.keyboard.press("ArrowDown" if current[1] < row else "ArrowUp")
        wanted = (column, current[1] + (1 if current[1] < row else -1))
        expect(grid(page).locator(f"td#glide-cell-{wanted[0] + 1}-{wanted[1]}")).to_have_attribute(
            "aria-selected", "true", timeout=5_000)
        current = wanted
    assert selected_cell(page) == (column, row)
    page.keyboard.press("Enter")
    overlay = page.get_by_test_id("portal").locator(".gdg-clip-region")
    expect(overlay).to_be_visible()
    overlay.locator(".gdg-input").fill(value)
    page.keyboard.press("Enter")
    wait_for_app(page)


def expect_grid(page: Page, rows: list[tuple[str, str]], timeout_s: float = 15) -> None:
    """The grid draws after the script run ends: poll (bounded) until it shows ``rows``."""
    deadline = time.monotonic() + timeout_s
    shown = grid_rows(page)
    while shown != rows and time.monotonic() < deadline:
        page.wait_for_timeout(250)
        shown = grid_rows(page)
    assert shown == rows, f"the grid shows {shown}, expected {rows}"
