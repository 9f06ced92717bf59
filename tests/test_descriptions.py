"""Label descriptions: an optional column of the grid and the CSV, used with the label names.

What a label means ("the customer is unhappy") is said once per label, on any one of its rows.
It reaches the instant label-name prior (classify), tuning, the exports and the page; a file
or grid that describes a label twice in two ways is refused with both rows named.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from playground.data import DataFileError, examples_to_csv, read_examples_csv
from playground.engine import classify
from playground.export import all_snippets, request_body
from playground.training import TrainingSettings, grid_key, tune
from playground.validation import (
    Example,
    ValidationError,
    grid_contents,
    label_descriptions,
)

ROOT = Path(__file__).resolve().parent.parent
APP = str(ROOT / "app.py")
DESCRIBED_CSV = (
    "text,label,description\n"
    "I love it,positive,the customer is happy with the product\n"
    "Works great,positive,\n"
    "Arrived broken,negative,the customer is unhappy with the product\n"
    "Total waste of money,negative,\n"
)
DESCRIPTIONS = {"positive": "the customer is happy with the product",
                "negative": "the customer is unhappy with the product"}


def test_a_csv_description_column_gives_each_label_its_description():
    parsed = read_examples_csv(DESCRIBED_CSV.encode())
    assert parsed.descriptions == DESCRIPTIONS
    assert [ex.label for ex in parsed.examples] == ["positive", "positive", "negative", "negative"]
    # the column may be named otherwise, sit anywhere, and repeat the same words on several rows
    other = "definition;label;text\nhappy;pos;good\nhappy;pos;fine\n;neg;bad\n;neg;awful\n"
    assert read_examples_csv(other.encode()).descriptions == {"pos": "happy"}
    # no column: no descriptions, as before
    assert read_examples_csv(b"text,label\na,x\nb,y\n").descriptions == {}


def test_a_label_described_two_ways_is_refused_with_both_rows():
    with pytest.raises(DataFileError) as caught:
        read_examples_csv(b"text,label,description\na,x,one thing\nb,y,\nc,x,another thing\n")
    assert caught.value.problems == [
        "row 4: label 'x' is described twice (row 2 says 'one thing', this row 'another thing'); "
        "keep one description per label and leave the other rows' description blank"]


def test_the_csv_export_writes_the_descriptions_and_reads_back_the_same():
    parsed = read_examples_csv(DESCRIBED_CSV.encode())
    written = examples_to_csv(parsed.examples, parsed.descriptions)
    assert written.splitlines()[0] == "text,label,description"
    again = read_examples_csv(written.encode())
    assert again.examples == parsed.examples and again.descriptions == DESCRIPTIONS
    assert all_snippets(["x"], parsed.examples, descriptions=DESCRIPTIONS)["csv"] == written
    assert examples_to_csv(parsed.examples).splitlines()[0] == "text,label"  # none: the old two columns


def test_grid_rows_give_examples_and_descriptions_with_every_problem_at_once():
    rows = [("good", "pos", "happy"), ("fine", "pos", None), ("bad", "neg", float("nan")), ("awful", "neg", " sad ")]
    examples, descriptions = grid_contents(rows)
    assert examples == [Example("good", "pos"), Example("fine", "pos"), Example("bad", "neg"), Example("awful", "neg")]
    assert descriptions == {"pos": "happy", "neg": "sad"}
    assert grid_contents([("good", "pos"), ("bad", "neg")]) == ([Example("good", "pos"), Example("bad", "neg")], {})
    with pytest.raises(ValidationError) as caught:
        grid_contents([("good", "pos", "happy"), ("", "neg", None), ("fine", "pos", "glad")])
    assert len(caught.value.problems) == 2
    assert caught.value.problems[0].startswith("row 2: the text is empty")
    assert caught.value.problems[1].startswith("row 3: label 'pos' is described twice")
    assert label_descriptions([("pos", "happy")], ["row 7"]) == {"pos": "happy"}


def test_the_request_exports_carry_descriptions_only_with_the_label_name_hint():
    examples = read_examples_csv(DESCRIBED_CSV.encode()).examples
    assert "descriptions" not in request_body(["x"], examples, descriptions=DESCRIPTIONS)
    body = request_body(["x"], examples, label_names=True, descriptions=DESCRIPTIONS)
    assert body["label_names"] is True and body["descriptions"] == DESCRIPTIONS
    snippets = all_snippets(["x"], examples, label_names=True, descriptions=DESCRIPTIONS)
    assert json.loads(snippets["json"])["descriptions"] == DESCRIPTIONS
    assert "descriptions=descriptions" in snippets["python"]
    assert "descriptions" not in all_snippets(["x"], examples, "small")["python"]


def test_the_python_export_with_descriptions_runs_and_matches_the_engine(seed, tmp_path):
    inputs, examples = list(seed.inputs), list(seed.examples)
    snippet = all_snippets(inputs, examples, label_names=True, descriptions=DESCRIPTIONS)["python"]
    script = tmp_path / "snippet.py"
    script.write_text(snippet, encoding="utf-8")
    run = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)},
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    results = classify(inputs, examples, label_names=True, descriptions=DESCRIPTIONS)
    assert run.stdout.splitlines() == [f"{r.prediction} ({r.confidence:.0%}): {r.input}" for r in results]


def test_tuning_from_a_described_csv_uses_its_descriptions(tmp_path):
    path = tmp_path / "described.csv"
    path.write_text(DESCRIBED_CSV, encoding="utf-8")
    settings = TrainingSettings(steps=2, cv_folds=0, use_label_names="always", num_threads=1)
    tuned = tune(path, settings=settings)
    assert tuned.config["training"]["descriptions"] == DESCRIPTIONS
    plain = tmp_path / "plain.csv"
    plain.write_text(examples_to_csv(read_examples_csv(path).examples), encoding="utf-8")
    templates_only = tune(plain, settings=settings)
    assert templates_only.config["training"]["descriptions"] == {}
    # each description is one more label text than the templates alone
    assert (tuned.config["training"]["tuning"]["n_label_texts"]
            == templates_only.config["training"]["tuning"]["n_label_texts"] + 2)
    overridden = tune(path, settings=settings, descriptions={"positive": "glad"})
    assert overridden.config["training"]["descriptions"] == {**DESCRIPTIONS, "positive": "glad"}
    with pytest.raises(ValidationError, match="descriptions name labels that no example has: 'neutral'"):
        tune(path, settings=settings, descriptions={"neutral": "neither"})


def test_the_grid_key_changes_with_the_descriptions():
    examples = read_examples_csv(DESCRIBED_CSV.encode()).examples
    assert grid_key(examples, "small", DESCRIPTIONS) != grid_key(examples, "small")
    assert grid_key(examples, "small", {}) == grid_key(examples, "small")


def test_the_page_grid_has_the_description_column_and_uses_it(seed):
    at = AppTest.from_file(APP, default_timeout=300).run()
    assert not at.exception
    assert list(at.session_state["classify_examples"].columns) == ["text", "label", "description"]
    frame = at.session_state["classify_examples"].copy()
    first = {label: frame.index[frame["label"] == label][0] for label in DESCRIPTIONS}
    for label, row in first.items():
        frame.loc[row, "description"] = DESCRIPTIONS[label]
    at.session_state["classify_examples"] = frame.astype("string")
    at.session_state["classify_current"] = at.session_state["classify_examples"]
    at.session_state["classify_editor_version"] += 1
    at.checkbox(key="classify_label_names").check().run()
    next(b for b in at.button if b.label == "Classify").click().run()
    assert not at.exception and not at.error
    expected = classify(list(seed.inputs), list(seed.examples), label_names=True, descriptions=DESCRIPTIONS)
    shown = at.session_state["classify_results"]
    assert [(r.prediction, round(r.confidence, 6)) for r in shown] == [
        (r.prediction, round(r.confidence, 6)) for r in expected]
    python = next(c.value for c in at.code if c.language == "python" and "from playground" in c.value)
    assert "descriptions = {" in python and DESCRIPTIONS["negative"] in python
    csv = next(c.value for c in at.code if c.language == "csv")
    assert csv.splitlines()[0] == "text,label,description"
    assert isinstance(at.session_state["classify_examples"], pd.DataFrame)
