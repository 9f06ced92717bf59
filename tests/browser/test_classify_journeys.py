"""The Classify page in headless Chromium: presets, CSV upload, the examples grid, export.

Each test is one user journey and asserts what the page shows, not session state.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from playground.data import read_examples_csv
from playground.embeddings import BASE_MODELS
from playground.engine import classify
from playground.explain import classify as explained
from playground.export import csv_export, python_snippet
from playground.presets import load_preset
from playground.validation import Example

from browser_helpers import (FIXTURES, check_cards, choose_model, click_button, edit_cell, expect_grid, grid, grid_rows,
                             inputs_box, model_box, open_expander, pick_option, results, upload, wait_for_app)

pytestmark = pytest.mark.browser

SEED = load_preset("review-sentiment")
GOOD_CSV = FIXTURES / "browser_examples.csv"
BAD_CSV = FIXTURES / "browser_malformed.csv"


def rows_of(examples) -> list[tuple[str, str]]:
    return [(ex.text, ex.label) for ex in examples]


def choose_preset(page: Page, title: str) -> None:
    expander = open_expander(page, "Presets and CSV upload")
    pick_option(page, expander.get_by_test_id("stSelectbox"), title)


def test_seed_preset_classifies_both_reviews_negative(page: Page, screenshot, small_encoder):
    """Journey 1: the e-commerce preset is there at start; Classify shows `negative` twice with bars."""
    expect_grid(page, rows_of(SEED.examples))
    expect(inputs_box(page)).to_have_value("\n".join(SEED.inputs))
    # Nothing above the title (a bare string in a page script is printed by Streamlit's magic).
    expect(page.get_by_test_id("stMain").get_by_test_id("stMarkdownContainer").first).to_have_text("Classify")
    click_button(page, "Classify")
    expect(page.get_by_role("heading", name="Results")).to_be_visible()
    cards = results(page)
    check_cards(cards, SEED.inputs, {"negative", "positive"})
    for card in cards:
        assert card["prediction"].startswith("Prediction: negative · confidence ")
    # The page shows what the engine computes for the same examples and inputs.
    engine = classify(list(SEED.inputs), list(SEED.examples), "small")
    assert [card["bars"] for card in cards] == [
        [f"{label}: {p:.1%}" for label, p in result.labels.items()] for result in engine]
    expect(page.get_by_test_id("stAlert")).to_have_count(0)
    screenshot(page, "classify-results")


def test_why_tints_each_word_as_the_library_weighs_it(page: Page, screenshot, small_encoder):
    """Journey: tick "Why?", Classify: each answer shows its input word by word, tinted green toward the
    label and red away, with the weights the library computes, a legend and the three nearest examples."""
    expect_grid(page, rows_of(SEED.examples))
    page.get_by_text("Why? Show the words behind each answer", exact=False).click()
    wait_for_app(page)
    click_button(page, "Classify")
    expect(page.get_by_text("Why?", exact=True)).to_have_count(len(SEED.inputs))
    library = explained(list(SEED.inputs), list(SEED.examples), "small", explain=True)
    tinted = page.locator("span[title]")
    expect(tinted).to_have_count(sum(len(r.explanation.words) for r in library))
    shown = [(span.inner_text(), span.get_attribute("title"), span.get_attribute("style")) for span in tinted.all()]
    expected = [w for r in library for w in r.explanation.words]
    assert [word for word, _, _ in shown] == [w.word for w in expected]
    for (word, title, style), w in zip(shown, expected):
        assert float(title.split()[0]) == pytest.approx(w.weight, abs=2e-3), word
        assert ("22, 163, 74" if w.weight >= 0 else "220, 38, 38") in style  # green toward, red away
    assert "(estimated)" in " ".join(title for _, title, _ in shown) or all(w.exact for w in expected)
    expect(page.get_by_text("Green words push toward").first).to_be_visible()
    nearest = page.get_by_test_id("stDataFrame").filter(has_text="nearest example")
    expect(nearest).to_have_count(len(SEED.inputs))
    for result in library:
        assert result.explanation.strongest(1)[0].weight > 0 and len(result.explanation.nearest) == 3
    screenshot(page, "classify-why")


def test_load_preset_button_switches_and_restores_the_seed(page: Page):
    """Journey 1 via the Presets expander: another preset, then back to e-commerce, then Classify."""
    news = load_preset("news-topic")
    choose_preset(page, news.title)
    click_button(page, "Load preset")
    expect(page.get_by_text(f"Loaded preset {news.title}.")).to_be_visible()
    expect_grid(page, rows_of(news.examples))
    expect(inputs_box(page)).to_have_value("\n".join(news.inputs))

    choose_preset(page, SEED.title)
    click_button(page, "Load preset")
    expect(page.get_by_text(f"Loaded preset {SEED.title}.")).to_be_visible()
    expect_grid(page, rows_of(SEED.examples))
    expect(inputs_box(page)).to_have_value("\n".join(SEED.inputs))
    click_button(page, "Classify")
    cards = results(page)
    check_cards(cards, SEED.inputs, {"negative", "positive"})
    assert all(card["prediction"].startswith("Prediction: negative ·") for card in cards)


def test_uploaded_csv_fills_the_grid_and_is_what_classify_uses(page: Page):
    """Journey 2: a semicolon CSV with header and BOM replaces the grid; the labels are the file's."""
    expected = read_examples_csv(GOOD_CSV).examples
    assert GOOD_CSV.read_bytes().startswith(b"\xef\xbb\xbftext;label\n")
    upload(page, GOOD_CSV)
    expect(page.get_by_text(f"Loaded {len(expected)} examples from {GOOD_CSV.name}.")).to_be_visible()
    expect_grid(page, rows_of(expected))
    expect(page.get_by_text("damaged: 3 · late: 2 · 5 examples")).to_be_visible()
    click_button(page, "Classify")
    cards = results(page)
    check_cards(cards, SEED.inputs, {"damaged", "late"})
    assert cards[0]["prediction"].startswith("Prediction: damaged ·")  # "broken when it arrived"


def test_malformed_csv_names_the_row_and_keeps_the_grid(page: Page):
    """Journey 3: a bad file is refused with its row number; the grid keeps the previous upload."""
    upload(page, GOOD_CSV)
    before = rows_of(read_examples_csv(GOOD_CSV).examples)
    expect_grid(page, before)
    upload(page, BAD_CSV)
    error = page.get_by_test_id("stAlertContentError")
    expect(error).to_contain_text(f"{BAD_CSV.name} was not loaded; the grid is unchanged.")
    expect(error).to_contain_text("row 3: 1 field, expected 2 (text, label)")
    expect_grid(page, before)
    expect(page.get_by_text("damaged: 3 · late: 2 · 5 examples")).to_be_visible()


def test_grid_edit_and_added_row_change_the_results(page: Page):
    """Journey 4: relabel a cell, add a row through the toolbar's "+", and Classify sees both."""
    edited_row = 5  # "The package was damaged": negative → broken
    expect_grid(page, rows_of(SEED.examples))
    assert SEED.examples[edited_row] == Example("The package was damaged", "negative")
    edit_cell(page, 1, edited_row, "broken")
    expect(page.get_by_text("Label broken has 1 example; add at least 1 more.")).to_be_visible()

    grid(page).hover()
    page.get_by_role("button", name="Add row").click()
    wait_for_app(page)
    new_row = len(SEED.examples)
    edit_cell(page, 0, new_row, "The screen was shattered in the box")
    edit_cell(page, 1, new_row, "broken")

    expected = rows_of(SEED.examples)
    expected[edited_row] = ("The package was damaged", "broken")
    expected.append(("The screen was shattered in the box", "broken"))
    expect_grid(page, expected)
    expect(page.get_by_text("positive: 5 · broken: 2 · negative: 4 · 11 examples")).to_be_visible()
    expect(page.get_by_text("Label broken has")).to_have_count(0)

    click_button(page, "Classify")
    cards = results(page)
    check_cards(cards, SEED.inputs, {"negative", "positive", "broken"})


def test_export_tabs_copy_button_and_csv_download(page: Page, screenshot, tmp_path: Path):
    """Journey 5: every export tab shows the current examples; copy and download give the real thing."""
    upload(page, GOOD_CSV)
    examples = read_examples_csv(GOOD_CSV).examples
    expect_grid(page, rows_of(examples))
    inputs = ["My lamp came with a cracked shade", "Still no sign of my order"]
    inputs_box(page).fill("\n".join(inputs))
    inputs_box(page).press("Control+Enter")
    wait_for_app(page)

    expander = open_expander(page, "Export code")
    tabs = expander.get_by_role("tab")
    expect(tabs).to_have_text(["Python", "JSON + curl", "Cohere SDK", "CSV"])
    for index in range(4):
        tabs.nth(index).click()
        panel = expander.get_by_role("tabpanel").filter(visible=True)
        expect(panel).to_be_visible()
        if index < 3:  # the inputs reach the code with the rerun that Ctrl+Enter starts (late on a busy machine)
            expect(panel).to_contain_text(inputs[-1])
        shown = "\n".join(panel.get_by_test_id("stCode").all_inner_texts())
        for ex in examples:
            assert ex.text in shown and ex.label in shown, (tabs.nth(index).inner_text(), ex)
        for text in inputs if index < 3 else []:
            assert text in shown

    tabs.nth(0).click()
    code = expander.get_by_role("tabpanel").filter(visible=True).get_by_test_id("stCode")
    code.hover()
    code.get_by_role("button", name="Copy to clipboard").click()
    copied = page.evaluate("navigator.clipboard.readText()")
    assert copied.rstrip("\n") == python_snippet(inputs, examples, "small").rstrip("\n")
    screenshot(page, "export-panel")

    tabs.nth(3).click()
    with page.expect_download() as download_info:
        expander.get_by_role("button", name="Download examples.csv").click()
    download = download_info.value
    assert download.suggested_filename == "examples.csv"
    saved = tmp_path / "examples.csv"
    download.save_as(saved)
    assert saved.read_text(encoding="utf-8") == csv_export(examples)
    assert rows_of(read_examples_csv(saved).examples) == grid_rows(page)


def test_grid_and_inputs_survive_a_visit_to_another_page(page: Page):
    """Going to the Models page and back keeps the edited grid and the typed inputs."""
    expect_grid(page, rows_of(SEED.examples))
    edit_cell(page, 1, 0, "glowing")
    inputs_box(page).fill("A brand new input")
    inputs_box(page).press("Control+Enter")
    wait_for_app(page)
    choose_model(page, BASE_MODELS["large"].title)
    edited = rows_of(SEED.examples)
    edited[0] = (edited[0][0], "glowing")
    expect_grid(page, edited)

    page.get_by_test_id("stSidebarNav").get_by_role("link", name="Models", exact=True).click()
    expect(page.get_by_role("heading", name="Models", level=1)).to_be_visible()
    wait_for_app(page)
    page.get_by_test_id("stSidebarNav").get_by_role("link", name="Classify", exact=True).click()
    expect(page.get_by_role("heading", name="Classify", level=1)).to_be_visible()
    wait_for_app(page)
    expect(inputs_box(page)).to_have_value("A brand new input")
    expect(model_box(page)).to_have_value(BASE_MODELS["large"].title)
    expect_grid(page, edited)
