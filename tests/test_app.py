"""The Classify page through Streamlit's AppTest (the grid, uploads and downloads are in the browser tests)."""

from pathlib import Path

from streamlit.testing.v1 import AppTest

from playground.export import python_snippet
from playground.presets import load_preset

APP = str(Path(__file__).resolve().parent.parent / "app.py")


def run_app() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=180)
    return at.run()


def button(at: AppTest, label: str):
    return next(b for b in at.button if b.label == label)

def app_with_grid(examples: list[tuple[str, str]]) -> AppTest:
    """The page with ``examples`` in its grid, as the grid editor would leave them (AppTest cannot drive it)."""
    import pandas as pd

    at = run_app()
    grid = pd.DataFrame({"text": [t for t, _ in examples], "label": [l for _, l in examples],
                         "description": [None] * len(examples)}, dtype="string")
    at.session_state.classify_examples = grid
    at.session_state.classify_current = grid
    at.session_state.classify_editor_version += 1
    return at


def test_page_opens_with_the_seed_preset_and_classifies():
    at = run_app()
    assert not at.exception
    assert at.text_area(key="classify_inputs").value.splitlines() == list(load_preset("review-sentiment").inputs)
    button(at, "Classify").click().run()
    assert not at.exception and not at.error
    bars = at.get("progress")
    texts = [bar.proto.text for bar in bars]
    assert len(bars) == 4
    assert texts[0].startswith("**negative**:") and texts[0].endswith("%")
    assert texts[2].startswith("**negative**:")
    assert [m.value for m in at.markdown if m.value.startswith("Prediction:")] == [
        m for m in [m.value for m in at.markdown] if "Prediction: :green-background[**negative**]" in m
    ]


def test_export_tabs_render_current_config():
    at = run_app()
    assert len(at.tabs) == 4
    codes = [c.value for c in at.code]
    preset = load_preset("review-sentiment")
    assert codes[0] == python_snippet(list(preset.inputs), list(preset.examples), "small").rstrip("\n")
    assert any(c.startswith("curl") for c in codes)
    assert any("co.classify(" in c for c in codes)
    assert codes[-1].startswith("text,label\n")


def test_loading_another_preset_fills_grid_and_inputs():
    at = run_app()
    at.selectbox(key="classify_preset").set_value("news-topic")
    button(at, "Load preset").click().run()
    preset = load_preset("news-topic")
    assert at.text_area(key="classify_inputs").value == "\n".join(preset.inputs)
    assert list(at.session_state.classify_examples["label"]) == [ex.label for ex in preset.examples]
    button(at, "Classify").click().run()
    assert not at.error and len(at.get("progress")) == 4 * len(preset.inputs)


def test_invalid_grid_shows_an_error_and_keeps_inputs():
    at = run_app()
    import pandas as pd

    grid = pd.DataFrame({"text": ["only one", "and two"], "label": ["a", "a"]}, dtype="string")
    at.session_state.classify_examples = grid
    at.session_state.classify_current = grid
    at.session_state.classify_editor_version += 1
    at.run()
    button(at, "Classify").click().run()
    assert not at.exception
    assert "at least 2 unique labels" in at.error[0].value
    assert at.text_area(key="classify_inputs").value.startswith("This item was broken")


def test_empty_inputs_error():
    at = run_app()
    at.text_area(key="classify_inputs").set_value("  \n").run()
    button(at, "Classify").click().run()
    assert "inputs cannot be empty" in at.error[0].value


def test_advanced_settings_show_the_precision_in_use():
    from playground.embeddings import resolve_precision

    at = run_app()
    assert at.selectbox(key="classify_precision").value == "auto"
    assert f"In use: **{resolve_precision('auto')}** (auto)" in [c.value for c in at.caption]
    at.selectbox(key="classify_precision").set_value("fp32").run()
    assert "In use: **fp32**" in [c.value for c in at.caption]
    button(at, "Classify").click().run()
    assert not at.error and len(at.get("progress")) == 4


def test_unknown_threshold_is_chosen_from_the_examples_and_applied():
    at = run_app()
    at.checkbox(key="classify_unknown").check().run()
    button(at, "Choose the threshold from my examples").click().run()
    assert not at.exception and not at.error
    summary = [n.value for n in [*at.success, *at.warning] if "confidence the answer is 'unknown'" in n.value]
    assert len(summary) == 1 and "precision" in summary[0]
    assert 0.0 <= at.slider(key="classify_unknown_below").value <= 1.0
    at.slider(key="classify_unknown_below").set_value(1.0).run()
    button(at, "Classify").click().run()
    assert not at.exception and not at.error
    predictions = [m.value for m in at.markdown if m.value.startswith("Prediction:")]
    assert len(predictions) == 2 and all("**unknown**" in p for p in predictions)


def test_label_next_suggests_a_batch_and_adds_it_to_the_examples():
    from playground.label_next import LabelPool

    at = run_app()
    texts = ["The package never showed up", "Support was friendly and quick", "Refund took forever",
             "Works as described, happy", "Arrived broken, very disappointed", "Five stars, would buy again"]
    at.session_state["label_pool"] = LabelPool(texts, "small")
    at.run()
    assert "6 texts left in the pool." in [c.value for c in at.caption]
    button(at, "Suggest what to label").click().run()
    assert not at.exception and not at.error
    batch = at.session_state["label_batch"]
    assert len(batch) == 6 and set(batch["label"]) <= {"negative", "positive"}
    before = len(at.session_state["classify_examples"])
    button(at, "Add to examples and suggest the next batch").click().run()
    assert not at.exception and not at.error
    assert len(at.session_state["classify_examples"]) == before + 6
    assert at.session_state["label_pool"].remaining == 0 and at.session_state["label_batch"] is None
    curve = at.session_state["label_curve"]
    assert [p.n_examples for p in curve] == [before + 6]
    assert any(m.value.startswith("**Progress**: cross-validated accuracy") for m in at.markdown)


def test_why_tints_each_word_and_lists_the_nearest_examples():
    at = run_app()
    at.text_area(key="classify_inputs").set_value("<b>The</b> item broke after 3 weeks")
    at.checkbox(key="classify_explain").check().run()
    button(at, "Classify").click().run()
    assert not at.exception and not at.error
    [tinted] = [m.value for m in at.markdown if m.value.startswith('<div style="line-height')]
    assert "&lt;b&gt;The&lt;/b&gt;" in tinted and "<b>" not in tinted  # the user's text is escaped
    assert tinted.count("<span") == 6 and "rgba(22, 163, 74" in tinted
    assert any("Green words push toward **negative**" in c.value for c in at.caption)
    [nearest] = [frame.value for frame in at.dataframe if "nearest example" in frame.value.columns]
    seed = {ex.text: ex.label for ex in load_preset("review-sentiment").examples}
    assert len(nearest) == 3 and all(seed[t] == label for t, label in zip(nearest["nearest example"], nearest["label"]))


def test_long_inputs_are_read_in_windows_and_the_page_says_how():
    from fixtures.long_documents import LONG_EXAMPLES, LONG_TICKETS

    at = app_with_grid(LONG_EXAMPLES)
    assert at.selectbox(key="classify_truncate").value == "WINDOWS"  # the page's default (the API's is END)
    at.text_area(key="classify_inputs").set_value("\n".join([*LONG_TICKETS, "where is my parcel?"])).run()
    at.selectbox(key="classify_truncate").set_value("END").run()
    button(at, "Classify").click().run()  # END: both long inputs cut, and the page says so
    notes = [c.value for c in at.caption if c.value.startswith("Longer than the model's window")]
    assert len(notes) == 2 and all("cut at the end (END)" in n for n in notes)
    assert notes[0].startswith("Longer than the model's window: input 1:")
    at.selectbox(key="classify_truncate").set_value("WINDOWS").run()
    button(at, "Classify").click().run()
    assert not at.exception and not at.error
    notes = [c.value for c in at.caption if c.value.startswith("Longer than the model's window")]
    assert len(notes) == 2 and all("read in 2 windows" in n for n in notes)
    results = at.session_state.classify_results
    assert [r.prediction for r in results[:2]] == list(LONG_TICKETS.values())


def test_evaluate_reads_long_examples_as_the_truncate_setting_says():
    from fixtures.long_documents import LONG_LABELLED as long_examples  # the label only past the window
    from playground.evaluate import evaluate

    at = app_with_grid(long_examples)
    at.selectbox(key="classify_truncate").set_value("END").run()
    button(at, "Evaluate").click().run()
    _, cut = at.session_state.evaluate_report
    at.selectbox(key="classify_truncate").set_value("WINDOWS").run()
    assert any("reading of long texts changed" in i.value for i in at.info)
    button(at, "Evaluate").click().run()
    assert not at.exception and not at.error
    _, windows = at.session_state.evaluate_report
    assert windows.accuracy == evaluate(long_examples, "small", truncate="WINDOWS").accuracy
    assert cut.accuracy == evaluate(long_examples, "small", truncate="END").accuracy
    assert windows.accuracy > cut.accuracy  # END reads the same opening for every example
