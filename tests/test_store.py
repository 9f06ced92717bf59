"""The model store: names, atomic saves, listing broken folders, loading, rename, delete, fresh-process reload."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from playground import store
from playground.engine import load_model
from playground.store import (
    BrokenModelError,
    UnknownModelError,
    list_models,
    validate_model_name,
)
from playground.validation import ValidationError

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def models_root(trained_dir) -> Path:
    return trained_dir


@pytest.fixture
def models_copy(models_root, tmp_path) -> Path:
    """A private copy of the trained models, free to break."""
    target = tmp_path / "models"
    shutil.copytree(models_root, target, ignore=shutil.ignore_patterns(".*"))
    return target


@pytest.mark.parametrize("name", ["tickets", "topics-v2", "A_1", "x" * 64, "9lives"])
def test_good_names_pass(name):
    assert validate_model_name(name) == name


@pytest.mark.parametrize(
    "name, fragment",
    [
        ("", "empty"),
        ("../escape", "looks like a path"),
        ("a/b", "looks like a path"),
        ("/abs", "looks like a path"),
        ("a..b", "looks like a path"),
        ("a\\b", "looks like a path"),
        ("naïve", "LATIN SMALL LETTER I WITH DIAERESIS"),
        ("m\u043edel", "CYRILLIC SMALL LETTER O"),  # a look-alike "o"
        ("two words", "SPACE"),
        ("x" * 65, "at most 64"),
        ("-x", "starts with '-'"),
        ("small", "base model"),
        (".hidden", "not allowed"),
    ],
    ids=["empty", "dotdot", "slash", "absolute", "inner-dotdot", "backslash", "accent", "homoglyph", "space",
         "too-long", "dash-first", "base-name", "dot-first"],
)
def test_bad_names_are_refused_naming_the_rule(name, fragment):
    with pytest.raises(ValidationError, match="model name") as info:
        validate_model_name(name)
    assert fragment in str(info.value)


def test_models_dir_follows_the_env_var(monkeypatch, tmp_path):
    monkeypatch.setenv(store.MODELS_DIR_ENV, str(tmp_path))
    assert store.models_dir() == tmp_path
    monkeypatch.delenv(store.MODELS_DIR_ENV)
    monkeypatch.chdir(tmp_path)
    assert store.models_dir() == tmp_path / "models"


def test_saved_folder_holds_only_json_and_safetensors(models_root):
    folder = models_root / "tickets"
    config = json.loads((folder / store.CONFIG_NAME).read_text())
    assert config["schema_version"] == store.SCHEMA_VERSION and config["type"] == "single-label"
    assert config["labels"] == ["billing", "shipping", "technical"]
    assert config["training"]["steps"] == 4 and config["training"]["cv_folds"] == 2
    assert config["training"]["tuning"]["steps"] == 4 and config["n_train"] == config["n_examples"] == 48
    json.dumps(config, allow_nan=False)  # plain JSON: the tuning report holds no NaN / inf
    suffixes = {p.suffix for p in folder.rglob("*") if p.is_file()}
    assert suffixes <= {".json", ".safetensors", ".txt", ".md"}, suffixes
    assert (folder / store.BODY_DIR / "model.safetensors").is_file()


def test_list_models_reports_both(models_root):
    infos = {i.name: i for i in list_models(models_root)}
    assert set(infos) == {"tickets", "topics"}
    assert infos["tickets"].status == "ok" and infos["tickets"].problem is None
    assert infos["topics"].type == "multi-label" and infos["topics"].n_examples == 48
    assert set(infos["topics"].to_dict()) == {"name", "type", "base_model", "labels", "metrics", "n_examples",
                                              "created", "status", "problem", "version"}


@pytest.mark.parametrize(
    "damage, reason",
    [
        (lambda f: (f / "head.safetensors").unlink(), "head.safetensors is missing"),
        (lambda f: (f / "head.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{bad"),
         "head.safetensors"),
        (lambda f: (f / "body" / "model.safetensors").write_bytes(
            (f / "body" / "model.safetensors").read_bytes()[:5000]), "body/model.safetensors"),
        (lambda f: shutil.rmtree(f / "body"), "body/ is missing"),
        (lambda f: (f / "config.json").write_text("{not json"), "config.json"),
        (lambda f: (f / "config.json").unlink(), "config.json is missing"),
    ],
    ids=["head-missing", "head-corrupt", "body-truncated", "body-missing", "config-corrupt", "config-missing"],
)
def test_a_broken_folder_is_listed_with_its_reason_and_others_keep_working(models_copy, damage, reason):
    damage(models_copy / "tickets")
    infos = {i.name: i for i in list_models(models_copy)}
    assert infos["tickets"].status == "broken"
    assert reason in infos["tickets"].problem
    assert infos["topics"].status == "ok"
    with pytest.raises(BrokenModelError, match=reason.split()[0].replace("/", ".")):
        load_model("tickets", directory=models_copy)
    assert load_model("topics", directory=models_copy).classify(["The striker scored"])[0].labels


def test_unknown_model_lists_the_available_ones(models_root):
    with pytest.raises(UnknownModelError) as info:
        load_model("nope", directory=models_root)
    assert "'nope'" in str(info.value) and "tickets" in str(info.value) and "topics" in str(info.value)
    with pytest.raises(UnknownModelError):
        load_model("../tickets", directory=models_root)


def test_an_interrupted_save_is_never_listed(models_copy):
    leftover = models_copy / ".tmp-half-1234abcd"
    shutil.copytree(models_copy / "tickets", leftover)
    (leftover / "head.safetensors").unlink()
    assert [i.name for i in list_models(models_copy)] == ["tickets", "topics"]
    with pytest.raises(UnknownModelError):
        load_model(".tmp-half-1234abcd", directory=models_copy)


def test_save_refuses_to_overwrite_and_cleans_its_temp_folder(models_copy):
    with pytest.raises(ValidationError, match="already exists"):
        store.save_model("tickets", config={}, head_arrays={}, write_body=lambda p: None, directory=models_copy)

    def failing_body(path: Path) -> None:
        path.mkdir()
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        store.save_model("fresh", config={"type": "single-label"}, head_arrays={},
                         write_body=failing_body, directory=models_copy)
    assert sorted(p.name for p in models_copy.iterdir()) == ["tickets", "topics"]


def test_load_is_cached_and_rename_delete_work(models_copy):
    first = load_model("tickets", directory=models_copy)
    assert load_model("tickets", directory=models_copy) is first
    before = first.classify(["My parcel never arrived"])[0]
    info = store.rename_model("tickets", "tickets-v2", directory=models_copy)
    assert info.name == "tickets-v2" and info.status == "ok"
    assert json.loads((models_copy / "tickets-v2" / "config.json").read_text())["name"] == "tickets-v2"
    with pytest.raises(UnknownModelError):
        load_model("tickets", directory=models_copy)
    after = load_model("tickets-v2", directory=models_copy).classify(["My parcel never arrived"])[0]
    assert after.labels == pytest.approx(before.labels, abs=1e-6)
    with pytest.raises(ValidationError, match="already exists"):
        store.rename_model("tickets-v2", "topics", directory=models_copy)
    store.delete_model("tickets-v2", directory=models_copy)
    assert [i.name for i in list_models(models_copy)] == ["topics"]
    assert not [p for p in models_copy.iterdir() if p.name.startswith(".")]


def test_reload_in_a_fresh_process_gives_identical_predictions(models_root):
    texts = ["I was charged twice this month", "The parcel is lost", "The app crashes on start"]
    multi = ["The senator watched the football final", "A new comet was found", "I baked some bread"]
    # Embeddings depend slightly on the batch (padding) and the precision (the engine's default
    # is "auto", bf16 on some CPUs), so use fp32 and the same batches on both sides.
    here = {}
    for name, batch in (("tickets", texts), ("topics", multi)):
        model = load_model(name, directory=models_root, precision="fp32")
        model.encoder.clear_cache()
        here[name] = [r.to_dict() for r in model.classify(batch)]
    code = (
        "import json, sys\n"
        "from playground import classify\n"
        f"out = {{'tickets': [r.to_dict() for r in classify({texts!r}, model='tickets', precision='fp32')],\n"
        f"       'topics': [r.to_dict() for r in classify({multi!r}, model='topics', precision='fp32')]}}\n"
        "json.dump(out, sys.stdout)\n"
    )
    env = {**os.environ, store.MODELS_DIR_ENV: str(models_root), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    there = json.loads(done.stdout)
    for name in ("tickets", "topics"):
        for a, b in zip(here[name], there[name], strict=True):
            assert a["prediction"] == b["prediction"] and a["predictions"] == b["predictions"]
            assert a["labels"] == pytest.approx(b["labels"], abs=1e-6)
    assert there["topics"][0]["classification_type"] == "multi-label"


# ----------------------------------------------------------------------------------------------
# Versions: saving under an existing name keeps the earlier model


def _save_as_new_version(directory: Path, name: str, source: str) -> store.ModelInfo:
    """Save the model ``source`` (its config, head and body) under ``name`` as its next version."""
    return store.copy_model(store.model_folder(source, directory), name, replace=True, directory=directory)


def test_saving_under_an_existing_name_keeps_the_earlier_version_with_its_scores(models_copy):
    before = {i.name: i for i in list_models(models_copy)}["tickets"]
    assert before.version == 1 and before.metrics["trained"]
    info = _save_as_new_version(models_copy, "tickets", "topics")
    assert info.name == "tickets" and info.version == 2 and info.type == "multi-label"
    versions = store.list_versions("tickets", models_copy)
    assert [(v.version, v.type) for v in versions] == [(2, "multi-label"), (1, "single-label")]
    assert versions[1].metrics == before.metrics and versions[1].created == before.created
    # one entry per model in the list, the current version's
    assert [(i.name, i.version) for i in list_models(models_copy)] == [("tickets", 2), ("topics", 1)]
    assert list_models(models_copy)[0].to_dict()["version"] == 2
    # the current by name, an older one by name@version: the same resolution the API and CLI use
    assert load_model("tickets", directory=models_copy).type == "multi-label"
    old = load_model("tickets@1", directory=models_copy)
    assert old.type == "single-label" and old.info.name == "tickets" and old.info.version == 1
    assert old.classify(["I was charged twice"])[0].prediction == "billing"
    assert load_model("tickets@2", directory=models_copy).type == "multi-label"  # @current is the current folder
    with pytest.raises(UnknownModelError, match=r"model 'tickets' has no version 7: its versions are 2 \(current\), 1"):
        load_model("tickets@7", directory=models_copy)
    for bad in ("tickets@", "tickets@0", "tickets@two", "tickets@1@1", "@1"):
        with pytest.raises(UnknownModelError, match="unknown model"):
            load_model(bad, directory=models_copy)
    # a third save numbers on from the highest
    assert _save_as_new_version(models_copy, "tickets", "tickets@1").version == 3
    assert [v.version for v in store.list_versions("tickets", models_copy)] == [3, 2, 1]


def test_rollback_makes_an_earlier_version_current_and_keeps_the_other(models_copy):
    _save_as_new_version(models_copy, "tickets", "topics")
    assert load_model("tickets", directory=models_copy).type == "multi-label"  # cached now
    info = store.rollback_model("tickets", 1, directory=models_copy)
    assert info.version == 1 and info.type == "single-label"
    assert [v.version for v in store.list_versions("tickets", models_copy)] == [1, 2]
    assert load_model("tickets", directory=models_copy).type == "single-label"  # the cache saw the change
    assert load_model("tickets@2", directory=models_copy).type == "multi-label"
    assert store.rollback_model("tickets", 1, directory=models_copy).version == 1  # already current: no change
    with pytest.raises(UnknownModelError, match="no version 5"):
        store.rollback_model("tickets", 5, directory=models_copy)
    # the next save numbers past every version, wherever the current one is
    assert _save_as_new_version(models_copy, "tickets", "tickets@2").version == 3


def test_without_replace_an_existing_name_is_still_refused(models_copy):
    topics = store.read_model("topics", models_copy)
    with pytest.raises(ValidationError, match="already exists"):
        store.save_model("tickets", config={"type": "single-label"}, head_arrays=topics.head_arrays,
                         write_body=lambda p: shutil.copytree(topics.body, p), directory=models_copy)
    assert not (models_copy / store.VERSIONS_DIR).exists()


def test_a_failed_new_version_leaves_the_current_one_and_no_half_version(models_copy):
    def failing_body(path: Path) -> None:
        path.mkdir()
        raise OSError("No space left on device")

    with pytest.raises(OSError, match="No space left"):
        store.save_model("tickets", config={"type": "single-label"}, head_arrays={}, write_body=failing_body,
                         directory=models_copy, replace=True)
    assert sorted(p.name for p in models_copy.iterdir()) == ["tickets", "topics"]
    assert [v.version for v in store.list_versions("tickets", models_copy)] == [1]


def test_a_crash_between_the_two_renames_is_recovered_and_the_half_save_never_listed(models_copy):
    """What a kill -9 between "current → .versions" and "temp → current" leaves: put right on the next look."""
    archive = models_copy / store.VERSIONS_DIR / "tickets" / "1"
    archive.parent.mkdir(parents=True)
    os.rename(models_copy / "tickets", archive)
    shutil.copytree(models_copy / "topics", models_copy / ".tmp-tickets-0badc0de")  # the new version, never renamed
    assert [(i.name, i.version, i.type) for i in list_models(models_copy)] == [
        ("tickets", 1, "single-label"), ("topics", 1, "multi-label")]
    assert (models_copy / "tickets" / "config.json").is_file() and not (models_copy / store.VERSIONS_DIR).exists()
    # the same recovery when the model is looked up by name first
    archive.parent.mkdir(parents=True)
    os.rename(models_copy / "tickets", archive)
    assert load_model("tickets", directory=models_copy).type == "single-label"


def test_rename_and_delete_take_the_versions_along(models_copy):
    _save_as_new_version(models_copy, "tickets", "topics")
    store.rename_model("tickets", "support", directory=models_copy)
    assert [v.version for v in store.list_versions("support", models_copy)] == [2, 1]
    assert json.loads((models_copy / store.VERSIONS_DIR / "support" / "1" / "config.json").read_text())["name"] == \
        "support"
    assert load_model("support@1", directory=models_copy).type == "single-label"
    with pytest.raises(UnknownModelError):
        load_model("tickets@1", directory=models_copy)
    store.delete_model("support", directory=models_copy)
    assert [i.name for i in list_models(models_copy)] == ["topics"]
    assert sorted(p.name for p in models_copy.iterdir()) == ["topics"]  # no .versions, no trash left


def test_api_and_cli_use_the_current_version_by_name_and_an_older_one_with_at(models_copy, monkeypatch, capsys):
    from fastapi.testclient import TestClient

    from playground.cli import main
    from playground.server import create_app

    _save_as_new_version(models_copy, "tickets", "topics")
    monkeypatch.setenv(store.MODELS_DIR_ENV, str(models_copy))
    client = TestClient(create_app(api_key="", preload=False))
    listed = {m["name"]: m for m in client.get("/v1/models").json()["models"]}
    assert listed["tickets"]["version"] == 2 and listed["tickets"]["type"] == "multi-label"
    body = {"inputs": ["I was charged twice this month"]}
    current = client.post("/v1/classify", json={**body, "model": "tickets"})
    older = client.post("/v1/classify", json={**body, "model": "tickets@1"})
    assert current.status_code == older.status_code == 200, (current.text, older.text)
    assert older.json()["classifications"][0]["prediction"] == "billing"
    assert set(current.json()["classifications"][0]["labels"]) == {"politics", "science", "sports"}
    missing = client.post("/v1/classify", json={**body, "model": "tickets@9"})
    assert missing.status_code == 404 and "no version 9" in missing.json()["message"]
    assert main(["classify", "--model", "tickets@1", "I was charged twice this month"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["prediction"] == "billing"
    assert main(["classify", "--model", "tickets@3", "text"]) == 2
    assert "its versions are 2 (current), 1" in capsys.readouterr().err
