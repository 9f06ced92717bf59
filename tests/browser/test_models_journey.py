"""Custom models in headless Chromium: train on the Models page, then classify with it."""

from __future__ import annotations

import re
import time

import pytest
from playwright.sync_api import Page, expect

from browser_helpers import (FIXTURES, check_cards, choose_model, click_button, expect_grid, inputs_box, open_expander,
                             results, upload_to, wait_for_app)

from playground.embeddings import BASE_MODELS
from playground.presets import load_preset
from playground.training import fold_steps

pytestmark = pytest.mark.browser

TRAIN_CSV = FIXTURES / "browser_train.csv"
MODEL = "browser-support"
TRAIN_SECONDS = 600
TUNING_STEPS, FOLDS = 4, 2
ELAPSED_TEXT = re.compile(r"^(\d+) s\b")
TUNING_TEXT = re.compile(r"tuning the encoder on all 40 examples, step (\d+)/(\d+)$")
FOLD_TEXT = re.compile(rf"scoring on held-out examples: {FOLDS} folds, each tuned without its fold, step (\d+)/(\d+)$")


def go_to(page: Page, title: str) -> None:
    page.get_by_test_id("stSidebarNav").get_by_role("link", name=title, exact=True).click()
    expect(page.get_by_role("heading", name=title, level=1)).to_be_visible()
    wait_for_app(page)


def watch_training(page: Page) -> list[str]:
    """Poll (bounded) the progress bar's text until the success or error message shows."""
    seen: list[str] = []
    done = page.get_by_test_id("stAlertContentSuccess").or_(page.get_by_test_id("stAlertContentError"))
    deadline = time.monotonic() + TRAIN_SECONDS
    while time.monotonic() < deadline:
        texts = page.get_by_test_id("stProgress").all_inner_texts()
        seen += [t.strip() for t in texts if not seen or t.strip() != seen[-1]]
        if done.count():
            return seen
        page.wait_for_timeout(200)
    pytest.fail(f"training did not finish within {TRAIN_SECONDS}s; progress seen: {seen}")


def test_train_custom_model_then_classify_with_it(page: Page, screenshot):
    """Journey 6: upload a training CSV, train (small settings), watch the bar, pick the model, classify."""
    go_to(page, "Models")
    form = page.get_by_test_id("stForm")
    upload_to(page, form.get_by_test_id("stFileUploader").filter(has_text="Training data"), TRAIN_CSV)
    form.get_by_role("textbox", name="Model name").fill(MODEL)
    open_expander(page, "Advanced settings")
    form.get_by_role("spinbutton", name=re.compile(r"^Tuning steps")).fill(str(TUNING_STEPS))
    form.get_by_role("spinbutton", name=re.compile(r"^Cross-validation folds")).fill(str(FOLDS))
    form.get_by_role("button", name="Train", exact=True).click()

    started = time.monotonic()
    seen = watch_training(page)
    print(f"training took {time.monotonic() - started:.1f}s in the browser; progress seen: {seen}")
    expect(page.get_by_test_id("stAlertContentSuccess")).to_have_text(
        f"Model {MODEL} is saved; pick it on the Classify page.")
    scores = page.get_by_text(re.compile(rf"^Scores cross-validated on your 40 examples \({FOLDS} folds;"))
    expect(scores.first).to_be_visible()
    elapsed = [int(m.group(1)) for m in map(ELAPSED_TEXT.match, seen) if m]
    steps = [tuple(map(int, m.groups())) for m in map(TUNING_TEXT.search, seen) if m]
    folds = [tuple(map(int, m.groups())) for m in map(FOLD_TEXT.search, seen) if m]
    assert seen and (seen[0] == "Starting…" or elapsed), seen  # a bar was shown while training ran
    assert elapsed == sorted(elapsed), seen  # the clock only moves forward
    assert [s for s, _ in steps] == sorted(s for s, _ in steps), seen  # tuning steps only move forward
    assert all(total == TUNING_STEPS for _, total in steps), seen
    assert [s for s, _ in folds] == sorted(s for s, _ in folds), seen  # then the folds' steps, forward only
    assert all(total == FOLDS * fold_steps(TUNING_STEPS) for _, total in folds), seen  # each fold: half the steps
    if steps and folds:  # the bar showed both phases: tuning came first
        assert seen.index(next(t for t in seen if TUNING_TEXT.search(t))) < \
            seen.index(next(t for t in seen if FOLD_TEXT.search(t))), seen
    expect(page.get_by_test_id("stProgress")).to_have_count(0)  # the bar made way for the results
    expect(page.get_by_test_id("stExpander").filter(has_text=MODEL)).to_have_count(1)  # in "Saved models"
    screenshot(page, "models-page")

    go_to(page, "Classify")
    choose_model(page, f"{MODEL} (custom)")
    expect(page.get_by_text("labels: billing, shipping. It needs no examples.")).to_be_visible()
    expect(page.get_by_test_id("stMain").get_by_test_id("stDataFrame")).to_have_count(0)  # no examples grid: custom model
    inputs = ["I was charged twice for my subscription", "My parcel is lost, the tracking has not moved"]
    inputs_box(page).fill("\n".join(inputs))
    inputs_box(page).press("Control+Enter")
    wait_for_app(page)
    click_button(page, "Classify")
    cards = results(page)
    check_cards(cards, inputs, {"billing", "shipping"})
    assert [card["prediction"].split(" · ")[0] for card in cards] == [
        "Prediction: billing", "Prediction: shipping"]

    choose_model(page, BASE_MODELS["small"].title)  # back to few-shot: the grid is as it was
    expect_grid(page, [(ex.text, ex.label) for ex in load_preset("review-sentiment").examples])
