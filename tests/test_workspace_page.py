"""Workspaces on the Classify page through AppTest: open by URL, saved after a change, the sidebar's controls,
damaged files, bad names in the address, an unwritable folder, two tabs, a restored tuning, model versions.

Each ``AppTest`` is one browser tab (one session); a second one on the same workspace is another tab.
The grid's canvas and a real reload are in tests/browser/test_workspace_journeys.py.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from playground import store
from playground.presets import load_preset
from playground.training import TrainingSettings, grid_key, tune_grid
from playground.workspace import (
    DAMAGED_FILE,
    WORKSPACE_FILE,
    WORKSPACES_DIR_ENV,
    Workspace,
    create_workspace,
    list_workspaces,
    open_workspace,
    read_revision,
)

APP = str(Path(__file__).resolve().parent.parent / "app.py")
SEED = load_preset("review-sentiment")


def tab(workspace: str | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=180)
    if workspace is not None:
        at.query_params["w"] = workspace
    return at.run()


def saved(at: AppTest) -> None:
    """Write what the tab's saver holds now (it would, 0.4 s after the change)."""
    at.session_state["workspace_saver"].flush()


def click(at: AppTest, label: str, *, sidebar: bool = False) -> AppTest:
    buttons = at.sidebar.button if sidebar else at.button
    return next(b for b in buttons if b.label == label).click().run()


def set_grid(at: AppTest, rows: list[tuple[str, str, str]]) -> AppTest:
    """What typing in the grid leaves in the page's keys (AppTest cannot drive the data editor)."""
    grid = pd.DataFrame(rows, columns=["text", "label", "description"], dtype="string")
    at.session_state.classify_examples = grid
    at.session_state.classify_current = grid
    at.session_state.classify_editor_version += 1
    return at.run()


def test_a_first_visit_opens_a_new_workspace_from_the_preset_and_puts_it_in_the_url(workspaces_folder):
    at = tab()
    assert not at.exception and not at.error
    assert at.query_params["w"] in ("default", ["default"])
    assert at.text_area(key="classify_inputs").value == "\n".join(SEED.inputs)
    assert [(i.name, i.n_examples) for i in list_workspaces()] == [("default", 10)]
    assert at.sidebar.selectbox(key="workspace_choice").value == "default"
    listed = at.sidebar.dataframe[0].value
    assert list(listed["workspace"]) == ["default"] and list(listed["examples"]) == [10]
    assert any(str(workspaces_folder) in c.value and "?w=default" in c.value for c in at.sidebar.caption)
    assert read_revision("default").number == 1  # opening wrote nothing more


def test_everything_typed_is_saved_and_comes_back_in_a_new_tab(workspaces_folder):
    at = tab("mine")
    rows = [("Great value", "positive", "the customer is happy"), ("Love it", "positive", ""),
            ("Broke at once", "negative", ""), ("Never again", "negative", "")]
    set_grid(at, rows)
    at.text_area(key="classify_inputs").set_value("my first input\nmy second input").run()
    at.selectbox(key="classify_truncate").set_value("START").run()
    at.checkbox(key="classify_label_names").check().run()
    at.checkbox(key="classify_unknown").check().run()
    at.slider(key="classify_unknown_below").set_value(0.35).run()
    click(at, "Classify")
    assert not at.exception and not at.error
    shown = [m.value for m in at.markdown if m.value.startswith("Prediction:")]
    rows.append(("half typed, no label yet", "", ""))  # kept as typed, though Classify would refuse it
    set_grid(at, rows)
    saved(at)

    again = tab("mine")
    assert not at.exception
    assert again.text_area(key="classify_inputs").value == "my first input\nmy second input"
    grid = again.session_state["classify_examples"]
    assert [tuple("" if pd.isna(c) else c for c in row) for row in grid.itertuples(index=False)] == rows
    assert again.selectbox(key="classify_truncate").value == "START"
    assert again.checkbox(key="classify_label_names").value and again.checkbox(key="classify_unknown").value
    assert again.slider(key="classify_unknown_below").value == pytest.approx(0.35)
    assert [m.value for m in again.markdown if m.value.startswith("Prediction:")] == shown  # the results too
    assert len(again.get("progress")) == 4


def test_opening_a_workspace_does_not_write_it(workspaces_folder):
    create_workspace("quiet", Workspace.from_preset(SEED))
    before = (workspaces_folder / "quiet" / WORKSPACE_FILE).read_bytes()
    at = tab("quiet")
    at.run()
    saved(at)
    assert (workspaces_folder / "quiet" / WORKSPACE_FILE).read_bytes() == before


def test_sidebar_creates_renames_duplicates_deletes_and_undoes(workspaces_folder):
    at = tab("start")
    at.sidebar.text_input(key="workspace_new_name").set_value("news")
    at.sidebar.selectbox(key="workspace_new_preset").set_value("news-topic")
    click(at, "Create", sidebar=True)
    news = load_preset("news-topic")
    assert at.session_state["workspace_name"] == "news"
    assert at.text_area(key="classify_inputs").value == "\n".join(news.inputs)
    assert sorted(i.name for i in list_workspaces()) == ["news", "start"]

    at.text_area(key="classify_inputs").set_value("edited in news").run()
    at.sidebar.text_input(key="workspace_rename_to").set_value("headlines")
    click(at, "Rename", sidebar=True)
    assert at.session_state["workspace_name"] == "headlines" and not at.exception
    assert sorted(i.name for i in list_workspaces()) == ["headlines", "start"]
    assert open_workspace("headlines").workspace.inputs == "edited in news"  # saved before the rename

    at.sidebar.text_input(key="workspace_copy_to").set_value("headlines-2")
    click(at, "Duplicate", sidebar=True)
    assert at.session_state["workspace_name"] == "headlines-2"
    assert at.text_area(key="classify_inputs").value == "edited in news"

    assert at.sidebar.button(key="workspace_delete").disabled  # a confirm first
    at.sidebar.checkbox(key="workspace_confirm_delete").check().run()
    click(at, "Delete", sidebar=True)
    assert "headlines-2" not in [i.name for i in list_workspaces()]
    assert at.session_state["workspace_name"] != "headlines-2" and not at.exception
    assert any("Deleted **headlines-2**" in s.value for s in at.sidebar.success)
    click(at, "Undo: bring back headlines-2", sidebar=True)
    assert at.session_state["workspace_name"] == "headlines-2"
    assert at.text_area(key="classify_inputs").value == "edited in news"

    at.sidebar.selectbox(key="workspace_choice").set_value("start").run()
    assert at.session_state["workspace_name"] == "start"
    assert at.text_area(key="classify_inputs").value == "\n".join(SEED.inputs)


@pytest.mark.parametrize("bad", ["../../etc", "a/b", "two words", "x" * 80])
def test_a_name_with_path_characters_is_refused_clearly(workspaces_folder, tmp_path, bad):
    at = tab(bad)
    assert not at.exception
    errors = " ".join(e.value for e in at.sidebar.error)
    assert "The address names a workspace that cannot exist" in errors and "workspace name" in errors
    assert at.session_state["workspace_name"] == "default"
    assert [p.name for p in workspaces_folder.iterdir() if not p.name.startswith(".")] == ["default"]
    at.sidebar.text_input(key="workspace_new_name").set_value(bad)
    click(at, "Create", sidebar=True)
    assert "workspace name" in " ".join(e.value for e in at.sidebar.error)
    assert [p.name for p in workspaces_folder.iterdir() if not p.name.startswith(".")] == ["default"]


def test_a_damaged_workspace_opens_says_what_was_dropped_and_is_kept_until_a_change(workspaces_folder):
    create_workspace("damaged", Workspace.from_preset(SEED))
    path = workspaces_folder / "damaged" / WORKSPACE_FILE
    text = path.read_text().replace('"inputs": "', '"inputs": ', 1).replace('"precision": "auto"', '"precision": "fp64"')
    path.write_text(text)
    at = tab("damaged")
    assert not at.exception
    warning = " ".join(w.value for w in at.sidebar.warning)
    assert "is damaged: it opened as far as it could be read" in warning
    assert "not valid JSON" in warning and "inputs: missing or unreadable" in warning and "precision: 'fp64'" in warning
    assert at.session_state["classify_examples"].shape[0] == 10  # the grid was readable
    at.run()
    saved(at)
    assert path.read_text() == text  # opened and rerun, never written
    at.text_area(key="classify_inputs").set_value("typed after the damage").run()
    saved(at)
    assert (workspaces_folder / "damaged" / DAMAGED_FILE).read_text() == text
    assert open_workspace("damaged").workspace.inputs == "typed after the damage"
    assert not open_workspace("damaged").damaged


def test_an_unwritable_folder_warns_and_the_page_keeps_working_in_memory(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("workspaces cannot go under a file")
    monkeypatch.setenv(WORKSPACES_DIR_ENV, str(blocker / "workspaces"))
    at = tab("offline")
    assert not at.exception
    warning = " ".join(w.value for w in at.sidebar.warning)
    assert "could not be created" in warning and "keeps working in memory" in warning
    at.text_area(key="classify_inputs").set_value("still works").run()
    click(at, "Classify")
    assert not at.exception and not at.error and len(at.get("progress")) == 2
    saved(at)
    at.run()
    assert "Not saved" in " ".join(w.value for w in at.sidebar.warning)
    assert at.text_area(key="classify_inputs").value == "still works"


def test_two_tabs_the_other_tab_is_told_and_can_reload(workspaces_folder):
    first, second = tab("shared"), tab("shared")
    second.text_area(key="classify_inputs").set_value("typed in the second tab").run()
    saved(second)
    first.run()  # the status fragment runs with the page (every 2 s in a browser)
    warning = " ".join(w.value for w in first.sidebar.warning)
    assert "was changed in another tab or window" in warning
    assert first.text_area(key="classify_inputs").value == "\n".join(SEED.inputs)  # nothing changed under the user
    click(first, "Reload the saved workspace", sidebar=True)
    assert first.text_area(key="classify_inputs").value == "typed in the second tab"
    assert "changed in another tab" not in " ".join(w.value for w in first.sidebar.warning)
    # the later save wins, and the other tab hears of it in turn
    first.text_area(key="classify_inputs").set_value("first tab again").run()
    saved(first)
    second.run()
    assert "was changed in another tab or window" in " ".join(w.value for w in second.sidebar.warning)
    assert json.loads((workspaces_folder / "shared" / WORKSPACE_FILE).read_text())["inputs"] == "first tab again"


def test_a_workspace_reopens_its_tuning_and_saves_it_as_model_versions(workspaces_folder, tmp_path, monkeypatch):
    monkeypatch.setenv(store.MODELS_DIR_ENV, str(tmp_path / "models"))
    monkeypatch.setenv("CLASSIFY_CACHE_DIR", str(tmp_path / "cache"))
    examples = list(SEED.examples)
    _, folder = tune_grid(examples, "small", settings=TrainingSettings(steps=4, cv_folds=2, num_threads=1,
                                                                                 keep="tuned"))
    create_workspace("tuned-ws", Workspace(**{**Workspace.from_preset(SEED).__dict__,
                                              "tuned_grid": grid_key(examples, "small")}))
    at = tab("tuned-ws")
    assert not at.exception
    assert any("Classify uses the tuned model" in s.value for s in at.success)
    click(at, "Classify")
    assert not at.exception and not at.error
    for n in (1, 2):
        at.text_input(key="classify_tune_name").set_value("from-workspace")
        click(at, "Save as custom model")
        assert not at.exception
    assert "(version 2; the earlier versions are on the Models page)" in at.success[0].value
    assert [v.version for v in store.list_versions("from-workspace")] == [2, 1]
    assert folder.is_dir()

    models = AppTest.from_file(APP, default_timeout=180)
    models.switch_page("playground/ui/models_page.py").run()
    assert not models.exception
    table = models.dataframe[-1].value
    assert list(table["version"]) == [2, 1] and list(table["current"]) == [True, False]
    models.selectbox(key="models_version_from-workspace").set_value(1)
    click(models, "Make version 1 current")
    assert not models.exception
    assert "uses version 1 again" in models.success[0].value
    assert [v.version for v in store.list_versions("from-workspace")] == [1, 2]


def test_the_label_next_pool_and_its_decisions_come_back_in_a_new_tab(workspaces_folder):
    from playground.label_next import LabelPool

    texts = ["The package never showed up", "Support was friendly and quick", "Refund took forever",
             "Works as described, happy", "Arrived broken, very disappointed", "Five stars, would buy again",
             "Took a month to arrive", "Cheap and cheerful, it works"]
    at = tab("labelling")
    at.session_state["label_pool"] = LabelPool(texts, "small")
    at.session_state["label_pool_source"] = "reviews.txt"
    at.session_state["label_k"] = 3
    at.run()
    click(at, "Suggest what to label")
    click(at, "Add to examples and suggest the next batch")
    assert not at.exception and not at.error
    grid = at.session_state["classify_examples"]
    batch = list(at.session_state["label_batch"]["index"])
    saved(at)

    again = tab("labelling")
    assert not again.exception
    assert again.session_state["classify_examples"].equals(grid)  # the labelled rows are in the grid
    assert "This workspace has the pool **reviews.txt**: 5 of 8 texts left, 3 decided." in [i.value for i in again.info]
    assert list(again.session_state["label_batch"]["index"]) == batch  # the batch on screen, as it was
    click(again, "Continue with this pool (embeds its texts again)")
    assert not again.exception and not again.error
    pool = again.session_state["label_pool"]
    assert pool.remaining == 5 and "5 texts left in the pool." in [c.value for c in again.caption]
    assert [p.n_examples for p in again.session_state["label_curve"]] == [13]
    saved(again)
    assert [p.name for p in (workspaces_folder / "labelling").iterdir() if p.name.startswith("pool-")]  # written once


def test_on_a_tie_the_page_classifies_with_the_blend_and_the_user_can_take_either_model(workspaces_folder, tmp_path,
                                                                                        monkeypatch):
    """The guard's third choice on the page: a tuning whose honest scores tie answers with the blend (cached
    beside the tuned folder), says so, and offers the tuned and the untuned model; the pick is what Classify uses
    and what is saved."""
    from fixtures.trained_models import LEVEL_EXAMPLES

    from playground.engine import load_folder
    from playground.training import BLEND_SUFFIX

    monkeypatch.setenv(store.MODELS_DIR_ENV, str(tmp_path / "models"))
    monkeypatch.setenv("CLASSIFY_CACHE_DIR", str(tmp_path / "cache"))
    tuned, folder = tune_grid(LEVEL_EXAMPLES, "small", settings=TrainingSettings(steps=4, cv_folds=2, num_threads=1))
    blend_folder = folder.with_name(folder.name + BLEND_SUFFIX)
    assert tuned.choice == "blended" and blend_folder.is_dir()
    inputs = ["Cherries and plums in a basket", "The train left the station"]
    create_workspace("level-ws", Workspace(**{**Workspace.from_preset(SEED).__dict__, "inputs": "\n".join(inputs),
                                              "examples": [(t, label, "") for t, label in LEVEL_EXAMPLES],
                                              "tuned_grid": grid_key(LEVEL_EXAMPLES, "small")}))
    at = tab("level-ws")
    assert not at.exception
    status = " ".join(s.value for s in at.success)
    assert "scored the same" in status and "Classify uses the blend of tuned and untuned" in status, status
    assert {b.label for b in at.button} >= {"Use the tuned model anyway", "Use the untuned model anyway"}
    click(at, "Classify")
    assert not at.exception and not at.error
    expected = load_folder(blend_folder).classify(inputs)
    assert [r.confidence for r in at.session_state["classify_results"]] == pytest.approx(
        [r.confidence for r in expected])

    click(at, "Use the tuned model anyway")
    assert "Classify uses the tuned model" in " ".join(s.value for s in at.success)
    assert "Use the blend of tuned and untuned" in {b.label for b in at.button}
    click(at, "Classify")
    expected = load_folder(folder).classify(inputs)
    assert [r.confidence for r in at.session_state["classify_results"]] == pytest.approx(
        [r.confidence for r in expected])
    at.text_input(key="classify_tune_name").set_value("level-tuned")
    click(at, "Save as custom model")
    assert "Saved the tuned model as **level-tuned**" in at.success[0].value
    guard = store.read_model("level-tuned").config["metrics"]["guard"]
    assert (guard["choice"], guard["chosen_by"]) == ("tuned", "user")  # what the folder holds, and who chose it
    models = AppTest.from_file(APP, default_timeout=180)
    models.switch_page("playground/ui/models_page.py").run()
    assert not models.exception and not models.warning  # the Models page does not say it answers with the blend
    assert any("Chosen by hand: this model answers with the tuned encoder." in c.value for c in models.caption)

    shutil.rmtree(blend_folder)  # pruned by hand (or a race): the workspace reopens on the tuned grid alone
    again = tab("level-ws")
    status = " ".join(s.value for s in again.success)
    assert not again.exception and "scored the same" in status, status
    assert "the tuned model stands in for it" in status and "Classify uses the tuned model" in status, status
    assert "Use the blend of tuned and untuned" not in {b.label for b in again.button}
