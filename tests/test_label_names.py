"""Label names as an opt-in prior on the instant path: engine, API extension field, exported code."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from playground import classify, export
from playground.engine import fit_few_shot
from playground.label_prior import LabelPriorClassifier
from playground.server import create_app


def test_label_names_use_the_prior_head_and_a_separate_cache_entry(seed):
    plain = fit_few_shot(list(seed.examples), "small")
    named = fit_few_shot(list(seed.examples), "small", label_names=True)
    assert plain is not named and isinstance(named.classifier, LabelPriorClassifier)
    results = classify(list(seed.inputs), list(seed.examples), "small", label_names=True)
    for r in results:
        assert set(r.labels) == {"negative", "positive"} and sum(r.labels.values()) == pytest.approx(1.0)
    assert named.classifier.evidence_["oof_accuracy_head"] >= 0.0


def test_meaningless_names_change_nothing(seed):
    """Labels named "A" / "B" predict nothing out of fold: weight 0, the plain head's answers."""
    renamed = [(ex.text, "A" if ex.label == "negative" else "B") for ex in seed.examples]
    plain = classify(list(seed.inputs), renamed, "small")
    named = classify(list(seed.inputs), renamed, "small", label_names=True)
    fitted = fit_few_shot(renamed, "small", label_names=True).classifier
    if fitted.prior_weight_ == 0 and fitted.bias_weight_ == 0:
        assert [r.labels for r in named] == pytest.approx([r.labels for r in plain], abs=1e-6)
    assert [r.prediction for r in named] == [r.prediction for r in plain]


def test_the_api_field_is_an_extension(seed):
    client = TestClient(create_app(api_key="", preload=False), raise_server_exceptions=False)
    body = {"inputs": list(seed.inputs), "examples": [ex.to_dict() for ex in seed.examples]}
    plain = client.post("/v1/classify", json=body).json()
    named = client.post("/v1/classify", json={**body, "label_names": True}).json()
    assert set(plain) == set(named) == {"id", "classifications", "meta"}
    expected = classify(list(seed.inputs), list(seed.examples), "small", label_names=True)
    assert [c["labels"]["negative"]["confidence"] for c in named["classifications"]] == pytest.approx(
        [r.labels["negative"] for r in expected])


def test_exports_carry_the_setting(seed):
    snippets = export.all_snippets(list(seed.inputs), list(seed.examples), "small", label_names=True)
    assert "label_names=True" in snippets["python"]
    assert json.loads(snippets["json"])["label_names"] is True
    assert '"label_names": true' in snippets["curl"]
    assert snippets["cohere"].startswith("# Cohere's SDK cannot send label_names")
    off = export.all_snippets(list(seed.inputs), list(seed.examples), "small")
    assert "label_names" not in off["python"] + off["json"] + off["cohere"]
