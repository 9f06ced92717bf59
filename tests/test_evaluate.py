"""evaluate(): cross-validation of few-shot examples with the real small model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import playground
import importlib
from playground.data import MultiLabelExample, read_examples_csv, read_multilabel_jsonl
from playground.evaluate import (
    EvaluationReport,
    _splits,
    evaluate,
    learning_curve_sizes,
)
from playground.validation import Example, ValidationError

FIXTURES = Path(__file__).parent / "fixtures"

evaluate_module = importlib.import_module("playground.evaluate")
PLANTED = "Marinate the beef overnight in soy sauce and ginger"


@pytest.fixture(scope="module")
def planted(small_encoder):
    return read_examples_csv(FIXTURES / "evaluate_planted.csv").examples


@pytest.fixture(scope="module")
def report(planted) -> EvaluationReport:
    return evaluate(planted, model="small")


def test_planted_mislabelled_example_is_listed_first(report, planted):
    first = report.flagged[0]
    assert first.text == PLANTED and first.label == "sports"
    assert first.predicted == "cooking" and not first.correct
    assert first.index == len(planted) - 1
    assert first.confidence > 0.5 and first.label_confidence < 0.5
    assert report.n_wrong >= 1
    # wrong ones first, then the right ones by confidence, least sure first
    flags = [f.correct for f in report.flagged]
    assert flags == sorted(flags)
    right = [f.confidence for f in report.flagged if f.correct]
    assert right == sorted(right)


def test_metrics_agree_with_the_confusion_matrix(report, planted):
    assert report.method == "leave-one-out" and report.n_folds == len(planted) == report.n_examples
    assert report.labels == ("cooking", "sports")
    matrix = np.array(report.confusion_matrix)
    assert matrix.sum() == len(planted)
    assert report.accuracy == pytest.approx(np.trace(matrix) / matrix.sum())
    assert report.n_wrong == matrix.sum() - np.trace(matrix)
    sports = next(m for m in report.per_label if m.label == "sports")
    assert sports.support == 9
    assert sports.recall == pytest.approx(matrix[1, 1] / matrix[1].sum())
    assert report.macro_f1 == pytest.approx(np.mean([m.f1 for m in report.per_label]))
    assert 0.8 <= report.accuracy < 1.0  # the planted row is wrong by construction


def test_learning_curve_points(report):
    assert [p.per_label for p in report.learning_curve] == [2, 4, 8]
    assert learning_curve_sizes([8, 9]) == [2, 4, 8]
    assert learning_curve_sizes([2, 2]) == []
    assert [p.n_train for p in report.learning_curve][:2] == [4.0, 8.0]
    assert report.learning_curve[-1].n_train == 7 + 8  # cooking has 8: one is kept back to score on
    for point in report.learning_curve:
        assert 0.0 <= point.accuracy <= 1.0 and point.repeats == 5


def test_report_is_json_safe(report):
    data = json.loads(json.dumps(report.to_dict()))
    assert data["flagged"][0]["text"] == PLANTED
    assert data["confusion_matrix"] == [list(r) for r in report.confusion_matrix]
    assert data["learning_curve"][0]["per_label"] == 2
    assert playground.evaluate is evaluate


def test_near_duplicates_with_different_labels(planted):
    examples = planted[:16] + [Example("the striker scored twice in the 2nd half", "cooking")]
    report = evaluate(examples, learning_curve_repeats=1)
    assert len(report.near_duplicates) == 1
    dup = report.near_duplicates[0]
    assert (dup.first, dup.second) == (0, 16)
    assert {dup.first_label, dup.second_label} == {"sports", "cooking"} and dup.similarity > 0.95
    same_label = planted[:16] + [Example("the striker scored twice in the 2nd half", "sports")]
    assert evaluate(same_label, learning_curve_repeats=1).near_duplicates == ()


def test_switches_from_leave_one_out_to_stratified_k_fold(planted, monkeypatch):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(201, 4))
    y = np.array(["a", "b", "c"] * 67)
    assert _splits(X[:200], y[:200], stratified=True, random_state=0)[1:] == ("leave-one-out", 200)
    splits, method, folds = _splits(X, y, stratified=True, random_state=0)
    assert (method, folds, len(splits)) == ("stratified-k-fold", 5, 5)
    assert sorted(np.concatenate([test for _, test in splits]).tolist()) == list(range(201))

    monkeypatch.setattr(evaluate_module, "LOO_MAX_EXAMPLES", 10)
    report = evaluate(planted, learning_curve_repeats=1)
    assert (report.method, report.n_folds) == ("stratified-k-fold", 5)
    assert report.flagged[0].text == PLANTED


def test_multi_label_micro_and_macro_f1(fixtures_dir, small_encoder):
    data = read_multilabel_jsonl(fixtures_dir / "evaluate_multilabel.jsonl")
    report = evaluate(data)
    assert report.classification_type == "multi-label" and report.method == "leave-one-out"
    assert report.labels == ("cooking", "sports")
    assert report.confusion_matrix == () and report.learning_curve == ()
    assert {m.label: m.support for m in report.per_label} == {"cooking": 7, "sports": 7}
    assert 0.0 < report.micro_f1 <= 1.0 and 0.0 < report.macro_f1 <= 1.0
    assert report.macro_f1 == pytest.approx(np.mean([m.f1 for m in report.per_label]))
    assert report.n_wrong == sum(not f.correct for f in report.flagged)
    assert all(f.predicted != f.label for f in report.flagged if not f.correct)
    assert report.to_dict()["micro_f1"] == report.micro_f1


def test_bad_input_is_named():
    with pytest.raises(ValidationError, match="at least 2 unique labels"):
        evaluate([("a b", "x"), ("c d", "x")])
    with pytest.raises(ValidationError, match="cannot be evaluated"):
        evaluate([("a b", "x"), ("c d", "y")], model="my-custom")
    with pytest.raises(ValidationError, match="at least 2 examples; add more for: rare"):
        evaluate([MultiLabelExample(t, labels) for t, labels in
                  [("a", ("x",)), ("b", ("x", "rare")), ("c", ()), ("d", ("y",)), ("e", ("y",))]])
    with pytest.raises(ValidationError, match="mixes multi-label"):
        evaluate([MultiLabelExample("a", ("x",)), Example("b", "y")])


def test_evaluate_panel_on_the_classify_page(small_encoder):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(Path(__file__).resolve().parent.parent / "app.py"), default_timeout=180).run()
    assert not at.exception
    next(b for b in at.button if b.label == "Evaluate").click().run()
    assert not at.exception and not at.error
    assert [m.label for m in at.metric] == ["Accuracy", "Macro-F1", "Wrong", "Method"]
    assert at.metric[3].value == "leave-one-out"
    assert len(at.main.dataframe) == 5  # the grid, per label, confusion matrix, flagged, reliability (no near-duplicates)
    made_for, report = at.session_state.evaluate_report
    assert report.n_examples == 10 and made_for[0] == "small"
    flagged = at.main.dataframe[3].value
    assert list(flagged.columns) == ["row", "text", "label", "predicted", "confidence", "wrong"]
    assert len(flagged) == len(report.flagged)
