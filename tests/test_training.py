"""Training custom models: the data rules, the folds, the heads, metrics, progress, cancel and the lock."""

from __future__ import annotations

import json
import os
import threading

import numpy as np
import pytest

from fixtures.trained_models import MULTI_JSONL, SINGLE_CSV, TINY
from playground import classify, store, training
from playground.classifier import MultiLabelHead
from playground.data import DataFileError, MultiLabelExample, read_examples_csv, read_multilabel_jsonl
from playground.engine import load_model
from playground.store import LOCK_NAME, TrainingBusyError, TrainingLock
from playground.training import (
    MIN_TRAIN_PER_LABEL,
    TrainingCancelled,
    TrainingSettings,
    TunedModel,
    check_training_data,
    fold_indices,
    fold_steps,
    load_training_data,
    save_tuned,
    stratum_keys,
    subset,
    train,
    tune,
    usable_folds,
)
from playground.validation import MIN_EXAMPLES_PER_LABEL, MIN_LABELS, Example, ValidationError

FOUR = [("I was charged twice for one order", "billing"), ("The refund never reached my card", "billing"),
        ("My parcel is lost in transit", "shipping"), ("The courier left the box at the wrong door", "shipping")]
"""The smallest set classify accepts: 2 labels, 2 examples each."""


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


def test_the_rules_are_classify_rules():
    assert (MIN_TRAIN_PER_LABEL, MIN_LABELS, MIN_EXAMPLES_PER_LABEL) == (2, 2, 2)


def test_two_examples_per_label_are_enough(tmp_path):
    check_training_data(load_training_data(write_csv(tmp_path / "d.csv", FOUR)))  # no minimum count of examples
    check_training_data(load_training_data([Example(t, l) for t, l in FOUR]))
    multi = [MultiLabelExample("a and b", ("a", "b")), MultiLabelExample("only a", ("a",)),
             MultiLabelExample("only b", ("b",)), MultiLabelExample("neither", ())]
    check_training_data(load_training_data(multi))


def test_a_single_label(tmp_path):
    rows = [(f"text number {i}", "only") for i in range(45)]
    assert any("at least 2 labels - found 'only'" in p for p in problems_of(write_csv(tmp_path / "d.csv", rows)))


def test_fewer_than_2_per_label(tmp_path, single_rows):
    rows = single_rows + [("a rare one", "rare")]
    problems = problems_of(write_csv(tmp_path / "d.csv", rows))
    assert any("at least 2 examples per label - too few for: 'rare' (1): add examples or remove the label" in p
               for p in problems)
    assert len(problems) == 1
    check_training_data(load_training_data(write_csv(tmp_path / "ok.csv", rows + [("another rare one", "rare")])))
    problems = problems_of(write_csv(tmp_path / "tiny.csv", FOUR[:3]))  # 3 examples: 'shipping' has 1
    assert problems == ["training needs at least 2 examples per label - too few for: 'shipping' (1): "
                        "add examples or remove the label"]


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
    # "economy" on 1 line only; a duplicate line with other labels
    records.append({"text": "markets fell on Monday", "label": ["economy"]})
    records.append({"text": records[0]["text"], "label": ["politics"]})
    path = tmp_path / "d.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    problems = problems_of(path)
    assert any("at least 2 examples with each label - too few for: 'economy' (1)" in p for p in problems)
    assert any(p.startswith("line 50 repeats the text of line 1 with different labels") for p in problems)
    records.insert(-1, {"text": "markets rose on Tuesday", "label": ["economy"]})  # 2 lines: enough
    records.pop()
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    check_training_data(load_training_data(path))


@pytest.mark.parametrize("n", [4, 40])
def test_multilabel_label_on_every_example(tmp_path, n):
    """Refused at any size now (it used to be checked only from 40 examples on)."""
    lines = [{"text": f"note {i}", "label": ["a", "b"] if i % 2 else ["a"]} for i in range(n)]
    path = tmp_path / "d.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in lines))
    assert problems_of(path) == ["label 'a' is on every example, so the model cannot learn when it is absent: "
                                 "add examples without it"]


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
    with pytest.raises(ValidationError, match="at least 2 examples per label - too few for: 'shipping' \\(1\\)"):
        train(write_csv(tmp_path / "d.csv", FOUR[:3]), "never", settings=TINY, directory=tmp_path / "m")
    with pytest.raises(ValidationError, match="at least 2 labels"):
        tune([(t, "billing") for t, _ in FOUR], settings=TINY)
    with pytest.raises(ValidationError, match="model name"):
        train(SINGLE_CSV, "bad/name", settings=TINY, directory=tmp_path / "m")


def test_validation_file_with_unknown_label(tmp_path, single_rows):
    valid = write_csv(tmp_path / "v.csv", [("something new", "refunds")])
    with pytest.raises(ValidationError, match="validation row 2 has labels not in the training data: 'refunds'"):
        train(SINGLE_CSV, "never", validation=valid, settings=TINY, directory=tmp_path / "m")


# ---------------------------------------------------------------- settings, folds


@pytest.mark.parametrize("kwargs, message", [
    ({"steps": 0}, "steps must be an integer from 1 to 100000. But it was: 0"),
    ({"steps": 2.5}, "steps must be an integer from 1 to 100000. But it was: 2.5"),
    ({"keep": "always"}, "keep must be one of best, tuned. But it was: 'always'"),
    ({"cv_folds": 1}, "cv_folds must be 0 (no scores) or an integer from 2 to 20. But it was: 1"),
    ({"cv_folds": 21}, "cv_folds must be 0 (no scores) or an integer from 2 to 20. But it was: 21"),
    ({"cv_folds": -1}, "cv_folds must be 0 (no scores) or an integer from 2 to 20. But it was: -1"),
    ({"cv_folds": True}, "cv_folds must be 0 (no scores) or an integer from 2 to 20. But it was: True"),
    ({"cv_folds": False}, "cv_folds must be 0 (no scores) or an integer from 2 to 20. But it was: False"),
    ({"cv_folds": 0.0}, "cv_folds must be 0 (no scores) or an integer from 2 to 20. But it was: 0.0"),
    ({"use_label_names": "sometimes"}, "use_label_names must be one of auto, always, never. But it was: 'sometimes'"),
    ({"use_label_names": None}, "use_label_names must be one of auto, always, never. But it was: None"),
    ({"time_budget_s": 0}, "time_budget_s must be a number in (0.0, 86400.0]. But it was: 0"),
    ({"time_budget_s": -1.0}, "time_budget_s must be a number in (0.0, 86400.0]. But it was: -1.0"),
    ({"time_budget_s": "auto"}, "time_budget_s must be a number in (0.0, 86400.0]. But it was: 'auto'"),
    ({"max_seq_length": 4}, "max_seq_length must be an integer from 8 to 512. But it was: 4"),
    ({"seed": -1}, "seed must be an integer from 0 to 4294967295. But it was: -1"),
    ({"num_threads": 0}, "num_threads must be an integer from 1 to 256. But it was: 0"),
    ({"long_texts": "START"}, "long_texts must be one of END, WINDOWS. But it was: 'START'"),
])
def test_settings_are_checked_naming_the_value(kwargs, message):
    with pytest.raises(ValueError) as info:
        TrainingSettings(**kwargs)
    assert message in str(info.value)


@pytest.mark.parametrize("gone", ["epochs", "max_pairs", "batch_size", "learning_rate", "warmup_proportion",
                                  "validation_fraction", "max_steps"])
def test_removed_settings_are_refused(gone):
    with pytest.raises(TypeError, match=gone):
        TrainingSettings(**{gone: 1})
    with pytest.raises(ValueError, match=f"unknown training settings: {gone}; known: cv_folds, keep, long_texts, max_seq_length"):
        TrainingSettings.from_dict({gone: 1})


def test_settings_defaults_and_round_trip():
    defaults = TrainingSettings()
    assert defaults.to_dict() == {"steps": None, "time_budget_s": None, "use_label_names": "auto", "cv_folds": 2,
                                  "max_seq_length": 128, "seed": 42, "num_threads": None, "keep": "best",
                                  "long_texts": "END"}
    settings = TrainingSettings(time_budget_s=5.5, steps=8, use_label_names="always", cv_folds=0, num_threads=2,
                                keep="tuned")
    assert TrainingSettings.from_dict(settings.to_dict()) == settings
    assert TrainingSettings.from_dict(TINY.to_dict()) == TINY
    with pytest.raises(ValueError, match="unknown training settings: colour"):
        TrainingSettings.from_dict({"colour": "red"})


def test_settings_make_the_tuning_settings():
    auto = TrainingSettings().tuning()  # the recipe decides steps, rate, layers, batches, interpolation
    assert (auto.time_budget_s, auto.steps, auto.learning_rate, auto.interpolation) == (None, None, None, None)
    assert (auto.use_label_names, auto.max_seq_length, auto.seed, auto.threads) == ("auto", 128, 42, None)
    tiny = TINY.tuning()
    assert (tiny.time_budget_s, tiny.steps, tiny.use_label_names, tiny.seed, tiny.threads) == (None, 4, "never", 42, 1)
    capped = TrainingSettings(time_budget_s=30, steps=60).tuning()
    assert (capped.time_budget_s, capped.steps) == (30, 60)
    fixed = TrainingSettings(time_budget_s=30).tuning(steps=7, threads=1)
    assert (fixed.time_budget_s, fixed.steps, fixed.threads) == (None, 7, 1)  # a fold of a capped run: its steps


def test_each_fold_tunes_half_the_final_tunings_steps():
    """The folds only rank tuned against untuned: half the steps (at least one) is the plan for each."""
    assert [fold_steps(n) for n in (1, 2, 3, 4, 40, 41)] == [1, 1, 2, 2, 20, 21]


def test_folds_are_stratified_fixed_and_cover_every_example():
    data = load_training_data(SINGLE_CSV)
    folds = fold_indices(data, 3, 42)
    again = fold_indices(data, 3, 42)
    assert len(folds) == 3
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(folds, again, strict=True))
    assert not all(np.array_equal(a[1], b[1]) for a, b in zip(folds, fold_indices(data, 3, 7), strict=True))
    assert sorted(np.concatenate([test for _, test in folds]).tolist()) == list(range(48))
    for train_idx, test_idx in folds:
        assert not set(train_idx) & set(test_idx) and len(train_idx) + len(test_idx) == 48
        assert {data.examples[i].label for i in test_idx} == {"billing", "shipping", "technical"}
        assert all(5 <= sum(data.examples[i].label == label for i in test_idx) <= 6
                   for label in ("billing", "shipping", "technical"))
    multi = load_training_data(MULTI_JSONL)
    for train_idx, test_idx in fold_indices(multi, 3, 42):
        assert {label for i in test_idx for label in multi.examples[i].labels} == {"politics", "science", "sports"}
        assert {label for i in train_idx for label in multi.examples[i].labels} == {"politics", "science", "sports"}


def test_folds_are_lowered_to_the_smallest_label():
    four = load_training_data(FOUR)
    folds = fold_indices(four, 3, 42)
    assert len(folds) == 2  # 2 examples per label: 2 folds, one of each label held out per fold
    for train_idx, test_idx in folds:
        assert sorted(four.examples[i].label for i in test_idx) == ["billing", "shipping"]
        assert sorted(four.examples[i].label for i in train_idx) == ["billing", "shipping"]
    assert len(fold_indices(load_training_data(SINGLE_CSV), 20, 0)) == 16  # 16 per label


def test_stratum_keys_and_subset():
    multi = load_training_data([MultiLabelExample("a b", ("a", "b")), MultiLabelExample("a", ("a",)),
                                MultiLabelExample("a again", ("a",)), MultiLabelExample("b c", ("b", "c")),
                                MultiLabelExample("c", ("c",)), MultiLabelExample("none", ())])
    # the rarest label of each example (ties by name: "b c" -> "b"); a key held by one example only
    # ("c" here, and "" for the example without labels) becomes "<rare>"
    assert stratum_keys(multi) == ["b", "a", "a", "b", "<rare>", "<rare>"]
    assert stratum_keys(load_training_data(FOUR)) == ["billing", "billing", "shipping", "shipping"]
    part = subset(multi, [4, 1])
    assert part.where == ["examples[4]", "examples[1]"] and part.multi_label and part.source == multi.source
    assert [e.text for e in part.examples] == ["c", "a"]


# ---------------------------------------------------------------- the trained models


def test_single_label_model_and_its_metrics(models_root):
    info = {i.name: i for i in store.list_models(models_root)}["tickets"]
    assert info.type == "single-label" and info.labels == ["billing", "shipping", "technical"]
    metrics = info.metrics
    # cross-validated on all 48 examples (out-of-fold predictions), and the saved model learned from all 48
    assert metrics["validation"] == {"source": "cross-validation", "folds": 2, "n": 48}
    for side in ("trained", "baseline"):
        m = metrics[side]
        assert set(m) >= {"accuracy", "macro_precision", "macro_recall", "macro_f1", "per_label", "confusion_matrix"}
        assert m["n"] == 48 and 0 <= m["accuracy"] <= 1
        assert np.array(m["confusion_matrix"]["matrix"]).sum() == 48
        assert sum(row["support"] for row in m["per_label"].values()) == 48
    assert metrics["steps"] == 4 and "n_pairs" not in metrics
    assert metrics["used_label_names"] is False and metrics["warnings"] == []
    assert 0 < metrics["tuning_seconds"] <= metrics["training_seconds"]
    config = json.loads((models_root / "tickets" / store.CONFIG_NAME).read_text())
    assert config["n_train"] == config["n_examples"] == info.n_examples == 48
    training = config["training"]
    assert {k: training[k] for k in TINY.to_dict()} == TINY.to_dict()
    assert training["source"] == str(SINGLE_CSV) and training["descriptions"] == {}
    assert "tuned top layers" in training["method"]
    assert training["tuning"]["steps"] == 4 and training["tuning"]["n_texts"] == 48
    assert training["tuning"]["used_label_names"] is False and len(training["tuning"]["losses"]) == 4
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
    assert metrics["validation"] == {"source": "cross-validation", "folds": 2, "n": 48}
    for side in ("trained", "baseline"):
        assert set(metrics[side]) >= {"micro_f1", "macro_f1", "exact_match", "hamming_loss", "per_label"}
        assert 0 <= metrics[side]["hamming_loss"] <= 1 and metrics[side]["n"] == 48
        assert set(metrics[side]["per_label"]) == {"politics", "science", "sports"}
    assert metrics["steps"] == 4
    config = json.loads((models_root / "topics" / store.CONFIG_NAME).read_text())
    assert config["n_train"] == config["n_examples"] == 48 and config["training"]["tuning"]["multi_label"] is True


def test_library_classify_by_name(models_root, monkeypatch):
    monkeypatch.setenv(store.MODELS_DIR_ENV, str(models_root))
    one = classify("Where is my package?", model="tickets")
    assert one.prediction in {"billing", "shipping", "technical"}
    with pytest.raises(LookupError, match="tickets, topics"):
        classify(["x"], model="missing-model")


def test_four_examples_train_and_save(tmp_path, monkeypatch):
    """2 labels × 2 examples (classify's minimum) make a model; cv_folds=3 is lowered to the 2 a label allows."""
    seen = []
    directory = tmp_path / "models"
    settings = TrainingSettings(steps=4, use_label_names="never", cv_folds=3, num_threads=1)
    info = train(FOUR, "four", settings=settings, progress=seen.append, directory=directory)
    assert info.status == "ok" and info.labels == ["billing", "shipping"] and info.n_examples == 4
    config = json.loads((directory / "four" / store.CONFIG_NAME).read_text())
    assert config["n_train"] == config["n_examples"] == 4
    metrics = info.metrics
    assert metrics["validation"] == {"source": "cross-validation", "folds": 2, "n": 4}
    for side in ("trained", "baseline"):
        assert metrics[side]["n"] == 4 and np.array(metrics[side]["confusion_matrix"]["matrix"]).sum() == 4
    assert metrics["steps"] == 4 and config["training"]["cv_folds"] == 3  # the setting as asked
    # progress: each phase in order, "done" once (after saving); cross-validation: 2 folds × 2 steps (half the
    # final tuning's: fold_steps), one after another here (num_threads=1 asks for that)
    phases = [p.phase for p in seen]
    assert phases == ["checking"] + ["tuning"] * 4 + ["cross-validating"] * 4 + ["saving", "done"]
    assert [(p.step, p.total) for p in seen if p.phase == "tuning"] == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert [(p.step, p.total) for p in seen if p.phase == "cross-validating"] == [(s, 4) for s in range(1, 5)]
    assert all(p.seconds_left is not None and p.seconds_left >= 0
               for p in seen if p.phase not in ("checking", "saving"))
    assert [p.elapsed for p in seen[:-2]] == sorted(p.elapsed for p in seen[:-2])
    assert seen[-1].message == "saved model 'four'" and seen[-1].fraction == 1.0
    assert sorted(p.name for p in directory.iterdir()) == ["four"]  # lock released, no temp folder
    monkeypatch.setenv(store.MODELS_DIR_ENV, str(directory))
    result = classify("The parcel never arrived", model="four")
    assert result.prediction in {"billing", "shipping"} and set(result.labels) == {"billing", "shipping"}


def test_folds_beside_the_final_tuning_score_as_one_after_another(monkeypatch, single_rows):
    """On idle CPUs the folds run in worker processes beside the final tuning, dropout on (the recipe's):
    each draws its own random numbers, so the scores and the model equal the folds run one after another."""
    from playground import tuning

    settings = dict(steps=4, use_label_names="never", cv_folds=2, seed=7)
    alone = tune(single_rows, settings=TrainingSettings(**settings, num_threads=1))
    monkeypatch.setattr(tuning, "idle_cpus", lambda window_s=0.2: 2.0)  # a quiet 2-core machine, whatever runs now
    monkeypatch.setattr(tuning, "usable_cpus", lambda: 2)
    seen = []
    beside = tune(single_rows, settings=TrainingSettings(**settings), progress=seen.append)
    assert alone.metrics["parallel_jobs"] == 1 and beside.metrics["parallel_jobs"] == 3
    assert beside.config["training"]["tuning"]["dropout"] is True
    assert beside.metrics["trained"] == alone.metrics["trained"]
    assert beside.metrics["baseline"] == alone.metrics["baseline"]
    for a, b in zip(alone.body.parameters(), beside.body.parameters()):
        assert torch_equal(a, b)
    # progress counts every job's steps: the final tuning's 4 and the folds' 2 × 2 (half the final tuning's each,
    # reported from their processes)
    assert max(p.step for p in seen if p.phase == "tuning") == 4
    cv_steps = [p.message for p in seen if "step 4/4" in p.message]
    assert cv_steps, [p.message for p in seen]


def test_cancel_with_the_folds_beside_ends_their_workers(monkeypatch, single_rows):
    """Cancel while the folds run in worker processes: nothing is returned and no worker is left running."""
    import subprocess

    from playground import tuning

    monkeypatch.setattr(tuning, "idle_cpus", lambda window_s=0.2: 2.0)
    monkeypatch.setattr(tuning, "usable_cpus", lambda: 2)
    flag = threading.Event()
    seen = []

    def progress(p):
        seen.append(p)
        if "folds for the scores alongside: step 0/" not in p.message and "alongside" in p.message:
            flag.set()  # a fold has reported a step from its worker: cancel now

    with pytest.raises(TrainingCancelled, match="nothing was saved"):
        tune(single_rows, settings=TrainingSettings(steps=200, use_label_names="never", cv_folds=2), progress=progress,
             cancel=flag)
    assert flag.is_set() and max(p.step for p in seen if p.phase == "tuning") < 200
    workers = subprocess.run(["pgrep", "-f", "playground.processes"], capture_output=True, text=True).stdout.split()
    assert workers == []


def torch_equal(a, b) -> bool:
    import torch

    return bool(torch.equal(a, b))


def test_a_script_without_a_main_guard_runs_once(tmp_path):
    """The fold workers are ``python -m playground.processes``, not multiprocessing's spawn, which imports the
    caller's main script again: a user's script that tunes at its top level must not run twice."""
    import subprocess
    import sys

    from playground.processes import PACKAGE_ROOT

    script = tmp_path / "tune_me.py"
    script.write_text(
        "from playground import tuning\n"
        "from playground.training import TrainingSettings, tune\n"
        "tuning.idle_cpus = lambda window_s=0.2: 2.0\n"
        "tuning.usable_cpus = lambda: 2\n"
        "print('script body ran')\n"
        f"rows = {FOUR!r}\n"
        "tuned = tune(rows, settings=TrainingSettings(steps=2, use_label_names='never', cv_folds=2))\n"
        "print('jobs', tuned.metrics['parallel_jobs'])\n", encoding="utf-8")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=600, cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": PACKAGE_ROOT})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("script body ran") == 1 and "jobs 3" in done.stdout


def test_tune_saves_nothing_until_save_tuned(tmp_path, monkeypatch):
    directory = tmp_path / "models"
    monkeypatch.setenv(store.MODELS_DIR_ENV, str(directory))
    monkeypatch.chdir(tmp_path)
    seen = []
    settings = TrainingSettings(steps=4, use_label_names="never", cv_folds=0, num_threads=1)
    tuned = tune(FOUR, settings=settings, descriptions={"billing": "money, invoices", "shipping": " "},
                 progress=seen.append)
    assert isinstance(tuned, TunedModel)
    assert list(tmp_path.iterdir()) == []  # no models folder, here or where the env var points
    assert [p.phase for p in seen] == ["checking"] + ["tuning"] * 4 + ["done"]  # cv_folds=0: no cross-validation
    metrics = tuned.metrics
    assert metrics["validation"] == {"source": "none", "n": 0}
    assert metrics["trained"] == {} and metrics["baseline"] == {} and metrics["steps"] == 4
    assert tuned.config["n_train"] == tuned.config["n_examples"] == 4
    assert tuned.config["labels"] == ["billing", "shipping"]
    assert tuned.config["training"]["descriptions"] == {"billing": "money, invoices"}  # blank ones dropped
    assert tuned.config["training"]["source"] == "examples"

    info = save_tuned(tuned, "kept", directory=directory)
    assert info.name == "kept" and info.status == "ok" and info.metrics == metrics
    assert [i.name for i in store.list_models(directory)] == ["kept"]
    assert sorted(p.name for p in directory.iterdir()) == ["kept"]  # no lock, no temp folder
    texts = ["I was billed twice", "The courier lost my box"]
    result = classify(texts, model="kept", precision="fp32")
    assert all(r.prediction in {"billing", "shipping"} for r in result)
    X = tuned.body.encode(texts, normalize_embeddings=True)
    assert [r.prediction for r in result] == [str(p) for p in tuned.head.predict(X)]  # the saved model is the tuned one
    again = save_tuned(tuned, "kept", directory=directory)  # a new version; the first is kept
    assert again.version == 2 and [v.version for v in store.list_versions("kept", directory)] == [2, 1]
    with pytest.raises(ValidationError, match="model name"):
        save_tuned(tuned, "../kept", directory=directory)


def test_a_validation_file_is_scored_instead_of_folds(tmp_path):
    valid = write_csv(tmp_path / "v.csv", [(FOUR[0][0], "billing"), ("Where is my package?", "shipping"),
                                            ("Why did you charge my card again?", "billing")])
    tuned = tune(FOUR, validation=valid, settings=TINY)
    metrics = tuned.metrics
    assert metrics["validation"] == {"source": "file", "file": str(valid), "n": 3}
    for side in ("trained", "baseline"):
        assert metrics[side]["n"] == 3 and np.array(metrics[side]["confusion_matrix"]["matrix"]).sum() == 3
    assert metrics["warnings"] == ["1 validation texts are also in the training data: "
                                   "the scores will look better than they are"]
    assert tuned.config["n_train"] == 4


def test_multilabel_cross_validation_when_a_fold_has_a_label_everywhere():
    """Accepted data ('a' on 3 of 4) whose every 2-fold split leaves 'a' on all of some fold's training part:
    that fold predicts 'a' for its held-out examples instead of failing to fit the head."""
    examples = [MultiLabelExample("apples and pears", ("a",)), MultiLabelExample("apples again", ("a",)),
                MultiLabelExample("apples with bananas", ("a", "b")), MultiLabelExample("just bananas", ("b",))]
    check_training_data(load_training_data(examples))
    tuned = tune(examples, settings=TINY)
    metrics = tuned.metrics
    assert metrics["validation"] == {"source": "cross-validation", "folds": 2, "n": 4}
    for side in ("trained", "baseline"):
        assert metrics[side]["n"] == 4 and set(metrics[side]["per_label"]) == {"a", "b"}
        assert metrics[side]["per_label"]["a"]["support"] == 3 and metrics[side]["per_label"]["b"]["support"] == 2
    assert tuned.config["type"] == "multi-label" and tuned.config["n_train"] == 4


def test_folds_that_leave_fewer_than_2_labels_are_redrawn(monkeypatch):
    examples = [MultiLabelExample("apples and bananas", ("a", "b")), MultiLabelExample("apples", ("a",)),
                MultiLabelExample("bananas", ("b",)), MultiLabelExample("nothing here", ()),
                MultiLabelExample("nothing at all", ())]
    data = load_training_data(examples)
    check_training_data(data)
    assert stratum_keys(data) == ["a", "a", "<rare>", "", ""]  # a singleton stratum: plain (shuffled) KFold
    bad = fold_indices(data, 2, 44)
    assert min(len(subset(data, train_idx).labels) for train_idx, _ in bad) < 2
    split = usable_folds(data, 2, 44)  # seeds 44 and 45 leave a part with < 2 labels; 46 does not
    assert [t.tolist() for _, t in split] == [t.tolist() for _, t in fold_indices(data, 2, 46)]
    assert all(len(subset(data, train_idx).labels) >= 2 for train_idx, _ in split)
    assert [t.tolist() for _, t in usable_folds(data, 2, 42)] == [t.tolist() for _, t in fold_indices(data, 2, 42)]
    monkeypatch.setattr(training, "CV_SEED_TRIES", 1)
    with pytest.raises(ValidationError, match="cross-validation found no split of these 5 examples into folds "
                                              "that each leave at least 2 labels to tune on"):
        usable_folds(data, 2, 44)
    seen = []
    with pytest.raises(ValidationError, match="set cv_folds=0"):  # refused before any tuning
        tune(examples, settings=TrainingSettings(steps=2, use_label_names="never", cv_folds=2, seed=44,
                                                  num_threads=1), progress=seen.append)
    assert seen == []


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
        train(SINGLE_CSV, "cancelled", settings=TINY, progress=progress, cancel=flag, directory=directory)
    assert [p.phase for p in seen] == ["checking", "tuning"]
    assert seen[1].step == 1 and seen[1].total == 4 and seen[1].seconds_left >= 0
    assert seen[1].message == "tuning the encoder on all 48 examples, step 1/4"
    assert list(directory.iterdir()) == []  # no model, no temp folder, no lock file
    with TrainingLock(directory, "next"):  # the lock was released
        pass


def test_cancel_during_cross_validation_saves_nothing(tmp_path):
    seen = []
    flag = threading.Event()

    def progress(p):
        seen.append(p)
        if p.phase == "cross-validating":
            flag.set()

    directory = tmp_path / "models"
    with pytest.raises(TrainingCancelled, match="nothing was saved"):
        train(FOUR, "cancelled", settings=TINY, progress=progress, cancel=flag, directory=directory)
    assert [p.phase for p in seen] == ["checking"] + ["tuning"] * 4 + ["cross-validating"]
    assert (seen[-1].step, seen[-1].total) == (1, 4) and seen[-1].message.endswith("2 folds, each tuned without its fold, step 1/4")
    assert list(directory.iterdir()) == []  # no model, no temp folder, no lock file
    with TrainingLock(directory, "next"):
        pass
    seen.clear()
    with pytest.raises(TrainingCancelled, match="nothing was saved"):  # tune() alike, with a callable flag
        tune(FOUR, settings=TINY, progress=seen.append, cancel=lambda: seen[-1].phase == "cross-validating")


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
    captions = [c.value for c in at.caption]
    assert any("at least 2 labels, 2 examples each" in c for c in captions), captions
    assert any(c.startswith("Scores cross-validated on your 48 examples (2 folds;") and "4 tuning steps" in c
               for c in captions), captions
    numbers = {w.label.split(" (")[0]: w for w in at.number_input}
    assert set(numbers) >= {"Tuning steps", "Cross-validation folds for the scores"}, list(numbers)
    assert not set(numbers) & {"Epochs", "Pairs", "Batch size", "Time budget for tuning"}
    assert numbers["Tuning steps"].value == 0 and numbers["Cross-validation folds for the scores"].value == 2
    keep = next(s for s in at.selectbox if s.label == "Keep")
    assert keep.options == ["the better of tuned and untuned (by the honest scores; a blend on a tie)",
                            "the tuned model, always"]
    assert keep.value == "best"
    names = next(s for s in at.selectbox if s.label == "Use the label names")
    assert names.options == ["auto", "always", "never"] and names.value == "auto"

    at = AppTest.from_file(str(root / "app.py"), default_timeout=180).run()
    assert "topics (custom)" in at.selectbox(key="classify_model").options
    at.selectbox(key="classify_model").set_value("topics").run()
    assert not at.exception and not at.get("data_editor") and at.text_area(key="classify_inputs") is not None
    at.text_area(key="classify_inputs").set_value("The senator watched the football final\nI baked bread").run()
    next(b for b in at.button if b.label == "Classify").click().run()
    assert not at.exception and not at.error
    bars = [bar.proto.text for bar in at.get("progress")]
    assert len(bars) == 6 and all("threshold" in text for text in bars)


# ---------------------------------------------------------------- the guard (issue #24)


def _cv(accuracy: float, log_loss: float | None = None) -> dict:
    return {"accuracy": accuracy, **({"log_loss": log_loss} if log_loss is not None else {})}


@pytest.mark.parametrize(("tuned", "untuned", "keep", "choice", "words"), [
    (_cv(0.9), _cv(0.75), "best", "tuned", ["helped", "75% untuned → 90% tuned", "tuned model is used"]),
    (_cv(0.7), _cv(0.8), "best", "untuned", ["did not beat", "80% untuned, 70% tuned", "untuned model is kept",
                                            "still choose the tuned one"]),
    (_cv(0.8, 0.5), _cv(0.8, 0.4), "best", "blended", ["scored the same", "80% untuned, 80% tuned", "a blend",
                                                       "still choose the tuned or the untuned one"]),
    (_cv(0.8, 0.3), _cv(0.8, 0.4), "best", "blended", ["scored the same", "a blend"]),  # log-loss no longer decides
    (_cv(0.8), _cv(0.8), "tuned", "tuned", ["did not beat", "kept as asked"]),
    (_cv(0.7), _cv(0.8), "tuned", "tuned", ["did not beat", "kept as asked"]),
])
def test_the_guard_keeps_the_tuned_model_only_when_the_honest_scores_say_it_is_better(tuned, untuned, keep, choice,
                                                                                     words):
    """Better: tuned; worse: untuned; level: a blend (on 110 small draws it kept 0.38 points more than log-loss's
    pick of one of the two, docs/TUNING_RECIPE.md); ``keep="tuned"`` overrules all three."""
    from playground.training import guard_decision

    decision = guard_decision(tuned, untuned, keep, scored_on="cross-validated")
    assert decision["choice"] == choice
    for word in words:
        assert word in decision["message"], decision["message"]
    assert (decision["tuned"], decision["untuned"]) == (tuned["accuracy"], untuned["accuracy"])


def test_without_scores_the_guard_says_the_tuned_model_is_unchecked():
    from playground.training import guard_decision

    decision = guard_decision({}, {}, "best", scored_on="")
    assert decision["choice"] == "tuned" and "Not scored" in decision["message"]


def test_multi_label_scores_are_guarded_on_micro_f1():
    from playground.training import guard_decision

    decision = guard_decision({"micro_f1": 0.5}, {"micro_f1": 0.6}, "best", scored_on="held-out")
    assert decision["choice"] == "untuned" and "micro-F1 60% untuned, 50% tuned" in decision["message"]
    assert guard_decision({"micro_f1": 0.6}, {"micro_f1": 0.6}, "best", scored_on="held-out")["choice"] == "blended"


def test_choosing_the_untuned_model_saves_the_untuned_encoder_and_head(tmp_path, monkeypatch):
    """What the guard keeps (here chosen by hand, as the user can) is what the saved model answers with: the
    untuned choice saves the base encoder and the head on its embeddings, so it answers as instant classify does."""
    from playground.training import save_tuned, tune

    tuned = tune(SINGLE_CSV, settings=TrainingSettings(steps=4, use_label_names="never", cv_folds=0, num_threads=1))
    assert tuned.choice == "tuned" and tuned.guard["chosen_by"] == "no scores"
    untuned = tuned.with_choice("untuned")
    assert untuned.choice == "untuned" and untuned.guard["chosen_by"] == "user" and tuned.choice == "tuned"
    directory = tmp_path / "models"
    info = save_tuned(untuned, "kept-untuned", directory=directory)
    config = json.loads((directory / "kept-untuned" / store.CONFIG_NAME).read_text())
    assert config["tuned"] is False and config["metrics"]["guard"]["choice"] == "untuned"
    assert info.labels == tuned.head.classes_.tolist()
    monkeypatch.setenv(store.MODELS_DIR_ENV, str(directory))
    texts = ["My card was charged twice", "Where is my parcel?", "The app crashes when I log in"]
    saved = classify(texts, model="kept-untuned")
    instant = classify(texts, read_examples_csv(SINGLE_CSV).examples, "small")
    assert [r.prediction for r in saved] == [r.prediction for r in instant]
    for a, b in zip(saved, instant):
        assert all(abs(a.labels[k] - b.labels[k]) < 1e-3 for k in a.labels)
    with pytest.raises(ValueError, match="choice must be one of 'tuned', 'untuned', 'blended'"):
        tuned.with_choice("best")
    with pytest.raises(ValueError, match="kept no blend"):  # made only on a tie
        tuned.with_choice("blended")


def test_on_a_tie_the_blend_sits_part_way_between_and_is_what_is_saved(tmp_path, monkeypatch):
    """Honest scores level (both 100% here): the guard keeps a blend, the tuned layers moved back toward the
    untuned ones to the recipe's tie mix (small: 0.5 of the way, where the tuning itself ends at 0.75); the saved
    model answers with that blend, and the user can still take either of the two."""
    import torch

    from fixtures.trained_models import LEVEL_EXAMPLES

    from playground.training import embed_with
    from playground.tuning import RECIPES, blend_encoders

    tuned = tune(LEVEL_EXAMPLES, settings=TrainingSettings(steps=4, cv_folds=2, num_threads=1))
    guard = tuned.guard
    assert guard["tuned"] == guard["untuned"] and guard["choice"] == "blended", guard
    assert "scored the same" in guard["message"] and guard["blend_interpolation"] == RECIPES["small"].tie_interpolation
    assert tuned.choices == ["tuned", "untuned", "blended"] and tuned.choice == "blended"
    base, body, blend = (dict(m.named_parameters()) for m in (tuned.base, tuned.body, tuned.blend))
    moved = [name for name in base if not torch.equal(base[name], body[name])]
    assert moved and len(moved) < len(base)  # the top layers only
    fraction = RECIPES["small"].tie_interpolation / RECIPES["small"].interpolation
    for name in base:
        torch.testing.assert_close(blend[name], base[name] + fraction * (body[name] - base[name]))
    for name in moved:  # strictly between the two
        assert 0 < (blend[name] - base[name]).norm() < (body[name] - base[name]).norm()
    same = blend_encoders(tuned.base, tuned.body, 1.0)
    assert all(torch.equal(p, body[n]) for n, p in same.named_parameters())
    assert not torch.equal(base[moved[0]], body[moved[0]])  # blending left both as they were

    directory = tmp_path / "models"
    save_tuned(tuned, "level", directory=directory)
    config = json.loads((directory / "level" / store.CONFIG_NAME).read_text())
    assert config["tuned"] is True and config["metrics"]["guard"]["choice"] == "blended"
    monkeypatch.setenv(store.MODELS_DIR_ENV, str(directory))
    texts = ["Cherries and plums in a basket", "The train left the station"]
    saved = classify(texts, model="level")
    expected = tuned.blend_head.predict_proba(embed_with(tuned.blend, texts))
    classes = [str(c) for c in tuned.blend_head.classes_]
    for result, row in zip(saved, expected):
        assert result.labels == pytest.approx(dict(zip(classes, row.tolist())), abs=1e-3)
    assert [r.prediction for r in saved] == ["fruit", "vehicle"]
    assert tuned.with_choice("tuned").chosen()[0] is tuned.body and tuned.choice == "blended"


def test_long_examples_tune_on_their_start_and_the_head_reads_their_windows():
    """long_texts="WINDOWS": the encoder tunes on each example's start (tuning on every window scored lower on
    the long sets), the head reads all of it: two tickets that differ only past the window get their own labels."""
    from fixtures.long_documents import LONG_EXAMPLES, LONG_TICKETS

    from playground.training import embed_with

    examples = [*LONG_EXAMPLES, *LONG_TICKETS.items()]
    plain = TrainingSettings(steps=2, use_label_names="never", cv_folds=0, num_threads=1)
    windowed = TrainingSettings(steps=2, use_label_names="never", cv_folds=0, num_threads=1, long_texts="WINDOWS")
    cut, read = tune(examples, settings=plain), tune(examples, settings=windowed)
    for tuned in (cut, read):
        assert tuned.config["training"]["tuning"]["n_texts"] == len(examples)  # one training text an example
    assert read.config["training"]["long_texts"] == "WINDOWS"
    tickets, truth = list(LONG_TICKETS), list(LONG_TICKETS.values())
    assert read.head.predict(embed_with(read.body, tickets, windows=True)).tolist() == truth
    read_cut = cut.head.predict(embed_with(cut.body, tickets)).tolist()
    assert read_cut[0] == read_cut[1]  # cut, both read as the same opening: one of them wrong
