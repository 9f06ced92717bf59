"""The data behind the pages' pictures (charts.py, metrics.reliability_bins) and the pictures on their pages."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from playground import store
from playground.charts import (FEW_SHOT, TRAINED, confusion_cells, confusion_frame, per_label_f1_frame,
                               reliability_frame)
from playground.classifier import FewShotClassifier
from playground.data import MultiLabelExample
from playground.evaluate import evaluate
from playground.metrics import reliability_bins
from playground.validation import Example

ROOT = Path(__file__).resolve().parent.parent
COLOURS = [Example(t, "colour") for t in ("red and blue", "a green shirt", "paint it yellow", "purple sky")] + \
          [Example(t, "animal") for t in ("a barking dog", "the cat sleeps", "a horse runs", "cows in a field")]
METRICS = {"trained": {"accuracy": 0.9, "per_label": {"colour": {"precision": 1.0, "recall": 0.8, "f1": 0.89, "support": 5},
                                                      "animal": {"precision": 0.8, "recall": 1.0, "f1": 0.91, "support": 4}}},
           "baseline": {"accuracy": 0.7, "per_label": {"colour": {"precision": 0.7, "recall": 0.6, "f1": 0.65, "support": 5},
                                                       "animal": {"precision": 0.6, "recall": 0.8, "f1": 0.69, "support": 4}}}}


@pytest.fixture(scope="module")
def report(small_encoder):
    return evaluate(COLOURS, model="small")


def test_reliability_bins_put_each_confidence_in_one_bin():
    bins = reliability_bins([0.55, 0.58, 0.95, 1.0, 0.0], [True, False, True, True, False], bins=10)
    assert [(b["low"], b["count"]) for b in bins] == [(0.0, 1), (0.5, 2), (0.9, 2)]
    assert bins[1]["confidence"] == pytest.approx(0.565) and bins[1]["accuracy"] == 0.5
    assert bins[2]["accuracy"] == 1.0 and bins[0]["high"] == pytest.approx(0.1)
    assert reliability_bins([], []) == []


def test_confusion_cells_hold_every_example_once_with_row_shares(report):
    cells = confusion_cells(confusion_frame(report))
    assert len(cells) == len(report.labels) ** 2 and cells["count"].sum() == report.n_examples
    assert cells.groupby("label")["share"].sum().tolist() == pytest.approx([1.0] * len(report.labels))
    right = cells[cells["label"] == cells["predicted"]]["count"].sum()
    assert right == report.n_examples - report.n_wrong


def test_reliability_frame_counts_every_out_of_fold_answer(report):
    frame = reliability_frame(report)
    assert list(frame.columns) == ["bin", "confidence", "accuracy", "count"]
    assert frame["count"].sum() == report.n_examples
    right = float((frame["accuracy"] * frame["count"]).sum())
    assert right == pytest.approx(report.accuracy * report.n_examples)
    assert frame["confidence"].between(0.5, 1.0).all()  # two labels: the top one is at least half
    assert report.to_dict()["reliability"][0]["count"] == frame["count"].iloc[0]


def test_multi_label_reliability_counts_every_label_decision(small_encoder):
    items = [MultiLabelExample(t, tags) for t, tags in [
        ("red dog", ("colour", "animal")), ("blue cat", ("colour", "animal")), ("a green shirt", ("colour",)),
        ("paint it yellow", ("colour",)), ("a horse runs", ("animal",)), ("cows in a field", ("animal",)),
        ("the weather today", ()), ("a quiet evening", ())]]
    multi = evaluate(items, model="small")
    assert reliability_frame(multi)["count"].sum() == len(items) * 2 and multi.confusion_matrix == ()


def test_per_label_f1_frame_sets_trained_beside_few_shot():
    frame = per_label_f1_frame(METRICS)
    assert frame.to_dict("records")[:2] == [{"label": "colour", "model": TRAINED, "f1": 0.89, "support": 5},
                                           {"label": "animal", "model": TRAINED, "f1": 0.91, "support": 4}]
    assert frame[frame["model"] == FEW_SHOT]["f1"].tolist() == [0.65, 0.69]
    assert per_label_f1_frame({"trained": METRICS["trained"]})["model"].unique().tolist() == [TRAINED]
    assert per_label_f1_frame({}).empty


def charts(at: AppTest) -> list:
    return at.get("vega_lite_chart")


def test_evaluate_panel_draws_the_heatmap_and_the_reliability_diagram(small_encoder):
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180).run()
    next(b for b in at.button if b.label == "Evaluate").click().run()
    assert not at.exception and not at.error
    assert len(charts(at)) == 3  # the confusion heatmap, the reliability diagram, the learning curve
    assert any(m.value.startswith("**Are the confidences honest?**") for m in at.markdown)
    [numbers] = [frame.value for frame in at.dataframe if list(frame.value.columns) == ["bin", "confidence", "accuracy",
                                                                                         "count"]]
    assert numbers["count"].sum() == 10  # the seed preset's examples, each answered out of fold


def test_models_page_draws_f1_per_label_beside_its_table(tmp_path, monkeypatch, small_encoder):
    head = FewShotClassifier().fit(small_encoder.embed([e.text for e in COLOURS]), [e.label for e in COLOURS])
    config = {"type": "single-label", "base_model": "small", "labels": [str(c) for c in head.classes_],
              "head": head.to_config(), "n_examples": len(COLOURS), "created": store.now_iso(), "metrics": METRICS}
    store.save_model("colours", config=config, head_arrays=head.to_arrays(), directory=tmp_path,
                     write_body=lambda path: small_encoder.model.save(str(path)))
    monkeypatch.setenv(store.MODELS_DIR_ENV, str(tmp_path))
    at = AppTest.from_file(str(ROOT / "playground" / "ui" / "models_page.py"), default_timeout=120).run()
    assert not at.exception
    assert len(charts(at)) == 1
    assert any("F1 few-shot" in frame.value.columns for frame in at.dataframe)
