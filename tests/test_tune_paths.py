"""Tuning on the user's own examples, the same recipe on every path: library, page (Tune step), HTTP API.

Real small model, the seed preset's 10 examples (2 labels x 5), default settings: this is the
page's first-use path, so it runs as users get it.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from streamlit.testing.v1 import AppTest

from playground.engine import classify, load_folder
from playground.server import create_app
from playground.store import list_models, read_model
from playground.training import TrainingSettings, grid_key, save_tuned, tune, tune_grid, tuned_grid_folder

APP = str(Path(__file__).resolve().parent.parent / "app.py")
FAST = TrainingSettings(steps=12, cv_folds=2, num_threads=1)


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """Models and the tuned-grid cache in temporary folders."""
    monkeypatch.setenv("CLASSIFY_MODELS_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("CLASSIFY_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path


@pytest.fixture(scope="module")
def tuned_seed(seed):
    return tune(list(seed.examples), base_model="small")


def test_tuning_the_seed_fixes_both_inputs_and_scores_honestly(tuned_seed, seed):
    """Default settings on the preset: both seed inputs negative, scores cross-validated beside the baseline."""
    from playground.training import embed_with

    proba = tuned_seed.head.predict_proba(embed_with(tuned_seed.body, list(seed.inputs)))
    negative = list(tuned_seed.head.classes_).index("negative")
    assert (proba[:, negative] > 0.5).all(), proba
    metrics = tuned_seed.metrics
    assert metrics["validation"] == {"source": "cross-validation", "folds": 2, "n": 10}
    assert set(metrics["trained"]) >= {"accuracy", "macro_f1", "per_label"}
    assert set(metrics["baseline"]) >= {"accuracy", "macro_f1", "per_label"}
    assert tuned_seed.config["n_train"] == tuned_seed.config["n_examples"] == 10  # learned from every example
    assert 1 <= metrics["steps"] <= 40


def test_a_tuned_grid_is_cached_as_a_model_folder_and_classifies(isolated, seed):
    examples = list(seed.examples)
    seen = []
    tuned, folder = tune_grid(examples, "small", settings=FAST, progress=seen.append)
    assert folder == tuned_grid_folder(grid_key(examples, "small"))
    assert (folder / "config.json").is_file() and (folder / "head.safetensors").is_file()
    phases = [p.phase for p in seen]
    assert phases[0] == "checking" and "tuning" in phases and "cross-validating" in phases and phases[-1] == "done"
    lefts = [p.seconds_left for p in seen if p.phase == "tuning" and p.seconds_left is not None]
    assert lefts and lefts[-1] <= lefts[0]
    results = load_folder(folder).classify(list(seed.inputs))
    assert [r.prediction for r in results] == ["negative", "negative"]
    assert list_models() == []  # the cache is not the models folder: nothing is listed until saved
    info = save_tuned(tuned, "seed-tuned")
    assert [m.name for m in list_models()] == ["seed-tuned"] and info.n_examples == 10
    assert [r.prediction for r in classify(list(seed.inputs), model="seed-tuned")] == ["negative", "negative"]
    # another grid gets another key: a tuned model answers only for the grid it was tuned on
    assert grid_key(examples[:-1], "small") != grid_key(examples, "small")
    assert grid_key(examples, "large") != grid_key(examples, "small")


def test_the_api_tunes_a_model_that_classify_then_uses_by_name(isolated, seed):
    client = TestClient(create_app(api_key="", preload=False), raise_server_exceptions=False)
    examples = [ex.to_dict() for ex in seed.examples]
    body = {"name": "api-tuned", "examples": examples, "model": "small", "cv_folds": 2, "steps": 12}
    created = client.post("/v1/tune", json=body)
    assert created.status_code == 201, created.text
    entry = created.json()
    assert entry["name"] == "api-tuned" and sorted(entry["labels"]) == ["negative", "positive"]
    assert entry["metrics"]["validation"]["source"] == "cross-validation"
    answer = client.post("/v1/classify", json={"inputs": list(seed.inputs), "model": "api-tuned"})
    assert answer.status_code == 200
    assert [c["prediction"] for c in answer.json()["classifications"]] == ["negative", "negative"]
    again = client.post("/v1/tune", json={**body, "keep": "tuned"})  # the same name: a new version, the first kept
    assert again.status_code == 201 and again.json()["version"] == 2, again.text
    assert again.json()["metrics"]["guard"]["chosen_by"] in ("scores", "settings")
    too_few = client.post("/v1/tune", json={**body, "name": "x", "examples": examples[:3]})
    assert too_few.status_code == 400 and "at least 2" in too_few.json()["message"]
    bad = client.post("/v1/tune", json={**body, "name": "y", "cv_folds": 1})
    assert bad.status_code == 400 and "cv_folds" in bad.json()["message"]
    windows = client.post("/v1/tune", json={**body, "name": "api-windows", "long_texts": "WINDOWS", "cv_folds": 0})
    assert windows.status_code == 201, windows.text
    assert read_model("api-windows").config["training"]["long_texts"] == "WINDOWS"
    start = client.post("/v1/tune", json={**body, "name": "z", "long_texts": "START"})
    assert start.status_code in (400, 422) and "long_texts" in start.text
    # Cohere's own endpoint is unchanged: the seed request answers as before
    cohere = client.post("/v1/classify", json={"inputs": list(seed.inputs), "examples": examples})
    assert cohere.status_code == 200 and set(cohere.json()) == {"id", "classifications", "meta"}


def test_the_classify_page_tunes_the_grid_then_classifies_with_it_and_saves_it(isolated, seed):
    at = AppTest.from_file(APP, default_timeout=300).run()
    assert not at.exception
    next(b for b in at.button if b.label == "Tune").click().run()
    assert not at.exception
    deadline = time.monotonic() + 280
    while not at.session_state["classify_tune"].done and time.monotonic() < deadline:
        time.sleep(0.5)
    job = at.session_state["classify_tune"]
    assert job.done and job.error is None, job.error
    at.run()
    success = " ".join(s.value for s in at.success)
    assert "untuned →" in success and "tuned" in success and "folds" in success
    next(b for b in at.button if b.label == "Classify").click().run()
    assert not at.exception and not at.error
    texts = [bar.proto.text for bar in at.get("progress")]
    assert any("**negative**" in t for t in texts)
    results = at.session_state["classify_results"]
    assert [r.prediction for r in results] == ["negative", "negative"]
    tuned_results = load_folder(job.folder).classify(list(seed.inputs))
    assert [r.confidence for r in results] == pytest.approx([r.confidence for r in tuned_results])
    at.text_input(key="classify_tune_name").set_value("page-tuned")
    next(b for b in at.button if b.label == "Save as custom model").click().run()
    assert not at.exception
    assert "page-tuned" in [m.name for m in list_models()]


def test_the_tuned_grid_cache_keeps_only_the_newest_tunings(tmp_path):
    """Each tuned grid is a whole encoder (90 MB small, 420 MB large): the cache keeps the newest few."""
    import os

    from playground.training import BLEND_SUFFIX, KEEP_TUNED_GRIDS, LEFTOVER_AGE_S, prune_tuned_grids

    now = time.time()
    grids = []
    for age in range(KEEP_TUNED_GRIDS + 2):  # grid-0 newest
        folder = tmp_path / f"grid-{age}"
        (folder / "body").mkdir(parents=True)
        (folder / "body" / "model.safetensors").write_bytes(b"x" * 100)
        os.utime(folder, (now - age * 60, now - age * 60))
        grids.append(folder)
    newest_blend, oldest_blend, orphan = (tmp_path / f"{name}{BLEND_SUFFIX}" for name in
                                          ("grid-0", f"grid-{KEEP_TUNED_GRIDS + 1}", "grid-gone"))
    for folder in (newest_blend, oldest_blend, orphan):  # a blend (made on a tie) goes with its grid
        folder.mkdir()
        os.utime(folder, (now, now))
    killed = tmp_path / ".tmp-grid-old-1234"
    live = tmp_path / ".tmp-grid-new-5678"
    for folder, age in ((killed, LEFTOVER_AGE_S + 60), (live, 5)):
        folder.mkdir()
        os.utime(folder, (now - age, now - age))
    removed = prune_tuned_grids(directory=tmp_path)
    assert sorted(removed) == sorted([g.name for g in grids[KEEP_TUNED_GRIDS:]]
                                     + [oldest_blend.name, orphan.name, killed.name])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([g.name for g in grids[:KEEP_TUNED_GRIDS]]
                                                                + [newest_blend.name, live.name])
    assert prune_tuned_grids(directory=tmp_path) == []  # nothing more to do
    assert prune_tuned_grids(directory=tmp_path / "absent") == []
