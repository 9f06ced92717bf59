"""Training custom models: the data rules, the split, the heads, metrics, progress, cancel and the lock."""

from __future__ import annotations

import json
import os
import threading

import numpy as np
import pytest

from fixtures.trained_models import MULTI_JSONL, SINGLE_CSV, TINY
from playground import classify, store
from playground.classifier import MultiLabelHead
from playground.data import DataFileError, MultiLabelExample, read_examples_csv, read_multilabel_jsonl
from playground.engine import load_model
from playground.store import LOCK_NAME, TrainingBusyError, TrainingLock
from playground.training import (
    TrainingCancelled,
    TrainingSettings,
    check_training_data,
    load_training_data,
    make_pairs,
    split_data,
    total_steps,
    train,
)
from playground.validation import Example, ValidationError


@pytest.fixture(scope="session")
def models_root(trained_dir):
    return trained_dir


@pytest.fixture
def single_rows() -> list[tuple[str, str]]:
    return [(e.text, e.label) for e in read_examples_csv(SINGLE_CSV).examples]


def write_csv(path, rows, header=True):
    lines = (["text,label"] if header else []) + [f"{t},{l}" for t, l in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def problems_of(data, **kwargs) -> list[str]:
    with pytest.raises(ValidationError) as info:
        check_training_data(load_training_data(data, **kwargs))
    return info.value.problems


# ---------------------------------------------------------------- data rules, each with its message


def test_fewer_than_40_examples(tmp_path, single_rows):
    problems = problems_of(write_csv(tmp_path / "d.csv", single_rows[:30]))
    assert any("at least 40 examples - found 30: add 10 more rows" in p for p in problems)


def test_a_single_label(tmp_path):
    rows = [(f"text number {i}", "only") for i in range(45)]
    assert any("at least 2 labels - found 'only'" in p for p in problems_of(write_csv(tmp_path / "d.csv", rows)))


def test_fewer_than_5_per_label(tmp_path, single_rows):
    rows = single_rows + [("a rare one", "rare"), ("another rare one", "rare")]
    problems = problems_of(write_csv(tmp_path / "d.csv", rows))
    assert any("at least 5 examples per label - too few for: 'rare' (2)" in p for p in problems)


def test_duplicates_and_conflicts_name_their_rows(tmp_path, single_rows):
    rows = list(single_rows)
    rows.append(rows[0])  # row 50 repeats row 2 (header is row 1)
    other = "shipping" if rows[1][1] != "shipping" else "billing"
    rows.append((rows[1][0], other))  # row 51 repeats row 3's text with another label
    problems = problems_of(write_csv(tmp_path / "d.csv", rows))
    assert "row 50 is an exact duplicate of row 2: delete one of them" in problems
    assert any(p.startswith("row 51 repeats the text of row 3 with a different label") for p in problems)


def test_in_memory_examples_are_named_by_index(single_rows):
    examples = [Example(t, l) for t, l in single_rows] + [Example(*single_rows[0])]
    problems = problems_of(examples)
    assert "examples[48] is an exact duplicate of examples[0]: delete one of them" in problems


def test_multilabel_rules(tmp_path):
    records = [json.loads(line) for line in MULTI_JSONL.read_text().splitlines()]
    # "economy" on 3 lines only; a duplicate line with other labels
    records += [{"text": f"markets fell on day {i}", "label": ["economy"]} for i in range(3)]
    records.append({"text": records[0]["text"], "label": ["economy"]})
    path = tmp_path / "d.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    problems = problems_of(path)
    assert any("at least 5 examples with each label - too few for: 'economy' (4)" in p for p in problems)
    assert any(p.startswith("line 52 repeats the text of line 1 with different labels") for p in problems)


def test_multilabel_label_on_every_example(tmp_path):
    lines = [{"text": f"note {i}", "label": ["a", "b"] if i % 2 else ["a"]} for i in range(40)]
    path = tmp_path / "d.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in lines))
    assert any("label 'a' is on every example" in p for p in problems_of(path))


@pytest.mark.parametrize(
    "line, message",
    [
        ('{"text": "ok", "label": ["a"]', "line 2: not valid JSON"),
        ('{"label": ["a"]}', 'line 2: missing "text"'),
        ('{"text": 5, "label": ["a"]}', 'line 2: "text" must be a string, got int'),
        ('{"text": "   ", "label": ["a"]}', 'line 2: empty "text"'),
        ('{"text": "ok", "label": 3}', 'line 2: "label" must be a string or a list of non-empty strings'),
    ],
    ids=["malformed-json", "missing-text", "text-not-string", "empty-text", "label-wrong-type"],
)
def test_malformed_jsonl_lines_are_named(tmp_path, line, message):
    path = tmp_path / "d.jsonl"
    path.write_text('{"text": "fine", "label": []}\n' + line + "\n")
    with pytest.raises(DataFileError) as info:
        train(path, "never", settings=TINY, directory=tmp_path / "models")
    assert any(p.startswith(message) for p in info.value.problems), info.value.problems
    assert not (tmp_path / "models").exists()


def test_rules_run_before_training(tmp_path, single_rows):
    with pytest.raises(ValidationError, match="at least 40 examples"):
        train(write_csv(tmp_path / "d.csv", single_rows[:10]), "never", settings=TINY, directory=tmp_path / "m")
    with pytest.raises(ValidationError, match="model name"):
        train(SINGLE_CSV, "bad/name", settings=TINY, directory=tmp_path / "m")


def test_validation_file_with_unknown_label(tmp_path, single_rows):
    valid = write_csv(tmp_path / "v.csv", [("something new", "refunds")])
    with pytest.raises(ValidationError, match="validation row 2 has labels not in the training data: 'refunds'"):
        train(SINGLE_CSV, "never", validation=valid, settings=TINY, directory=tmp_path / "m")


# ---------------------------------------------------------------- settings, split, pairs


@pytest.mark.parametrize("kwargs, message", [
    ({"epochs": 0}, "epochs must be an integer from 1 to 50. But it was: 0"),
    ({"max_pairs": 1}, "max_pairs must be an integer from 2"),
    ({"batch_size": 2.5}, "batch_size must be an integer"),
    ({"learning_rate": -1.0}, "learning_rate must be a number in (0.0, 0.1]. But it was: -1.0"),
    ({"validation_fraction": 0.9}, "validation_fraction"),
])
def test_settings_are_checked_naming_the_value(kwargs, message):
    with pytest.raises(ValueError) as info:
        TrainingSettings(**kwargs)
    assert message in str(info.value)


def test_settings_round_trip():
    settings = TrainingSettings(epochs=2, max_pairs=100)
    assert TrainingSettings.from_dict(settings.to_dict()) == settings
    with pytest.raises(ValueError, match="unknown training settings: colour"):
        TrainingSettings.from_dict({"colour": "red"})


def test_split_is_stratified_and_fixed():
    data = load_training_data(SINGLE_CSV)
    train_a, valid_a = split_data(data, 0.2, 42)
    train_b, valid_b = split_data(data, 0.2, 42)
    assert valid_a.where == valid_b.where and len(valid_a.examples) == 10
    assert {e.label for e in valid_a.examples} == {"billing", "shipping", "technical"}
    assert not set(train_a.where) & set(valid_a.where)
    multi_train, multi_valid = split_data(load_training_data(MULTI_JSONL), 0.2, 42)
    assert {label for e in multi_valid.examples for label in e.labels} == {"politics", "science", "sports"}


def test_pairs_are_balanced_and_capped():
    data = load_training_data(SINGLE_CSV)
    pairs = make_pairs(data, 100, seed=0)
    assert len(pairs) == 100
    same = [t for _, _, t in pairs if t == 1.0]
    assert 45 <= len(same) <= 55
    for i, j, t in pairs:
        assert (data.examples[i].label == data.examples[j].label) == (t == 1.0) and i != j
    assert total_steps(40, TrainingSettings()) == 40 and total_steps(10, TrainingSettings()) == 25
    multi = load_training_data(MULTI_JSONL)
    for i, j, t in make_pairs(multi, 60, seed=0):
        a, b = set(multi.examples[i].labels), set(multi.examples[j].labels)
        assert t == (1.0 if not a and not b else len(a & b) / len(a | b))


# ---------------------------------------------------------------- the trained models


def test_single_label_model_and_its_metrics(models_root):
    info = {i.name: i for i in store.list_models(models_root)}["tickets"]
    assert info.type == "single-label" and info.labels == ["billing", "shipping", "technical"]
    metrics = info.metrics
    assert metrics["validation"] == {"source": "split", "fraction": 0.2, "seed": 42, "n": 10}
    for side in ("trained", "baseline"):
        m = metrics[side]
        assert set(m) >= {"accuracy", "macro_precision", "macro_recall", "macro_f1", "per_label", "confusion_matrix"}
        assert np.array(m["confusion_matrix"]["matrix"]).sum() == 10
        assert sum(row["support"] for row in m["per_label"].values()) == 10
    assert metrics["steps"] == 2 and metrics["n_pairs"] == 32
    model = load_model("tickets", directory=models_root)
    result = model.classify(["I was charged twice for the same order"])[0]
    assert result.prediction in info.labels and sum(result.labels.values()) == pytest.approx(1.0)


def test_multi_label_model_marks_every_label_over_its_threshold(models_root):
    model = load_model("topics", directory=models_root)
    assert model.type == "multi-label" and set(model.thresholds) == {"politics", "science", "sports"}
    assert all(0 < t < 1 for t in model.thresholds.values())
    results = model.classify(["The senator watched the football final", "My cat sleeps on the sofa"])
    for r in results:
        assert r.classification_type == "multi-label"
        assert set(r.predictions) == {label for label, p in r.labels.items() if p >= model.thresholds[label]}
    metrics = model.info.metrics
    for side in ("trained", "baseline"):
        assert set(metrics[side]) >= {"micro_f1", "macro_f1", "exact_match", "hamming_loss", "per_label"}
        assert 0 <= metrics[side]["hamming_loss"] <= 1


def test_library_classify_by_name(models_root, monkeypatch):
    monkeypatch.setenv(store.MODELS_DIR_ENV, str(models_root))
    one = classify("Where is my package?", model="tickets")
    assert one.prediction in {"billing", "shipping", "technical"}
    with pytest.raises(LookupError, match="tickets, topics"):
        classify(["x"], model="missing-model")


def test_multilabel_head_contract():
    head = MultiLabelHead(labels=["a", "b"])
    with pytest.raises(Exception, match="not fitted yet"):
        head.predict_proba(np.zeros((1, 2)))
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 4))
    Y = np.stack([X[:, 0] > 0, X[:, 1] > 0], axis=1).astype(int)
    head.fit(X, Y)
    again = MultiLabelHead.from_saved(head.to_config(), head.to_arrays())
    assert np.array_equal(again.predict(X), head.predict(X))
    with pytest.raises(ValueError, match="on every training example"):
        MultiLabelHead(labels=["a"]).fit(X, np.ones((40, 1)))


# ---------------------------------------------------------------- progress, cancel, one at a time


def test_cancel_saves_nothing_and_releases_the_lock(tmp_path):
    seen = []
    flag = threading.Event()

    def progress(p):
        seen.append(p)
        if p.phase == "tuning":
            flag.set()

    directory = tmp_path / "models"
    with pytest.raises(TrainingCancelled, match="nothing was saved"):
        train(SINGLE_CSV, "cancelled", settings=TrainingSettings(max_pairs=64, batch_size=16, num_threads=1),
              progress=progress, cancel=flag, directory=directory)
    assert [p.phase for p in seen] == ["checking", "tuning"]
    assert seen[1].step == 1 and seen[1].total == 4 and seen[1].seconds_left >= 0
    assert list(directory.iterdir()) == []  # no model, no temp folder, no lock file
    with TrainingLock(directory, "next"):  # the lock was released
        pass


def test_a_second_training_is_refused(tmp_path):
    directory = tmp_path / "models"
    with TrainingLock(directory, "first"):
        with pytest.raises(TrainingBusyError, match="a training is already running \\(model 'first'"):
            train(SINGLE_CSV, "second", settings=TINY, directory=directory)
    # another live process holds the lock file
    (directory / LOCK_NAME).write_text(json.dumps({"pid": os.getppid(), "name": "elsewhere", "started": "now"}))
    with pytest.raises(TrainingBusyError, match="'elsewhere'"):
        with TrainingLock(directory, "mine"):
            pass
    # a lock left by a dead process is taken over
    (directory / LOCK_NAME).write_text(json.dumps({"pid": 2**22 + 12345, "name": "dead"}))
    with TrainingLock(directory, "mine"):
        assert json.loads((directory / LOCK_NAME).read_text())["name"] == "mine"
    assert not (directory / LOCK_NAME).exists()


def test_in_memory_multilabel_list_is_accepted(tmp_path):
    examples = read_multilabel_jsonl(MULTI_JSONL)
    data = load_training_data(examples)
    assert data.multi_label and data.where[0] == "examples[0]"
    assert isinstance(data.examples[0], MultiLabelExample)


# ---------------------------------------------------------------- the pages (AppTest)


def test_models_page_lists_models_and_classify_page_uses_a_custom_one(models_root, monkeypatch):
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv(store.MODELS_DIR_ENV, str(models_root))
    root = Path(__file__).resolve().parent.parent
    at = AppTest.from_file(str(root / "playground" / "ui" / "models_page.py"), default_timeout=120).run()
    assert not at.exception
    titles = [e.label for e in at.expander]
    assert any(t.startswith("tickets · single-label") for t in titles)
    assert any(t.startswith("topics · multi-label") for t in titles)
    assert any("few-shot (no training)" in str(df.value.columns.tolist()) for df in at.dataframe)

    at = AppTest.from_file(str(root / "app.py"), default_timeout=180).run()
    assert "topics (custom)" in at.selectbox(key="classify_model").options
    at.selectbox(key="classify_model").set_value("topics").run()
    assert not at.exception and not at.get("data_editor") and at.text_area(key="classify_inputs") is not None
    at.text_area(key="classify_inputs").set_value("The senator watched the football final\nI baked bread").run()
    next(b for b in at.button if b.label == "Classify").click().run()
    assert not at.exception and not at.error
    bars = [bar.proto.text for bar in at.get("progress")]
    assert len(bars) == 6 and all("threshold" in text for text in bars)
